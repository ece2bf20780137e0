using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Cli.Dla;
using SharpLens.Model;
using SharpLens.Visualization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens patch</c>: activation patching from a clean into a corrupted prompt set (TransformerLens's patching).</summary>
internal sealed class PatchCommand : CliCommand
{
    private static IReadOnlyDictionary<string, PatchKind> Kinds => PatchKindNames.ByName;

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
        var corruptedPrompts = ReadPairs(model, clean, cleanPrompts, corrupted);

        using var scope = NewDisposeScope();
        var (cleanTokens, answers, _) = DlaInput.ToTensors(model, cleanPrompts);
        var (corruptedTokens, _, _) = DlaInput.ToTensors(model, corruptedPrompts);
        int lastPct = -1;
        var progress = new SyncProgress<(int Done, int Total)>(p =>
        {
            int pct = p.Done * 100 / p.Total;
            if (pct / 10 != lastPct / 10 || p.Done == p.Total) stderr.WriteLine($"[sharplens] patching {kindName}: {p.Done}/{p.Total} runs ({pct}%)");
            lastPct = pct;
        });
        var (result, cleanMetric, corruptedMetric) = PatchingExperiment.Run(model, kind, cleanTokens, corruptedTokens, answers, progress);
        var values = result.Values;
        stdout.WriteLine($"clean metric {cleanMetric.ToString("F4", CultureInfo.InvariantCulture)}, corrupted metric {corruptedMetric.ToString("F4", CultureInfo.InvariantCulture)}");
        stdout.WriteLine($"{kindName} [{string.Join(", ", result.Axes)}] = [{string.Join(", ", values.shape)}]; max {values.max().item<float>():F4} at index {values.argmax().item<long>()}");

        if (json is not null)
        {
            DlaOutput.WriteAtomic(json, DlaOutput.ToJsonText(ToJson(kindName, result.Axes, ToJson(values), cleanMetric, corruptedMetric)));
            stdout.WriteLine($"wrote {json}");
        }
        if (report is not null)
        {
            BuildReport(model, modelName, kindName, result.Axes, values, cleanMetric, corruptedMetric, cleanPrompts[0]).Save(report);
            stdout.WriteLine($"wrote {report}");
        }
        return Task.FromResult(0);
    }

    /// <summary>
    /// Reads the corrupted prompts paired one to one with <paramref name="cleanPrompts"/>; every prompt of both sets must
    /// have the first clean prompt's token length (patching indexes positions).
    /// </summary>
    internal static List<DlaPrompt> ReadPairs(HookedTransformer model, string cleanPath, List<DlaPrompt> cleanPrompts, string corruptedPath)
    {
        var corruptedPrompts = DlaInput.FromFile(model, corruptedPath);
        if (cleanPrompts.Count != corruptedPrompts.Count)
            throw new SharpLensException($"{cleanPath} has {cleanPrompts.Count} prompts but {corruptedPath} has {corruptedPrompts.Count}; patching pairs them one to one.");
        int len = cleanPrompts[0].Ids.Length;
        foreach (var (set, path) in new[] { (cleanPrompts, cleanPath), (corruptedPrompts, corruptedPath) })
            if (set.FirstOrDefault(p => p.Ids.Length != len) is { } bad)
                throw new SharpLensException($"{path}: every prompt must have {len} tokens like the first clean prompt, but '{bad.Prompt}' has {bad.Ids.Length}.");
        return corruptedPrompts;
    }

    /// <summary>The <c>--json</c> contract: <c>{kind, axes, values, clean_metric, corrupted_metric}</c>.</summary>
    internal static JsonObject ToJson(string kindName, IEnumerable<string> axes, JsonNode values, double cleanMetric, double corruptedMetric) => new()
    {
        ["kind"] = kindName,
        ["axes"] = new JsonArray(axes.Select(a => (JsonNode)a).ToArray()),
        ["values"] = values,
        ["clean_metric"] = cleanMetric,
        ["corrupted_metric"] = corruptedMetric,
    };

    /// <summary>The offline report: one heatmap per layer-by-index grid of the patched metric.</summary>
    internal static HtmlReport BuildReport(HookedTransformer model, string modelName, string kindName, IReadOnlyList<string> axes, Tensor values,
        double cleanMetric, double corruptedMetric, DlaPrompt firstClean)
    {
        var r = new HtmlReport($"Activation patching ({kindName}) — {modelName}");
        r.AddParagraph($"Metric: mean logit difference. Clean {cleanMetric:F4}, corrupted {corruptedMetric:F4}. Each cell: the metric after patching that activation from the clean run into the corrupted run.");
        var tokens = DlaOutput.StrTokens(model, firstClean);
        var layers = Enumerable.Range(0, model.Config.NLayers).Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList();
        var headsAxis = Enumerable.Range(0, model.Config.NHeads).Select(h => h.ToString(CultureInfo.InvariantCulture)).ToList();
        List<string> Positions() => tokens.Select((t, i) => $"{i}: {t}").ToList();
        if (values.dim() == 2)
            r.AddFigure(Plots.Heatmap($"{kindName}", values.ToArray2D(), axes[1] == "head" ? headsAxis : Positions(), layers, axes[1], "layer"));
        else
            for (int l = 0; l < values.shape[0]; l++)
                r.AddFigure(Plots.Heatmap($"{kindName}, layer {l}", values[l].ToArray2D(), headsAxis, Positions(), "head", "position"));
        return r;
    }

    private static JsonNode ToJson(Tensor t) => t.dim() == 0
        ? JsonValue.Create(t.item<float>())
        : new JsonArray(Enumerable.Range(0, (int)t.shape[0]).Select(i => ToJson(t[i])).ToArray());
}
