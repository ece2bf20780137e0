using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using SharpLens.Analysis;
using SharpLens.Cli.Dla;
using SharpLens.Cli.Sweep;
using SharpLens.Cluster;
using SharpLens.Model;
using SharpLens.Sae;

namespace SharpLens.Cli.Commands;

/// <summary>
/// <c>sharplens sweep</c>: runs <c>patch</c> (exact or attribution), <c>dla</c> or SAE statistics over a prompt dataset split into work items, on the workers
/// of a cluster (<c>--redis</c>) or in this process, and writes the single-machine command's JSON plus the job record.
/// </summary>
internal sealed class SweepCommand : CliCommand
{
    public override string Name => "sweep";
    public override string Summary => "Run patch / attribution / dla / sae-stats over a prompt dataset on a cluster of workers (or in-process), resumable.";
    public override string Details => $"""
        New job:  sharplens sweep [--redis HOST:PORT] --model M --analysis patch|attribution|dla|sae-stats [--kind KIND]
                  [--direction denoising|noising] --clean c.json [--corrupted x.json] [--batch-size 8] --json out.json
        Resume:   sharplens sweep --resume JOB_ID --redis HOST:PORT [--cluster-id ID] --json out.json
        Prompt files are those 'patch' / 'dla' read; sae-stats also takes a JSON array of texts (answers are not
        needed) and reports each SAE feature's firing frequency and mean activation over every real token. Items of
        --batch-size prompts are pulled by workers ('sharplens worker'); the merged result is exactly what
        'sharplens patch' (attribution: 'sharplens patch --method attribution') / 'sharplens dla' write for the whole
        dataset, plus a "job" record (id, items, workers_seen, items_retried, late_results_ignored, completions). An item whose worker dies is redone by
        another; each item's result is recorded once. Without --redis everything runs in this process.
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("redis", "HOST:PORT", "run on the cluster whose Redis this is (default: in this process)"),
        Opt.Value("cluster-id", "ID", "cluster to use (default sharplens)"),
        Opt.Value("resume", "JOB_ID", "reattach to a running or finished job (needs --redis)"),
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder"),
        ModelLoading.DtypeOption(),
        Opt.Choice("analysis", "NAME", $"what to compute: {string.Join(", ", SweepAnalysis.All)}", SweepAnalysis.All),
        Opt.Choice("kind", "KIND", $"patching kind: {string.Join(", ", PatchKindNames.ByName.Keys)}", PatchKindNames.ByName.Keys),
        Opt.Choice("direction", "denoising|noising", "patch / attribution: denoising, clean into corrupted (default); noising, corrupted into clean", SweepAnalysis.Directions),
        Opt.Value("clean", "FILE", "prompts (clean prompts for patching)"),
        Opt.Value("corrupted", "FILE", "corrupted prompts, paired one to one with --clean (patching)"),
        Opt.Value("sae", "DIR", "SAE for sae-stats: folder, .npz or Hub org/repo/path"),
        Opt.Value("sae-hook", "NAME", "hook the SAE reads, when its files do not say (Gemma Scope)"),
        Opt.Value("batch-size", "N", "prompts per work item (default 8)"),
        Opt.Value("top-k", "N", "heads listed by dla (default 10)"),
        Opt.Value("lease-seconds", "N", "seconds a silent worker keeps an item before it is redone (default 30)"),
        Opt.Value("job-id", "ID", "name the job (default: generated and printed)"),
        Opt.Flag("no-processing", "load without TransformerLens's weight processing"),
        Opt.Value("json", "FILE", "write the merged result as JSON", required: true),
        Opt.Value("report", "FILE", "write an HTML report"),
    ];

    protected override async Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string? redis = args.Option("redis"), resume = args.Option("resume");
        string clusterId = args.Option("cluster-id") ?? "sharplens";
        string json = args.Required("json");
        string? report = args.Option("report");
        if (resume is not null)
        {
            args.RejectUnknown();
            if (redis is null) throw new CliUsageException("--resume needs --redis: only a cluster's ledger outlives the client.");
            AtomicFile.RequireFolders(json, report);
            using var client = await SweepHost.StartClientAsync(redis, clusterId);
            var grains = client.Services.GetRequiredService<IClusterClient>();
            var resumed = await SweepDisplay.RunAsync(stderr, resume, p => SweepRunner.ResumeAsync(grains, resume, p));
            Write(resumed.Spec, resumed.Status, resumed.Results, json, report, stdout, stderr, model: null);
            return 0;
        }

        string modelName = args.Required("model"), analysis = args.Required("analysis"), clean = args.Required("clean");
        string? kind = args.Option("kind"), corrupted = args.Option("corrupted"), jobId = args.Option("job-id");
        string? saeLocation = args.Option("sae"), saeHook = args.Option("sae-hook"), direction = args.Option("direction");
        int batchSize = args.Int("batch-size", 8, min: 1), topK = args.Int("top-k", 10, min: 1), lease = args.Int("lease-seconds", 30, min: 1);
        bool noProcessing = args.Flag("no-processing");
        var dtype = ModelLoading.Dtype(args);
        args.RejectUnknown();
        if (!SweepAnalysis.All.Contains(analysis))
            throw new CliUsageException($"unknown --analysis '{analysis}'. Allowed: {string.Join(", ", SweepAnalysis.All)}." + NameSuggestions.DidYouMean(analysis, SweepAnalysis.All));
        if (SweepAnalysis.IsPatching(analysis))
        {
            if (kind is null || corrupted is null) throw new CliUsageException($"--analysis {analysis} needs --kind and --corrupted.");
            if (!PatchKindNames.ByName.ContainsKey(kind))
                throw new CliUsageException($"unknown --kind '{kind}'. Allowed: {string.Join(", ", PatchKindNames.ByName.Keys)}." + NameSuggestions.DidYouMean(kind, PatchKindNames.ByName.Keys));
        }
        else if (direction is not null) throw new CliUsageException($"--direction applies to --analysis patch and attribution, not {analysis}.");
        if (direction is not null && !SweepAnalysis.Directions.Contains(direction))
            throw new CliUsageException($"unknown --direction '{direction}'. Allowed: {string.Join(", ", SweepAnalysis.Directions)}." + NameSuggestions.DidYouMean(direction, SweepAnalysis.Directions));
        if (analysis == SweepAnalysis.SaeStats && saeLocation is null) throw new CliUsageException("--analysis sae-stats needs --sae.");
        if (analysis == SweepAnalysis.SaeStats && report is not null) throw SaeStatsReport();
        AtomicFile.RequireFolders(json, report);

        // Join the cluster before loading anything, so an unreachable Redis fails at once.
        var models = new CliModelSource(stderr);
        using var host = redis is null
            ? await SweepHost.StartInProcessAsync(models, new SweepWorkerSettings())
            : await SweepHost.StartClientAsync(redis, clusterId);
        var (model, modelHash) = models.Load(modelName, noProcessing, dtype);
        string hash = modelHash;
        using var sae = saeLocation is null ? null : SparseAutoencoder.Load(saeLocation, saeHook);
        if (sae is not null) hash = ModelIdentity.Combine(hash, ModelIdentity.HashSae(saeLocation!));
        var cleanPrompts = analysis == SweepAnalysis.SaeStats ? SweepPrompts.Read(model, clean) : DlaInput.FromFile(model, clean);
        List<DlaPrompt>? corruptedPrompts = null;
        if (SweepAnalysis.IsPatching(analysis)) corruptedPrompts = PatchCommand.ReadPairs(model, clean, cleanPrompts, corrupted!);
        var spec = new SweepSpec
        {
            JobId = jobId ?? $"sweep-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}",
            Model = modelName, NoProcessing = noProcessing, Analysis = analysis, Kind = kind, Direction = direction ?? "denoising", Dtype = ModelDtype.Name(dtype), TopK = topK, BatchSize = batchSize,
            LeaseSeconds = lease, ModelHash = hash, Sae = saeLocation, SaeHook = saeHook, Version = SweepWorker.Version, NLayers = model.Config.NLayers, NHeads = model.Config.NHeads,
            Prompts = cleanPrompts.Select((p, i) => new SweepPrompt
            {
                Prompt = p.Prompt, Correct = p.Correct, Incorrect = p.Incorrect, Ids = p.Ids, CorrectId = p.CorrectId, IncorrectId = p.IncorrectId,
                CorruptedIds = corruptedPrompts?[i].Ids,
            }).ToArray(),
        };

        var factory = host.Services.GetRequiredService<IGrainFactory>();
        stderr.WriteLine($"[sharplens] sweep {spec.JobId}: {spec.Prompts.Length} prompts in {spec.ItemCount} items" +
            (redis is null ? " (in-process)" : $"; resume with: sharplens sweep --resume {spec.JobId} --redis {redis} --cluster-id {clusterId} --json {json}"));
        var (status, results) = await SweepDisplay.RunAsync(stderr, spec.JobId, p => SweepRunner.RunAsync(factory, spec, p));
        Write(spec, status, results, json, report, stdout, stderr, model);
        return 0;
    }

    private static void Write(SweepSpec spec, JobStatus status, string[] results, string json, string? report, TextWriter stdout, TextWriter stderr,
        HookedTransformer? model)
    {
        var job = new JsonObject
        {
            ["id"] = spec.JobId, ["items"] = status.Items, ["workers_seen"] = status.WorkersSeen.Length,
            ["items_retried"] = status.ItemsRetried, ["late_results_ignored"] = status.LateResults,
            ["completions"] = new JsonArray(status.Completions.Select(c => (JsonNode)c).ToArray()),
        };
        if (spec.Analysis == SweepAnalysis.SaeStats && report is not null) throw SaeStatsReport();
        // The report may need the model (a resumed job loads it only then): it is made inside the write, which stages
        // the JSON and the report before renaming either, so a failure in one leaves neither.
        JsonObject o;
        Func<string>? reportContent = null;
        HookedTransformer ReportModel(ref HookedTransformer? loaded) =>
            model ?? (loaded = ModelLoading.Load(spec.Model, stderr, !spec.NoProcessing, dtype: ModelDtype.Parse(spec.Dtype)));
        if (spec.Analysis == SweepAnalysis.SaeStats)
        {
            using var sae = SparseAutoencoder.Load(spec.Sae!, spec.SaeHook);
            o = SweepAnalyses.MergeSaeStats(results, spec, sae.Config, spec.TopK);
            stdout.WriteLine($"{o["tokens"]} tokens, L0 {o["l0_mean"]!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture)}, " +
                $"{o["dead_features"]} of {sae.Config.DSae} features never fired");
        }
        else if (SweepAnalysis.IsPatching(spec.Analysis))
        {
            string method = spec.Analysis == SweepAnalysis.Attribution ? "attribution" : "exact";
            var merged = SweepAnalyses.MergePatch(results);
            o = PatchCommand.ToJson(spec.Kind!, merged.Axes, ShapeNested(merged.Shape, merged.Values), merged.CleanMetric, merged.CorruptedMetric);
            o["method"] = method; // as 'patch --json' writes
            o["direction"] = spec.Direction;
            o["dtype"] = spec.Dtype;
            stdout.WriteLine($"clean metric {merged.CleanMetric.ToString("F4", CultureInfo.InvariantCulture)}, corrupted metric {merged.CorruptedMetric.ToString("F4", CultureInfo.InvariantCulture)}");
            reportContent = () =>
            {
                HookedTransformer? loaded = null;
                using var scope = TorchSharp.torch.NewDisposeScope();
                try
                {
                    var values = TorchSharp.torch.tensor(merged.Values.Select(v => (float)v).ToArray(), merged.Shape);
                    return PatchCommand.BuildReport(ReportModel(ref loaded), spec.Model, $"{spec.Kind}, {method}, {spec.Direction}", merged.Axes, values,
                        merged.CleanMetric, merged.CorruptedMetric, Prompt(spec.Prompts[0])).Render();
                }
                finally { loaded?.Dispose(); }
            };
        }
        else
        {
            var merged = SweepAnalyses.MergeDla(results, spec.NLayers, spec.NHeads, spec.TopK);
            var prompts = spec.Prompts.Select(Prompt).ToList();
            o = DlaOutput.ToJson(spec.NLayers, spec.NHeads, spec.Model, prompts, merged, spec.Dtype);
            DlaOutput.PrintTables(stdout, prompts, merged);
            reportContent = () =>
            {
                HookedTransformer? loaded = null;
                try { return DlaReport.Build(ReportModel(ref loaded), spec.Model, "Direct logit attribution (sweep)", prompts, merged).Render(); }
                finally { loaded?.Dispose(); }
            };
        }
        o["job"] = job;
        DlaOutput.WriteOutputs(stdout, (json, () => DlaOutput.ToJsonText(o)), (report, reportContent!));
        stdout.WriteLine($"job {spec.JobId}: {status.Items} items, {status.WorkersSeen.Length} workers, {status.ItemsRetried} retried");
    }

    private static CliUsageException SaeStatsReport() =>
        new("--report is not available for sae-stats; use 'sharplens sae --report' on a few prompts.");

    private static DlaPrompt Prompt(SweepPrompt p) => new(p.Prompt, p.Correct, p.Incorrect, p.Ids, p.CorrectId, p.IncorrectId);

    private static JsonNode ShapeNested(long[] shape, double[] values)
    {
        JsonNode Build(int dim, long offset)
        {
            if (dim == shape.Length) return JsonValue.Create((float)values[offset]);
            long stride = shape.Skip(dim + 1).Aggregate(1L, (a, b) => a * b);
            return new JsonArray(Enumerable.Range(0, (int)shape[dim]).Select(i => Build(dim + 1, offset + i * stride)).ToArray());
        }
        return Build(0, 0);
    }
}
