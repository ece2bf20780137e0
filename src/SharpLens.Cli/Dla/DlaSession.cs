using SharpLens.Analysis;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Dla;

/// <summary>Options shared by <c>sharplens ioi</c> and <c>sharplens dla</c>.</summary>
internal sealed record DlaOptions(string Model, string? ReportPath, string? JsonPath, int TopK, int PatternPrompt, string Revision = "main",
    ScalarType Dtype = ScalarType.Float32, bool UseWeightsCache = true);

/// <summary>Runs the DLA analysis end to end: load, tokenize, analyse, print, then write JSON and report.</summary>
internal static class DlaSession
{
    public static int Run(DlaOptions o, Func<HookedTransformer, List<DlaPrompt>> readPrompts, string title, TextWriter stdout, TextWriter stderr)
    {
        // Validate output folders before the (possibly long) run, so a typo costs nothing.
        AtomicFile.RequireFolders(o.ReportPath, o.JsonPath);

        using var model = ModelLoading.Load(o.Model, stderr, revision: o.Revision, dtype: o.Dtype, useWeightsCache: o.UseWeightsCache);
        var prompts = readPrompts(model);
        if (o.PatternPrompt < 0 || o.PatternPrompt >= prompts.Count)
            throw new SharpLensException($"--pattern-prompt {o.PatternPrompt} is out of range: there are {prompts.Count} prompts (0..{prompts.Count - 1}).");
        using var scope = NewDisposeScope();
        var (tokens, answers, lengths) = DlaInput.ToTensors(model, prompts);
        var result = DirectLogitAttribution.Run(model, tokens, answers, lengths, o.TopK, o.PatternPrompt, new SyncProgress<string>(m => stderr.WriteLine($"[sharplens] {m}")));

        DlaOutput.PrintTables(stdout, prompts, result);
        // Outputs are written only after everything succeeded, together: all or none.
        DlaOutput.WriteOutputs(stdout,
            (o.JsonPath, () => DlaOutput.ToJsonText(DlaOutput.ToJson(model, o.Model, prompts, result))),
            (o.ReportPath, () => DlaReport.Build(model, o.Model, title, prompts, result).Render()));
        return 0;
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
