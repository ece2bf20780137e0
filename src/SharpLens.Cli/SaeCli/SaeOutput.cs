using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Sae;
using SharpLens.Tokenization;
using SharpLens.Visualization;

namespace SharpLens.Cli.SaeCli;

/// <summary>Console tables, the JSON document and the HTML report of <c>sharplens sae</c>.</summary>
internal static class SaeOutput
{
    private static string F(double v, string f = "F4") => v.ToString(f, CultureInfo.InvariantCulture);

    private static string Arch(SparseAutoencoder s) => SaeConfig.ArchitectureNames[(int)s.Config.Architecture];

    public static void Print(TextWriter o, SaeSummary s, int topK)
    {
        o.WriteLine($"SAE {Arch(s.Sae)} at {s.Sae.HookName}: d_in {s.Sae.Config.DIn}, d_sae {s.Sae.Config.DSae}");
        o.WriteLine($"L0 {F(s.Metrics.L0Mean, "F2")}   MSE {F(s.Metrics.Mse)}   explained variance {F(s.Metrics.ExplainedVariance)}   cosine {F(s.CosSimMean)}");
        o.WriteLine($"CE loss clean {F(s.Ce.Clean)}   with SAE {F(s.Ce.WithSae)}   zero-ablated {F(s.Ce.ZeroAblation)}   score {F(s.Ce.Score)}");
        o.WriteLine();
        o.WriteLine($"Top {topK} features per token (id:activation):");
        for (int b = 0; b < s.Tokens.Length; b++)
            for (int p = 0; p < s.Tokens[b].Length; p++)
                o.WriteLine($"  [{b},{p,2}] {TextEncoding.Quote(s.StrTokens[b][p]),-14} " +
                    string.Join("  ", s.TopPerToken[b][p].Select(f => $"{f.Id}:{F(f.Activation, "F3")}")));
        if (s.DlaTop is { } top)
        {
            o.WriteLine();
            o.WriteLine("Top features by direct logit attribution (mean logit difference over prompts):");
            foreach (var (f, v) in top) o.WriteLine($"  feature {f,6}  {F(v)}");
        }
    }

    public static JsonObject ToJson(SaeSummary s)
    {
        var top = new JsonArray();
        for (int b = 0; b < s.Tokens.Length; b++)
            for (int p = 0; p < s.Tokens[b].Length; p++)
                top.Add(new JsonObject
                {
                    ["batch"] = b, ["pos"] = p, ["token"] = s.StrTokens[b][p], ["token_id"] = s.Tokens[b][p],
                    ["features"] = new JsonArray(s.TopPerToken[b][p].Select(f => (JsonNode)new JsonObject { ["id"] = f.Id, ["activation"] = f.Activation }).ToArray()),
                });
        var l0 = s.Metrics.L0PerToken.data<float>().ToArray();
        var o = new JsonObject
        {
            ["model"] = s.ModelName,
            ["dtype"] = s.Dtype,
            ["sae"] = new JsonObject
            {
                ["hook_name"] = s.Sae.HookName, ["architecture"] = Arch(s.Sae), ["d_in"] = s.Sae.Config.DIn, ["d_sae"] = s.Sae.Config.DSae,
                ["source"] = s.Sae.Source,
            },
            ["n_tokens"] = l0.Length,
            ["l0_mean"] = s.Metrics.L0Mean,
            ["l0_per_token"] = new JsonArray(l0.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
            ["mse"] = s.Metrics.Mse,
            ["explained_variance"] = s.Metrics.ExplainedVariance,
            ["cosine_similarity"] = s.CosSimMean,
            ["ce_loss_clean"] = s.Ce.Clean,
            ["ce_loss_with_sae"] = s.Ce.WithSae,
            ["ce_loss_zero_ablation"] = s.Ce.ZeroAblation,
            ["ce_loss_score"] = s.Ce.Score,
            ["kl_div_with_sae"] = s.Ce.KlWithSae.mean().item<float>(),
            ["kl_div_with_ablation"] = s.Ce.KlWithAblation.mean().item<float>(),
            ["feature_frequency"] = new JsonArray(s.Frequency.Select(v => (JsonNode)JsonValue.Create(v)).ToArray()),
            ["top_features"] = top,
        };
        if (s.DlaTop is { } dla && s.Dla is { } per)
            o["feature_dla_top"] = new JsonArray(dla.Select(t => (JsonNode)new JsonObject
            {
                ["id"] = t.Feature, ["logit_diff"] = t.MeanLogitDiff,
                ["per_prompt"] = new JsonArray(Enumerable.Range(0, per.GetLength(0)).Select(b => (JsonNode)JsonValue.Create(per[b, t.Feature])).ToArray()),
            }).ToArray());
        return o;
    }

    /// <summary>Metrics, a heatmap of the most active features per prompt, each top feature's activating tokens, and the DLA bar chart.</summary>
    public static HtmlReport Report(SaeSummary s, int topK)
    {
        var r = new HtmlReport($"SAE features: {s.Sae.HookName} on {s.ModelName}");
        r.AddParagraph($"{Arch(s.Sae)} SAE, d_in {s.Sae.Config.DIn}, d_sae {s.Sae.Config.DSae}, from {s.Sae.Source}.");
        r.AddTable("Reconstruction and downstream loss", ["metric", "value"],
        [
            ["L0 (mean active features per token)", F(s.Metrics.L0Mean, "F2")], ["MSE", F(s.Metrics.Mse)],
            ["explained variance", F(s.Metrics.ExplainedVariance)], ["cosine similarity", F(s.CosSimMean)],
            ["CE loss clean", F(s.Ce.Clean)], ["CE loss with SAE", F(s.Ce.WithSae)], ["CE loss zero-ablated", F(s.Ce.ZeroAblation)],
            ["CE loss score", F(s.Ce.Score)],
        ]);
        int nPrompts = Math.Min(s.Tokens.Length, 8);
        for (int b = 0; b < nPrompts; b++)
        {
            // The prompt's most active features (by their strongest activation), one row each, positions as columns.
            int p = s.Tokens[b].Length, d = s.Acts.GetLength(2);
            var feats = Enumerable.Range(0, d).Select(f => (f, max: Enumerable.Range(0, p).Max(j => s.Acts[b, j, f])))
                .Where(t => t.max > 0).OrderByDescending(t => t.max).Take(Math.Max(topK, 10)).Select(t => t.f).ToList();
            if (feats.Count == 0) continue;
            var z = new float[feats.Count, p];
            for (int i = 0; i < feats.Count; i++)
                for (int j = 0; j < p; j++) z[i, j] = s.Acts[b, j, feats[i]];
            var x = Enumerable.Range(0, p).Select(j => $"{j}: {s.StrTokens[b][j]}").ToList();
            r.AddFigure(Plots.Heatmap($"Prompt {b}: feature activations per token", z, x, feats.Select(f => $"feature {f}").ToList(), "token", "feature"));
        }
        var important = (s.DlaTop?.Select(t => t.Feature) ?? []).Concat(MostFrequent(s, topK)).Distinct().Take(2 * topK).ToList();
        var rows = new List<IReadOnlyList<ReportCell>>();
        foreach (int f in important)
        {
            var acts = new List<(int b, int p, float v)>();
            for (int b = 0; b < s.Tokens.Length; b++)
                for (int p = 0; p < s.Tokens[b].Length; p++)
                    if (s.Acts[b, p, f] > 0) acts.Add((b, p, s.Acts[b, p, f]));
            string tokens = string.Join("  ", acts.OrderByDescending(a => a.v).Take(8)
                .Select(a => $"{TextEncoding.Quote(s.StrTokens[a.b][a.p])} [{a.b},{a.p}] {F(a.v, "F2")}"));
            string dla = s.DlaTop is { } dt && dt.Any(u => u.Feature == f) ? F(dt.First(u => u.Feature == f).MeanLogitDiff) : "";
            rows.Add([f.ToString(CultureInfo.InvariantCulture), F(s.Frequency[f], "P1"), dla, tokens.Length == 0 ? "(does not fire)" : tokens]);
        }
        r.AddTable("Top features and their activating tokens", ["feature", "fires on", "DLA (logit diff)", "strongest activations: token [prompt, pos] value"], rows);
        if (s.DlaTop is { } top)
            r.AddFigure(Plots.Bar("Feature direct logit attribution (mean over prompts)", top.Select(t => $"feature {t.Feature}").ToList(),
                top.Select(t => (float)t.MeanLogitDiff).ToList(), "feature", "logit difference"));
        return r;
    }

    private static IEnumerable<int> MostFrequent(SaeSummary s, int k) =>
        s.Frequency.Select((v, i) => (v, i)).Where(t => t.v > 0).OrderByDescending(t => t.v).Take(k).Select(t => t.i);
}
