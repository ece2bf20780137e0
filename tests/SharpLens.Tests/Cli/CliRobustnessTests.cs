using System.Text;
using System.Text.Json.Nodes;
using SharpLens.Tests.Fuzz;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>
/// What a user with damaged files sees: exit code 1, one line "error: ..." naming the file, no stack trace, and no
/// output file — also when the failure comes after the work started (outputs of one run are written all or none).
/// </summary>
public sealed class CliRobustnessTests : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");
    public void Dispose() => Directory.Delete(_dir, true);

    private string OutDir => Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;

    /// <summary>A copy of the tiny GPT-2 folder whose file <paramref name="damaged"/> is replaced by <paramref name="damage"/> of it.</summary>
    private string Model(string damaged, Func<byte[], byte[]> damage)
    {
        string folder = Path.Combine(_dir, "model");
        Directory.CreateDirectory(folder);
        foreach (var f in new[] { "config.json", "model.safetensors" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(Golden.Dir, f));
            File.WriteAllBytes(Path.Combine(folder, f), f == damaged ? damage(bytes) : bytes);
        }
        return folder;
    }

    private static byte[] Config(Action<JsonObject> edit)
    {
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(Golden.Dir, "config.json")))!.AsObject();
        edit(o);
        return Encoding.UTF8.GetBytes(o.ToJsonString());
    }

    /// <summary>Exit 1, exactly one "error:" line (progress lines aside) that mentions <paramref name="file"/>, no trace, nothing in <paramref name="outDir"/>.</summary>
    private static void AssertCleanFailure((int Code, string Out, string Err) r, string file, string outDir)
    {
        Assert.True(r.Code == 1, $"exit {r.Code}, stderr: {r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("[sharplens]", StringComparison.Ordinal)).ToList();
        Assert.True(lines.Count == 1, $"expected one error line, got:\n{r.Err}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(file, lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
    }

    public static TheoryData<string, string> DamagedCheckpoints => new()
    {
        { "model.safetensors", "header-utf8" }, { "model.safetensors", "truncated" }, { "model.safetensors", "header-length" },
        { "model.safetensors", "offsets" }, { "config.json", "wrong-type" }, { "config.json", "truncated" },
        { "config.json", "duplicate-key" }, { "config.json", "huge" }, { "config.json", "negative" },
        { "config.json", "shape-mismatch" }, { "config.json", "not-object" }, { "config.json", "utf16" },
    };

    [Theory]
    [MemberData(nameof(DamagedCheckpoints))]
    public void RunWithDamagedCheckpointFailsCleanly(string file, string damage)
    {
        Func<byte[], byte[]> f = damage switch
        {
            "header-utf8" => b => { var c = (byte[])b.Clone(); c[10] = 0xFF; return c; },
            "truncated" => b => b[..(b.Length / 2)],
            "header-length" => b => { var c = (byte[])b.Clone(); c[6] = 0x7F; return c; },
            "offsets" => b => Encoding.Latin1.GetBytes(Encoding.Latin1.GetString(b).Replace("\"data_offsets\":[0,", "\"data_offsets\":[-8,")),
            "wrong-type" => _ => Config(o => o["n_embd"] = "64"),
            "duplicate-key" => b => Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(b).Replace("\"n_head\": 4,", "\"n_head\": 4, \"n_head\": 8,")),
            "huge" => _ => Config(o => o["n_layer"] = 1e12),
            "negative" => _ => Config(o => o["n_head"] = -4),
            "shape-mismatch" => _ => Config(o => o["n_embd"] = 128),
            "not-object" => _ => "[1, 2]"u8.ToArray(),
            "utf16" => b => Encoding.Unicode.GetBytes(Encoding.UTF8.GetString(b)),
            _ => b => b[..(b.Length / 3)],
        };
        string model = Model(file, f);
        string outDir = OutDir;
        var r = Run("run", "--model", model, "--prompt", "x", "--out", Path.Combine(outDir, "acts.safetensors"));
        // Which file is at fault: the damaged one, except a config that no longer matches the (intact) weights.
        AssertCleanFailure(r, damage == "shape-mismatch" ? "config.json" : file, outDir);
    }

    [Fact]
    public void PromptsAndTokensFilesWithDamageFailCleanly()
    {
        string outDir = OutDir;
        string prompts = Path.Combine(_dir, "prompts.json");
        File.WriteAllBytes(prompts, [.. "[{\"tokens\": [1, 2, 3], \"correct_id\": 4, \"incorrect_id\": 5, \"x\": \"\u00e9"u8, 0xFF, .. "\"}]"u8]);
        AssertCleanFailure(Run("dla", "--model", Golden.Dir, "--prompts", prompts, "--json", Path.Combine(outDir, "dla.json")), "prompts.json", outDir);
        File.WriteAllText(prompts, "[{\"tokens\": [1, 2, 3], \"correct_id\": 4, \"incorrect_id\": 5, \"correct_id\": 6}]");
        AssertCleanFailure(Run("dla", "--model", Golden.Dir, "--prompts", prompts, "--json", Path.Combine(outDir, "dla.json")), "prompts.json", outDir);
        File.WriteAllText(prompts, "[{\"tokens\": [1, 2, 3], \"correct_id\": 4, \"incorrect_id\": 1e300}]");
        AssertCleanFailure(Run("dla", "--model", Golden.Dir, "--prompts", prompts, "--json", Path.Combine(outDir, "dla.json")), "prompts.json", outDir);

        string tokens = Path.Combine(_dir, "tokens.json");
        foreach (var text in new[] { "[[1, \"2\", 3]]", "[[1, 2], 3]", "[[1, 2, 3.5]]", "{\"a\": 1}", "[[1, 99999999999999999999]]" })
        {
            File.WriteAllText(tokens, text);
            AssertCleanFailure(Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", Path.Combine(outDir, "a.safetensors")), "tokens.json", outDir);
        }
        // Valid JSON, but token ids the model does not have: found after loading, still no output.
        File.WriteAllText(tokens, "[[1, 2, 5000]]");
        var r = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", Path.Combine(outDir, "a.safetensors"));
        Assert.Equal(1, r.Code);
        Assert.Contains($"{tokens}: token id 5000 at [batch 0, pos 2] is outside the vocabulary [0, 1000).", r.Err);
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
        // Longer than the context: the error names the file too.
        int nCtx = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Golden.Dir, "config.json")))!["n_positions"]!.GetValue<int>();
        File.WriteAllText(tokens, "[[" + string.Join(", ", Enumerable.Repeat(1, nCtx + 1)) + "]]");
        r = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", Path.Combine(outDir, "a.safetensors"));
        Assert.Equal(1, r.Code);
        Assert.Contains($"{tokens}: sequence of {nCtx + 1} tokens is longer than the model's context n_ctx = {nCtx}.", r.Err);
        Assert.Empty(Directory.GetFileSystemEntries(outDir));
    }

    [Fact]
    public void FuzzedPromptsAndTokensFilesNeverEscape()
    {
        using var model = Golden.Model("none");
        string prompts = Path.Combine(_dir, "prompts.json"), tokens = Path.Combine(_dir, "tokens.json");
        var validPrompts = "[{\"tokens\": [1, 2, 3, 4], \"correct_id\": 5, \"incorrect_id\": 6}, {\"tokens\": [7, 8], \"correct_id\": 9, \"incorrect_id\": 10}]"u8.ToArray();
        Fuzzer.Run("prompts.json", seed: 21, iterations: 3000, m =>
        {
            string what;
            File.WriteAllBytes(prompts, m.Rng.Next(2) == 0 ? m.Bytes(validPrompts, out what) : m.Json(validPrompts, out what));
            return (what, "prompts.json");
        }, () => SharpLens.Cli.Dla.DlaInput.FromFile(model, prompts));
        var validTokens = "[[1, 2, 3], [4, 5, 6]]"u8.ToArray();
        Fuzzer.Run("tokens.json", seed: 22, iterations: 3000, m =>
        {
            string what;
            File.WriteAllBytes(tokens, m.Rng.Next(2) == 0 ? m.Bytes(validTokens, out what) : m.Json(validTokens, out what));
            return (what, "tokens.json");
        }, () => SharpLens.Cli.Commands.RunCommand.ReadTokensFile(tokens));
    }

    /// <summary>A report path that is a folder makes the last write of the run fail: the JSON written in the same run must not remain.</summary>
    [Fact]
    public void DlaAndPatchWriteAllOutputsOrNone()
    {
        string outDir = OutDir;
        using var tokens = Golden.Tokens;
        using var answers = TorchSharp.torch.tensor(new long[] { 5, 6, 7, 8, 9, 10, 11, 12 }, [4, 2]);
        string prompts = TokenPromptFile(_dir, "prompts.json", tokens[..4], answers);
        string json = Path.Combine(outDir, "out.json"), report = Directory.CreateDirectory(Path.Combine(outDir, "report.html")).FullName;

        foreach (var args in new[]
        {
            new[] { "dla", "--model", Golden.Dir, "--prompts", prompts, "--json", json, "--report", report },
            ["patch", "--model", Golden.Dir, "--clean", prompts, "--corrupted", prompts, "--kind", "resid_pre", "--json", json, "--report", report],
        })
        {
            var r = Run(args);
            Assert.True(r.Code == 1, $"{args[0]}: exit {r.Code}: {r.Err}");
            Assert.Contains("Cannot write", r.Err);
            Assert.Contains("report.html", r.Err);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.Equal([report], Directory.GetFileSystemEntries(outDir)); // no out.json, no temporary files
            Assert.Empty(Directory.GetFileSystemEntries(report));
        }
    }

    [Fact]
    public void RunFailingAtItsOutputLeavesNothing()
    {
        string outDir = OutDir;
        string target = Directory.CreateDirectory(Path.Combine(outDir, "acts.safetensors")).FullName; // the model runs, the write fails
        string tokens = Path.Combine(_dir, "tokens.json");
        File.WriteAllText(tokens, "[[1, 2, 3]]");
        var r = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", target);
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("it is a folder", r.Err);
        Assert.Contains("acts.safetensors", r.Err.Split('\n').Last(l => l.StartsWith("error: ", StringComparison.Ordinal)));
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Equal([target], Directory.GetFileSystemEntries(outDir));
        Assert.Empty(Directory.GetFileSystemEntries(target));
    }
}
