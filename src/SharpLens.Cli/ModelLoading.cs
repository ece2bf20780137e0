using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;
using SharpLens.Tokenization;

namespace SharpLens.Cli;

/// <summary>Loads a model for a command: downloads with a progress display when needed, then reports the load time.</summary>
internal static class ModelLoading
{
    /// <summary><c>--revision R</c> for commands that load a model.</summary>
    public static System.CommandLine.Option<string> RevisionOption() =>
        Opt.Value("revision", "R", "Hub branch, tag or commit of the model (default main; e.g. Pythia's training checkpoint step143000)");

    /// <summary>The <c>--revision</c> option (Hub branch, tag or commit, e.g. Pythia's <c>step143000</c>), <c>main</c> when absent.</summary>
    public static string Revision(CliArgs args) => args.Option("revision") ?? "main";

    /// <summary>
    /// <c>--dtype float32|bfloat16|float16</c> for every command that loads a model. The help states what the half types
    /// cost on a CPU without avx512_bf16/AMX (measured on the 2-core dev VM: libtorch's float16 GEMM 1.3 GFLOP/s, bfloat16
    /// 12–27, float32 55–92): SharpLens widens their matrix products to float32, so they save memory, not time.
    /// </summary>
    public static System.CommandLine.Option<string> DtypeOption() =>
        Opt.Choice("dtype", "float32|bfloat16|float16",
            "parameter and activation type (default float32; also fp32, bf16, fp16). bfloat16/float16 halve the model's memory; " +
            "norm statistics, attention softmax and logits stay float32. On CPUs without avx512_bf16/AMX they are NOT faster: libtorch's " +
            "float16 matrix product is very slow on CPU (~1 GFLOP/s, measured) and its bfloat16 one 2-3x slower than float32, so " +
            "SharpLens runs their products in float32 (same numbers) at about float32 speed", ModelDtype.Names);

    /// <summary>The <c>--dtype</c> option, float32 when absent; an unknown name is a usage error (exit 2) listing the allowed ones.</summary>
    public static ScalarType Dtype(CliArgs args)
    {
        string? s = args.Option("dtype");
        if (s is null) return ScalarType.Float32;
        try { return ModelDtype.Parse(s); }
        catch (SharpLensException) { throw new CliUsageException($"--dtype {TextEncoding.Excerpt(s)} is not a dtype; allowed: {string.Join(", ", ModelDtype.Names)} (or fp32, bf16, fp16)."); }
    }

    /// <summary>
    /// <c>--no-weights-cache</c> for every command that loads a model: load and process the checkpoint without reading or
    /// writing the processed-weights cache (<c>SHARPLENS_WEIGHTS_CACHE=0</c> does the same for every load).
    /// </summary>
    public static System.CommandLine.Option<bool> NoWeightsCacheOption() =>
        Opt.Flag(NoWeightsCacheName, "do not read or write the processed-weights cache ($SHARPLENS_CACHE/weights, else ~/.cache/sharplens/weights): " +
            "process the checkpoint on every load (or set SHARPLENS_WEIGHTS_CACHE=0)");

    /// <summary>The flag's name, without dashes.</summary>
    public const string NoWeightsCacheName = "no-weights-cache";

    /// <summary>False when the command gave <c>--no-weights-cache</c> (the command must declare the flag).</summary>
    public static bool UseWeightsCache(CliArgs args) => !args.Flag(NoWeightsCacheName);

    /// <summary>Loads the model (see <see cref="LoadWithFolder"/>).</summary>
    public static HookedTransformer Load(string nameOrPath, TextWriter stderr, bool process = true, string revision = "main",
        ScalarType dtype = ScalarType.Float32, bool useWeightsCache = true) =>
        LoadWithFolder(nameOrPath, stderr, process, revision, dtype, useWeightsCache).Model;

    /// <summary>
    /// Loads the model and also returns the checkpoint folder it came from (a local folder or a Hub snapshot).
    /// <paramref name="useWeightsCache"/> false bypasses the processed-weights cache (<c>--no-weights-cache</c>);
    /// <c>SHARPLENS_WEIGHTS_CACHE=0</c> bypasses it either way.
    /// </summary>
    public static (HookedTransformer Model, string Folder) LoadWithFolder(string nameOrPath, TextWriter stderr, bool process = true,
        string revision = "main", ScalarType dtype = ScalarType.Float32, bool useWeightsCache = true)
    {
        string folder = nameOrPath, name = Path.GetFileName(Path.TrimEndingDirectorySeparator(nameOrPath));
        if (Directory.Exists(nameOrPath))
        {
            if (revision != "main")
                throw new CliUsageException($"--revision {revision} selects a Hub revision, but '{nameOrPath}' is a local folder.");
        }
        else
        {
            folder = DownloadDisplay.RunAsync(stderr, p => Task.Run(() => PretrainedSource.ResolveFolder(nameOrPath,
                new LoadOptions { Progress = p, Revision = revision }))).GetAwaiter().GetResult();
            name = revision == "main" ? nameOrPath : $"{nameOrPath}@{revision}";
        }
        var sw = Stopwatch.StartNew();
        var model = HookedTransformer.FromFolder(folder, process ? ProcessingOptions.Default : ProcessingOptions.None, name, dtype,
            useWeightsCache);
        stderr.WriteLine($"[sharplens] loaded {model.Config.ModelName} ({model.Config.NLayers} layers, d_model {model.Config.DModel}, " +
            $"{model.Config.NHeads} heads, {ModelDtype.Name(model.Dtype)}) in {sw.Elapsed.TotalSeconds:F2} s{CacheNote(model.WeightsCacheUse)}");
        foreach (var w in model.LoadWarnings) stderr.WriteLine($"[sharplens] warning: {w}");
        return (model, folder);
    }

    private static string CacheNote(WeightsCacheUse use) => use switch
    {
        WeightsCacheUse.Hit => " (processed weights from the weights cache)",
        WeightsCacheUse.Written => " (processed weights written to the weights cache)",
        _ => "",
    };
}
