using SharpLens.Loading;

namespace SharpLens.Tests.Cli;

/// <summary><c>--no-weights-cache</c> on the model-loading commands, and the load line saying what the cache did.</summary>
public sealed class WeightsCacheCliTests
{
    [Theory]
    [InlineData("run"), InlineData("generate"), InlineData("patch"), InlineData("attribute"), InlineData("ioi"), InlineData("dla"), InlineData("sae")]
    public void EveryModelLoadingCommandOffersTheFlag(string command)
    {
        var (code, stdout, _) = CliTestHelper.Run(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains("--no-weights-cache", stdout);
    }

    [Fact]
    public void FlagBypassesTheCacheAndWithoutItTheSecondLoadIsAHit()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        string model = Path.Combine(dir, "model");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(model, f));
        var cache = WeightsCache.FromEnvironment()!;
        string tokens = Path.Combine(dir, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3, 4], [5, 6, 7, 8]]");
        int Entries() => Directory.Exists(cache.Folder) ? Directory.GetFiles(cache.Folder, "*.safetensors").Length : 0;
        (int Code, string Err) Run(string outName, params string[] extra)
        {
            var (code, _, err) = CliTestHelper.Run(["run", "--model", model, "--tokens-file", tokens, "--names", "hook_resid_post", "--out", Path.Combine(dir, outName), .. extra]);
            return (code, err);
        }

        int before = Entries();
        var off = Run("a.safetensors", "--no-weights-cache");
        Assert.True(off.Code == 0, off.Err);
        Assert.DoesNotContain("weights cache", off.Err);
        var written = Run("b.safetensors");
        Assert.True(written.Code == 0, written.Err);
        Assert.Contains("(processed weights written to the weights cache)", written.Err);
        Assert.True(Entries() > before);
        var hit = Run("c.safetensors");
        Assert.Equal(0, hit.Code);
        Assert.Contains("(processed weights from the weights cache)", hit.Err);
        using var a = SafetensorsFile.Open(Path.Combine(dir, "a.safetensors"));
        using var c = SafetensorsFile.Open(Path.Combine(dir, "c.safetensors"));
        Assert.Equal(a.Names, c.Names);
        foreach (var n in a.Names) Assert.True(a.Read(n).equal(c.Read(n)).all().item<bool>(), n);
    }

    /// <summary>
    /// The flag is a parameter of the load, not ambient state: runs with and without it, side by side in one process on
    /// the same checkpoint, each get their own setting (the flagged ones never touch the cache, the others always do).
    /// </summary>
    [Fact]
    public async Task ConcurrentInProcessRunsWithDifferentSettingsDoNotInterfere()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        string model = Path.Combine(dir, "model");
        Directory.CreateDirectory(model);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(model, f));
        string tokens = Path.Combine(dir, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3, 4]]");
        using var start = new Barrier(6);
        var runs = Enumerable.Range(0, 6).Select(i => Task.Run(() =>
        {
            string[] argv = ["run", "--model", model, "--tokens-file", tokens, "--names", "hook_embed", "--out", Path.Combine(dir, $"{i}.safetensors"),
                .. i % 2 == 0 ? new[] { "--no-weights-cache" } : []];
            start.SignalAndWait();
            var (code, _, err) = CliTestHelper.Run(argv);
            return (Bypass: i % 2 == 0, code, err);
        })).ToArray();
        foreach (var (bypass, code, err) in await Task.WhenAll(runs))
        {
            Assert.True(code == 0, err);
            if (bypass) Assert.DoesNotContain("weights cache", err);
            else Assert.Matches(@"\(processed weights (written to|from) the weights cache\)", err);
        }
    }
}
