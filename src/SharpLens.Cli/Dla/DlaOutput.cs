using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Model;
using SharpLens.Tokenization;
using Spectre.Console;

namespace SharpLens.Cli.Dla;

/// <summary>Terminal tables and the JSON file of a DLA run.</summary>
internal static class DlaOutput
{
    private static readonly Style CorrectStyle = new(new Color(0, 200, 0), decoration: Decoration.Bold);
    private static readonly Style IncorrectStyle = new(new Color(255, 0, 0), decoration: Decoration.Bold);
    private static readonly Style BoldStyle = new(decoration: Decoration.Bold);

    private static string F3(double v) => v.ToString("F3", CultureInfo.InvariantCulture);

    /// <summary>The seed's two tables, its identity checks, and the layer/head attribution summaries.</summary>
    public static void PrintTables(TextWriter stdout, IReadOnlyList<DlaPrompt> prompts, DlaResult r)
    {
        var console = CliConsole.Create(stdout);
        var promptTable = new Table().Title("prompts and answers").AddColumns("prompt", "clean", "corrupted");
        foreach (var p in prompts) promptTable.AddRow(Markup.Escape(p.Prompt), Markup.Escape(p.Correct), Markup.Escape(p.Incorrect));
        console.Write(promptTable);

        var diffTable = new Table().Title("Logit differences")
            .AddColumns("Prompt", "Correct", "Incorrect", "Logit Difference", "Avg Logit Difference");
        for (int i = 0; i < prompts.Count; i++)
            diffTable.AddRow(
                new Text(prompts[i].Prompt),
                new Text(prompts[i].Correct, CorrectStyle),
                new Text(prompts[i].Incorrect, IncorrectStyle),
                new Text(F3(r.LogitDiffs[i]), BoldStyle),
                new Text(i == 0 ? F3(r.AvgLogitDiff) : "", BoldStyle));
        console.Write(diffTable);

        console.Write(new Text($"Average logit difference: {r.AvgLogitDiff.ToString("F4", CultureInfo.InvariantCulture)}\n", BoldStyle));
        console.Write(new Text("Seed check (scaled final residual · logit-diff directions / batch − average logit diff): " +
            $"{r.IdentityError.ToString("E3", CultureInfo.InvariantCulture)}\n"));
        console.Write(new Text($"Same check with the unembedding-bias term ({r.BiasTerm.ToString("E3", CultureInfo.InvariantCulture)}) added: " +
            $"{r.IdentityErrorWithBias.ToString("E3", CultureInfo.InvariantCulture)}\n"));
        if (r.LogitSoftCap is not null)
            console.Write(new Text($"Same check against the uncapped logits (unembed.hook_out, average {r.UncappedAvgLogitDiff.ToString("F4", CultureInfo.InvariantCulture)}): " +
                $"{r.IdentityErrorWithBiasUncapped.ToString("E3", CultureInfo.InvariantCulture)}\n"));
        foreach (var note in r.Notes) console.Write(new Text($"Note: {note}\n", BoldStyle));

        var layers = new Table().Title("Logit difference from the accumulated residual stream").AddColumns("component", "logit diff");
        for (int i = 0; i < r.AccumulatedLabels.Count; i++) layers.AddRow(r.AccumulatedLabels[i], F3(r.AccumulatedLogitDiffs[i]));
        var comps = new Table().Title("Direct logit attribution by component").AddColumns("component", "logit diff");
        for (int i = 0; i < r.DecomposedLabels.Count; i++) comps.AddRow(r.DecomposedLabels[i], F3(r.DecomposedLogitDiffs[i]));
        console.Write(new Columns(layers, comps).Collapse());

        var heads = new Table().Title($"Top {r.TopHeads.Count} heads by |direct logit attribution|").AddColumns("head", "layer", "index", "logit diff");
        foreach (var h in r.TopHeads)
            heads.AddRow(new Text(h.Label), new Text(h.Layer.ToString()), new Text(h.Head.ToString()),
                new Text(F3(h.LogitDiff), h.LogitDiff >= 0 ? CorrectStyle : IncorrectStyle));
        console.Write(heads);
    }

    /// <summary>The JSON contract of <c>--json</c> (keys fixed; see README).</summary>
    public static JsonObject ToJson(HookedTransformer model, string modelName, IReadOnlyList<DlaPrompt> prompts, DlaResult r) =>
        ToJson(model.Config.NLayers, model.Config.NHeads, modelName, prompts, r, ModelDtype.Name(model.Dtype));

    /// <summary>The JSON contract of <c>--json</c> for a model of <paramref name="nLayers"/> × <paramref name="nHeads"/> heads; <c>"dtype"</c> when <paramref name="dtype"/> is given.</summary>
    public static JsonObject ToJson(int nLayers, int nHeads, string modelName, IReadOnlyList<DlaPrompt> prompts, DlaResult r, string? dtype = null)
    {
        var headRows = new JsonArray();
        for (int l = 0; l < r.HeadLogitDiffs.GetLength(0); l++)
        {
            var row = new JsonArray();
            for (int h = 0; h < r.HeadLogitDiffs.GetLength(1); h++) row.Add(r.HeadLogitDiffs[l, h]);
            headRows.Add(row);
        }
        var o = new JsonObject
        {
            ["model"] = modelName,
            ["n_layers"] = nLayers,
            ["n_heads"] = nHeads,
            ["prompts"] = new JsonArray(prompts.Select((p, i) => (JsonNode)new JsonObject
            {
                ["prompt"] = p.Prompt, ["correct"] = p.Correct, ["incorrect"] = p.Incorrect,
                ["correct_id"] = p.CorrectId, ["incorrect_id"] = p.IncorrectId, ["logit_diff"] = r.LogitDiffs[i],
            }).ToArray()),
            ["avg_logit_diff"] = r.AvgLogitDiff,
            ["dla_identity_error"] = r.IdentityError,
            ["dla_identity_error_with_bias"] = r.IdentityErrorWithBias,
            ["logit_soft_cap"] = r.LogitSoftCap,
            ["uncapped_avg_logit_diff"] = r.UncappedAvgLogitDiff,
            ["dla_identity_error_with_bias_uncapped"] = r.IdentityErrorWithBiasUncapped,
            ["decomposition_sum_error"] = r.DecompositionSumError,
            ["head_sum_error"] = r.HeadSumError,
            ["notes"] = new JsonArray(r.Notes.Select(n => (JsonNode)n).ToArray()),
            ["accumulated_resid"] = new JsonObject
            {
                ["labels"] = new JsonArray(r.AccumulatedLabels.Select(l => (JsonNode)l).ToArray()),
                ["logit_diff"] = new JsonArray(r.AccumulatedLogitDiffs.Select(v => (JsonNode)v).ToArray()),
            },
            ["decomposed_resid"] = new JsonObject
            {
                ["labels"] = new JsonArray(r.DecomposedLabels.Select(l => (JsonNode)l).ToArray()),
                ["logit_diff"] = new JsonArray(r.DecomposedLogitDiffs.Select(v => (JsonNode)v).ToArray()),
            },
            ["head_logit_diff"] = headRows,
            ["top_heads"] = new JsonArray(r.TopHeads.Select(h => (JsonNode)new JsonObject
            {
                ["layer"] = h.Layer, ["head"] = h.Head, ["logit_diff"] = h.LogitDiff,
            }).ToArray()),
        };
        if (dtype is not null) o.Insert(1, "dtype", dtype); // next to the model name
        return o;
    }

    /// <summary>
    /// Writes the text outputs of a run that were asked for (path not null) as one unit (<see cref="AtomicFile.WriteAll"/>):
    /// all contents are made first, so a failure in any of them leaves no output at all. Prints "wrote PATH" for each.
    /// </summary>
    public static void WriteOutputs(TextWriter stdout, params (string? Path, Func<string> Content)[] outputs)
    {
        var wanted = outputs.Where(o => o.Path is not null).Select(o => (Path: o.Path!, o.Content)).ToList();
        AtomicFile.RequireFolders([.. wanted.Select(w => w.Path)]); // before making the contents, which may take a while
        var bytes = wanted.Select(o => (o.Path, Bytes: new System.Text.UTF8Encoding(false).GetBytes(o.Content()))).ToList();
        AtomicFile.WriteAll(bytes.Select(b => (b.Path, (Action<Stream>)(s => s.Write(b.Bytes)))).ToList());
        foreach (var (path, _) in wanted) stdout.WriteLine($"wrote {path}");
    }

    /// <summary>
    /// JSON text of <see cref="ToJson"/>. NaN or infinite results (JSON has no literal for them) come from non-finite
    /// activations, usually a damaged checkpoint: a clear error instead of the serializer's exception.
    /// </summary>
    public static string ToJsonText(JsonObject o)
    {
        try { return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }); }
        catch (ArgumentException e) when (e.Message.Contains("infinity", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("NaN", StringComparison.Ordinal))
        {
            throw new SharpLensException("The results contain NaN or infinite values, which JSON cannot hold: the model's activations are not " +
                "finite. Check the checkpoint's weights (model.safetensors) for NaN/Inf values, or the inputs.", e);
        }
    }

    /// <summary>String tokens of a prompt for the attention view (ids when there is no tokenizer).</summary>
    public static IReadOnlyList<string> StrTokens(HookedTransformer model, DlaPrompt p) =>
        model.Tokenizer is { } t ? TextEncoding.ToStrTokens(t, p.Ids.Select(x => (int)x)) : p.Ids.Select(x => x.ToString()).ToList();
}
