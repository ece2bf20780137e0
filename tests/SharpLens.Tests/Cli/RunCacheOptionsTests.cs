using System.Text.Json;
using SharpLens.Analysis;
using SharpLens.Loading;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary><c>sharplens run --stop-at-layer / --pos-slice / --cache-dtype</c> against the library's in-memory cache.</summary>
public sealed class RunCacheOptionsTests
{
    private static string TokensFile(string dir)
    {
        using var t = Golden.Tokens;
        var rows = Enumerable.Range(0, (int)t.shape[0]).Select(b => t[b].data<long>().ToArray()).ToArray();
        string path = Path.Combine(dir, "tokens.json");
        File.WriteAllText(path, JsonSerializer.Serialize(rows));
        return path;
    }

    [Fact]
    public void StopPosSliceAndCacheDtypeWriteWhatRunWithCacheHolds()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string outPath = Path.Combine(dir, "acts.safetensors");
            var (code, stdout, stderr) = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(dir), "--out", outPath,
                "--stop-at-layer", "1", "--pos-slice", "-2:", "--cache-dtype", "bfloat16");
            Assert.True(code == 0, stderr);
            Assert.Contains("residual [4, 12, ", stdout);

            using var scope = NewDisposeScope();
            using var model = Golden.Model();
            var (resid, cache) = model.RunWithCache(Golden.Tokens, stopAtLayer: 1, posSlice: Slice.Range(-2, null), cacheDtype: ScalarType.BFloat16);
            using var f = SafetensorsFile.Open(outPath);
            using (cache)
            {
                Assert.Equal(new[] { "residual", "tokens" }.Concat(cache.Keys), f.Names);
                Assert.DoesNotContain("logits", f.Names);
                Assert.True(resid.equal(f.Read("residual")).all().item<bool>(), "residual");
                foreach (var (name, t) in cache)
                {
                    Assert.Equal("BF16", f.Info(name).Dtype);
                    Assert.True(t.equal(f.Read(name)).all().item<bool>(), name);
                }
                Assert.Equal(new long[] { 4, 2, model.Config.DModel }, f.Info("blocks.0.hook_resid_post").Shape);
                Assert.Equal(new long[] { 4, model.Config.NHeads, 2, 12 }, f.Info("blocks.0.attn.hook_pattern").Shape); // queries sliced, keys kept
            }
            Assert.Equal("1", f.Metadata["stop_at_layer"]);
            Assert.Equal("-2:", f.Metadata["pos_slice"]);
            Assert.Equal("bfloat16", f.Metadata["cache_dtype"]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadCacheOptionsAreOneLineErrorsAndWriteNothing()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string outPath = Path.Combine(dir, "acts.safetensors");
            string tokens = TokensFile(dir);
            var r1 = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--pos-slice", "1:x");
            Assert.Equal(2, r1.Code);
            Assert.Contains("--pos-slice", r1.Err);
            var r2 = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--stop-at-layer", "3");
            Assert.Equal(1, r2.Code);
            Assert.Contains("allowed is [-2, 2]", r2.Err);
            var r3 = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--pos-slice", "12");
            Assert.Equal(1, r3.Code);
            Assert.Contains("allowed indices are [-12, 11]", r3.Err);
            var r4 = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--cache-dtype", "int8");
            Assert.Equal(2, r4.Code);
            var r5 = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--stop-at-layer", "1",
                "--backward", "logit-diff", "--answers", tokens);
            Assert.Equal(2, r5.Code);
            Assert.Contains("--stop-at-layer cannot go with --backward", r5.Err);
            foreach (var r in new[] { r2, r3 }) Assert.Single(r.Err.Trim().Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal));
            foreach (var r in new[] { r1, r2, r3, r4, r5 }) Assert.DoesNotContain("   at ", r.Err); // no stack trace
            Assert.False(File.Exists(outPath));
            Assert.Single(Directory.GetFiles(dir)); // tokens.json only: no temporary file left
        }
        finally { Directory.Delete(dir, true); }
    }
}
