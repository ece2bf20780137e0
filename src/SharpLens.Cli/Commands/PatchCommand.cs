using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Cli.Dla;
using SharpLens.Gradients;
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
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("clean", "clean.json", "prompts whose activations are patched in", required: true),
        Opt.Value("corrupted", "corrupted.json", "prompts that are run with the patched activations", required: true),
        Opt.Choice("kind", "KIND", $"what to patch: {string.Join(", ", Kinds.Keys)}", Kinds.Keys, required: true),
        Opt.Choice("method", "exact|attribution", "exact: one run per cell (default); attribution: first-order estimate from one gradient run", ["exact", "attribution"]),
        Opt.Choice("direction", "denoising|noising", "denoising: clean into corrupted (default); noising: corrupted into clean", ["denoising", "noising"]),
        Opt.Flag("compare", "run both methods: JSON adds exact_values and correlation, the report shows both heatmaps"),
        Opt.Value("report", "FILE", "write an HTML report with the heatmaps"),
        Opt.Value("json", "FILE", "write the values as JSON"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelName = args.Required("model"), clean = args.Required("clean"), corrupted = args.Required("corrupted");
        string kindName = args.Required("kind");
        string? report = args.Option("report"), json = args.Option("json");
        string method = args.Option("method") ?? "exact", directionName = args.Option("direction") ?? "denoising";
        bool compare = args.Flag("compare");
        var dtype = ModelLoading.Dtype(args);
        args.RejectUnknown();
        var direction = directionName == "noising" ? PatchDirection.Noising : PatchDirection.Denoising;
        if (!Kinds.TryGetValue(kindName, out var kind))
            throw new CliUsageException($"unknown --kind '{kindName}'. Allowed: {string.Join(", ", Kinds.Keys)}." + NameSuggestions.DidYouMean(kindName, Kinds.Keys));

        AtomicFile.RequireFolders(json, report);
        DlaInput.CheckFile(clean); // before the model loads: a damaged file fails at once
        using var model = ModelLoading.Load(modelName, stderr, revision: ModelLoading.Revision(args), dtype: dtype,
            useWeightsCache: ModelLoading.UseWeightsCache(args));
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
        Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, answers);
        double cleanMetric = Metric(model.Forward(cleanTokens)).item<float>();
        double corruptedMetric = Metric(model.Forward(corruptedTokens)).item<float>();
        PatchingResult? exact = null, attribution = null;
        if (method == "exact" || compare)
        {
            // Exact patching runs the target prompts with activations of the source prompts, in either direction.
            var (sourceTokens, targetTokens) = direction == PatchDirection.Denoising ? (cleanTokens, corruptedTokens) : (corruptedTokens, cleanTokens);
            var (_, sourceCache) = model.RunWithCache(sourceTokens);
            using (sourceCache) exact = Patching.Run(model, kind, targetTokens, sourceCache, Metric, progress);
        }
        if (method == "attribution" || compare)
            attribution = AttributionPatching.Run(model, [kind], cleanTokens, corruptedTokens, Metric, direction).Single().ToPatchingResult();
        var result = method == "attribution" ? attribution! : exact!;
        var values = result.Values;
        var correlation = compare ? PatchComparison.Of(exact!.Values, attribution!.Values) : null;
        stdout.WriteLine($"clean metric {cleanMetric.ToString("F4", CultureInfo.InvariantCulture)}, corrupted metric {corruptedMetric.ToString("F4", CultureInfo.InvariantCulture)}");
        stdout.WriteLine($"{kindName} ({method}, {directionName}) [{string.Join(", ", result.Axes)}] = [{string.Join(", ", values.shape)}]; max {values.max().item<float>():F4} at index {values.argmax().item<long>()}");
        if (correlation is not null)
            stdout.WriteLine($"attribution vs exact: Pearson r {correlation.Pearson.ToString("F4", CultureInfo.InvariantCulture)}, max |diff| {correlation.MaxAbsDiff.ToString("F4", CultureInfo.InvariantCulture)}");

        DlaOutput.WriteOutputs(stdout,
            (json, () =>
            {
                var o = ToJson(kindName, result.Axes, ToJson(values), cleanMetric, corruptedMetric);
                o["method"] = method;
                o["direction"] = directionName;
                o["dtype"] = ModelDtype.Name(model.Dtype);
                if (correlation is not null)
                {
                    o["exact_values"] = ToJson(exact!.Values);
                    o["correlation"] = new JsonObject { ["pearson"] = double.IsNaN(correlation.Pearson) ? null : correlation.Pearson, ["max_abs_diff"] = correlation.MaxAbsDiff };
                }
                return DlaOutput.ToJsonText(o);
            }),
            (report, () =>
            {
                var r = BuildReport(model, modelName, $"{kindName}, {method}, {directionName}", result.Axes, values, cleanMetric, corruptedMetric, cleanPrompts[0]);
                if (compare) AddFigures(r, model, $"{kindName}, exact, {directionName}", exact!.Axes, exact.Values, cleanPrompts[0]);
                return r.Render();
            }));
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
        AddFigures(r, model, kindName, axes, values, firstClean);
        return r;
    }

    /// <summary>The heatmaps of one patching result (one per layer for [layer, pos, head] results).</summary>
    private static void AddFigures(HtmlReport r, HookedTransformer model, string title, IReadOnlyList<string> axes, Tensor values, DlaPrompt firstClean)
    {
        var tokens = DlaOutput.StrTokens(model, firstClean);
        var layers = Enumerable.Range(0, model.Config.NLayers).Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList();
        var headsAxis = Enumerable.Range(0, model.Config.NHeads).Select(h => h.ToString(CultureInfo.InvariantCulture)).ToList();
        List<string> Positions() => tokens.Select((t, i) => $"{i}: {t}").ToList();
        if (values.dim() == 2)
            r.AddFigure(Plots.Heatmap(title, values.ToArray2D(), axes[1] == "head" ? headsAxis : Positions(), layers, axes[1], "layer"));
        else
            for (int l = 0; l < values.shape[0]; l++)
                r.AddFigure(Plots.Heatmap($"{title}, layer {l}", values[l].ToArray2D(), headsAxis, Positions(), "head", "position"));
    }

    private static JsonNode ToJson(Tensor t) => t.dim() == 0
        ? JsonValue.Create(t.item<float>())
        : new JsonArray(Enumerable.Range(0, (int)t.shape[0]).Select(i => ToJson(t[i])).ToArray());
}
