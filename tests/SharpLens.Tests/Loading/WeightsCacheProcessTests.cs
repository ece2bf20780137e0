using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

/// <summary>
/// Two <c>sharplens run</c> processes on one cold weights cache: both succeed with the same output, and the cache ends
/// with exactly one valid entry (writers in different processes publish by atomic rename; no temporary file is left).
/// Isolated: it starts processes.
/// </summary>
[Collection(IsolatedCollection.Name)]
public sealed class WeightsCacheProcessTests
{
    private static string Cli => Path.Combine(AppContext.BaseDirectory, "SharpLens.Cli.dll");

    [Fact]
    public async Task TwoProcessesOnAColdCacheBothSucceedAndLeaveOneValidEntry()
    {
        using var tmp = new TempFolder("wcache-proc-");
        string model = Directory.CreateDirectory(Path.Combine(tmp.Path, "model")).FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(model, f));
        string tokens = Path.Combine(tmp.Path, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3, 4], [5, 6, 7, 8]]");
        string cacheRoot = Path.Combine(tmp.Path, "cache"); // cold: does not exist yet

        Task<(int Code, string Err)> Run(string outName)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { Cli, "run", "--model", model, "--tokens-file", tokens, "--names", "hook_resid_post", "--out", Path.Combine(tmp.Path, outName) })
                psi.ArgumentList.Add(a);
            psi.Environment["SHARPLENS_CACHE"] = cacheRoot;
            psi.Environment.Remove("SHARPLENS_WEIGHTS_CACHE");
            return Task.Run(async () =>
            {
                using var p = Process.Start(psi)!;
                var stdout = p.StandardOutput.ReadToEndAsync();
                string err = await p.StandardError.ReadToEndAsync();
                await stdout;
                if (!p.WaitForExit(120_000)) { p.Kill(entireProcessTree: true); return (-1, err + "\n(timed out)"); }
                return (p.ExitCode, err);
            });
        }

        var results = await Task.WhenAll(Run("a.safetensors"), Run("b.safetensors"));
        foreach (var (code, err) in results)
        {
            Assert.True(code == 0, err);
            Assert.Matches(@"\(processed weights (written to|from) the weights cache\)", err);
        }
        var a = File.ReadAllBytes(Path.Combine(tmp.Path, "a.safetensors"));
        Assert.True(a.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(tmp.Path, "b.safetensors"))), "the two runs wrote different files");

        string weights = Path.Combine(cacheRoot, "weights");
        Assert.Single(Directory.GetFileSystemEntries(weights)); // one entry, no temporary file
        var cache = new WeightsCache(weights, WeightsCache.DefaultMaxBytes);
        using var reference = HookedTransformer.LoadFolder(model, ProcessingOptions.Default, "m", ScalarType.Float32, null);
        using var hit = HookedTransformer.LoadFolder(model, ProcessingOptions.Default, "m", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
        Assert.Empty(hit.LoadWarnings);
        using var scope = NewDisposeScope();
        foreach (var name in reference.ParameterNames)
            Assert.True(reference.Parameter(name).equal(hit.Parameter(name)).all().item<bool>(), $"{name} differs in the cache entry");
    }
}
