using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Cli.Dla;
using SharpLens.Visualization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens patch</c>: activation patching from a clean into a corrupted prompt set (TransformerLens's patching).</summary>
internal sealed class PatchCommand : CliCommand
{
    private static readonly Dictionary<string, PatchKind> Kinds = new(StringComparer.Ordinal)
    {
        ["resid_pre"] = PatchKind.ResidPre, ["resid_mid"] = PatchKind.ResidMid, ["attn_out"] = PatchKind.AttnOut, ["mlp_out"] = PatchKind.MlpOut,
        ["head_out_all_pos"] = PatchKind.HeadOutAllPos, ["head_out_by_pos"] = PatchKind.HeadOutByPos,
        ["head_q_all_pos"] = PatchKind.HeadQAllPos, ["head_k_all_pos"] = PatchKind.HeadKAllPos, ["head_v_all_pos"] = PatchKind.HeadVAllPos,
        ["head_pattern_all_pos"] = PatchKind.HeadPatternAllPos,
    };

    public override string Name => "patch";
    public override string Summary => "Activation patching: which activations restore the clean logit difference.";
    public override string Details => """
        clean.json / corrupted.json: prompt files as for 'sharplens dla' (same number of prompts, same token lengths);
        the metric is the mean logit difference of the clean file's answers.
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        Opt.Value("clean", "clean.json", "prompts whose activations are patched in", required: true),
        Opt.Value("corrupted", "corrupted.json", "prompts that are run with the patched activations", required: true),
        Opt.Choice("kind", "KIND", $"what to patch: {string.Join(", ", Kinds.Keys)}", Kinds.Keys, required: true),
        Opt.Value("report", "FILE", "write an HTML report with the heatmaps"),
        Opt.Value("json", "FILE", "write the values as JSON"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelName = args.Required("model"), clean = args.Required("clean"), corrupted = args.Required("corrupted");
        string kindName = args.Required("kind");
        string? report = args.Option("report"), json = args.Option("json");
        args.RejectUnknown();
        if (!Kinds.TryGetValue(kindName, out var kind))
            throw new CliUsageException($"unknown --kind '{kindName}'. Allowed: {string.Join(", ", Kinds.Keys)}." + NameSuggestions.DidYouMean(kindName, Kinds.Keys));

        using var model = ModelLoading.Load(modelName, stderr);
        var cleanPrompts = DlaInput.FromFile(model, clean);
        var corruptedPrompts = DlaInput.FromFile(model, corrupted);
        if (cleanPrompts.Count != corruptedPrompts.Count)
            throw new SharpLensException($"{clean} has {cleanPrompts.Count} prompts but {corrupted} has {corruptedPrompts.Count}; patching pairs them one to one.");
        foreach (var (set, path) in new[] { (cleanPrompts, clean), (corruptedPrompts, corrupted) })
            if (set.Any(p => p.Ids.Length != cleanPrompts[0].Ids.Length))
                throw new SharpLensException($"{path}: every prompt must have {cleanPrompts[0].Ids.Length} tokens like the first clean prompt, but " +
                    $"'{set.First(p => p.Ids.Length != cleanPrompts[0].Ids.Length).Prompt}' has {set.First(p => p.Ids.Length != cleanPrompts[0].Ids.Length).Ids.Length}.");

        using var scope = NewDisposeScope();
        var (cleanTokens, answers, _) = DlaInput.ToTensors(model, cleanPrompts);
        var (corruptedTokens, _, _) = DlaInput.ToTensors(model, corruptedPrompts);
        Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, answers);
        var (cleanLogits, cache) = model.RunWithCache(cleanTokens);
        using (cache)
        {
            double cleanMetric = Metric(cleanLogits).item<float>();
            double corruptedMetric = Metric(model.Forward(corruptedTokens)).item<float>();
            int lastPct = -1;
            var progress = new SyncProgress<(int Done, int Total)>(p =>
            {
                int pct = p.Done * 100 / p.Total;
                if (pct / 10 != lastPct / 10 || p.Done == p.Total) stderr.WriteLine($"[sharplens] patching {kindName}: {p.Done}/{p.Total} runs ({pct}%)");
                lastPct = pct;
            });
            var result = Patching.Run(model, kind, corruptedTokens, cache, Metric, progress);
            var values = result.Values;
            stdout.WriteLine($"clean metric {cleanMetric.ToString("F4", CultureInfo.InvariantCulture)}, corrupted metric {corruptedMetric.ToString("F4", CultureInfo.InvariantCulture)}");
            stdout.WriteLine($"{kindName} [{string.Join(", ", result.Axes)}] = [{string.Join(", ", values.shape)}]; max {values.max().item<float>():F4} at index {values.argmax().item<long>()}");

            if (json is not null)
            {
                var o = new JsonObject
                {
                    ["kind"] = kindName,
                    ["axes"] = new JsonArray(result.Axes.Select(a => (JsonNode)a).ToArray()),
                    ["values"] = ToJson(values),
                    ["clean_metric"] = cleanMetric,
                    ["corrupted_metric"] = corruptedMetric,
                };
                DlaOutput.WriteAtomic(json, DlaOutput.ToJsonText(o));
                stdout.WriteLine($"wrote {json}");
            }
            if (report is not null)
            {
                var r = new HtmlReport($"Activation patching ({kindName}) — {modelName}");
                r.AddParagraph($"Metric: mean logit difference. Clean {cleanMetric:F4}, corrupted {corruptedMetric:F4}. Each cell: the metric after patching that activation from the clean run into the corrupted run.");
                var tokens = DlaOutput.StrTokens(model, cleanPrompts[0]);
                var layers = Enumerable.Range(0, model.Config.NLayers).Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList();
                var headsAxis = Enumerable.Range(0, model.Config.NHeads).Select(h => h.ToString(CultureInfo.InvariantCulture)).ToList();
                List<string> Positions() => tokens.Select((t, i) => $"{i}: {t}").ToList();
                if (values.dim() == 2)
                    r.AddFigure(Plots.Heatmap($"{kindName}", values.ToArray2D(), result.Axes[1] == "head" ? headsAxis : Positions(), layers, result.Axes[1], "layer"));
                else
                    for (int l = 0; l < values.shape[0]; l++)
                        r.AddFigure(Plots.Heatmap($"{kindName}, layer {l}", values[l].ToArray2D(), headsAxis, Positions(), "head", "position"));
                r.Save(report);
                stdout.WriteLine($"wrote {report}");
            }
        }
        return Task.FromResult(0);
    }

    private static JsonNode ToJson(Tensor t) => t.dim() == 0
        ? JsonValue.Create(t.item<float>())
        : new JsonArray(Enumerable.Range(0, (int)t.shape[0]).Select(i => ToJson(t[i])).ToArray());
}
