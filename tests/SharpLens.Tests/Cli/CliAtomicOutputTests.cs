using System.Text.Json;
using SharpLens.Tests.Cluster;
using SharpLens.Tests.Sae;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>
/// Every command that writes files (<c>--json</c>, <c>--report</c>, <c>--out</c>), failing after its work is done
/// (the report path is a folder, so the last write fails) or in the middle of it: exit 1, one error naming the file,
/// no new output, no temporary file, and an output file from an earlier run left exactly as it was.
/// </summary>
public sealed class CliAtomicOutputTests(RandomGpt2Checkpoint checkpoint) : IDisposable, IClassFixture<RandomGpt2Checkpoint>
{
    private const string Earlier = "results of an earlier run";
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");
    public void Dispose() => Directory.Delete(_dir, true);

    public static TheoryData<string> Commands => ["dla", "patch", "ioi", "sae", "attribute", "sweep-patch", "sweep-attribution", "sweep-dla"];

    /// <summary>Command-line of <paramref name="command"/> on the tiny models, writing <paramref name="json"/> and <paramref name="report"/>.</summary>
    private string[] Args(string command, string json, string report)
    {
        string inputs = Directory.CreateDirectory(Path.Combine(_dir, "in")).FullName;
        var (clean, corrupted) = SweepTestData.PromptFiles(inputs, 4);
        string tokens = Path.Combine(inputs, "tokens.json"), answers = Path.Combine(inputs, "answers.json");
        File.WriteAllText(tokens, "[[999, 5, 17, 301, 42], [999, 8, 2, 33, 640]]");
        File.WriteAllText(answers, "[[3, 400], [12, 7]]");
        string[] outputs = ["--json", json, "--report", report];
        string[] patching = ["--model", Golden.Dir, "--kind", "resid_pre", "--clean", clean, "--corrupted", corrupted];
        return command switch
        {
            "dla" => ["dla", "--model", Golden.Dir, "--prompts", clean, .. outputs],
            "patch" => ["patch", .. patching, .. outputs],
            "ioi" => ["ioi", "--model", checkpoint.Dir, "--top-k", "3", .. outputs],
            "sae" => ["sae", "--model", Golden.Dir, "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "--tokens-file", tokens, .. outputs],
            "attribute" => ["attribute", "--model", Golden.Dir, "--tokens-file", tokens, "--answers", answers, "--steps", "2", .. outputs],
            "sweep-patch" => ["sweep", "--analysis", "patch", .. patching, "--batch-size", "3", .. outputs],
            "sweep-attribution" => ["sweep", "--analysis", "attribution", .. patching, "--batch-size", "3", .. outputs],
            "sweep-dla" => ["sweep", "--analysis", "dla", "--model", Golden.Dir, "--clean", clean, "--batch-size", "3", .. outputs],
            _ => throw new ArgumentException(command),
        };
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void AFailedLastWriteLeavesTheEarlierOutputAsItWas(string command)
    {
        string outDir = Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;
        string json = Path.Combine(outDir, "out.json");
        File.WriteAllText(json, Earlier);
        string report = Directory.CreateDirectory(Path.Combine(outDir, "report.html")).FullName; // everything runs; the report cannot be written
        var r = Run(Args(command, json, report));
        Assert.True(r.Code == 1, $"{command}: exit {r.Code}: {r.Err}");
        var error = Assert.Single(r.Err.Split('\n'), l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("Cannot write", error);
        Assert.Contains("report.html", error);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Equal(Earlier, File.ReadAllText(json));
        Assert.Equal([json, report], Directory.GetFileSystemEntries(outDir).Order(StringComparer.Ordinal)); // no temporary files
        Assert.Empty(Directory.GetFileSystemEntries(report));
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void TheSameRunWithWritableOutputsWritesBoth(string command)
    {
        // Guards the test above: the only thing wrong there is the report path.
        string outDir = Directory.CreateDirectory(Path.Combine(_dir, "ok")).FullName;
        string json = Path.Combine(outDir, "out.json"), report = Path.Combine(outDir, "report.html");
        File.WriteAllText(json, Earlier);
        var r = Run(Args(command, json, report));
        Assert.True(r.Code == 0, $"{command}: exit {r.Code}: {r.Err}");
        Assert.NotNull(JsonDocument.Parse(File.ReadAllText(json)));
        Assert.Contains("<html", File.ReadAllText(report));
        Assert.Equal([json, report], Directory.GetFileSystemEntries(outDir).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void RunFailingMidwayLeavesTheEarlierOutputAsItWas()
    {
        string outPath = Path.Combine(_dir, "acts.safetensors"), tokens = Path.Combine(_dir, "tokens.json");
        File.WriteAllText(outPath, Earlier);
        File.WriteAllText(tokens, "[[1, 2, 3], [4, 5, 99999]]"); // valid JSON; the id is outside the vocabulary, found once the model is loaded
        var r = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath);
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("99999", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Equal(Earlier, File.ReadAllText(outPath));
        Assert.Equal([outPath, tokens], Directory.GetFiles(_dir).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void SweepFailingAfterItsClusterStartedLeavesTheEarlierOutputAsItWas()
    {
        // The in-process silo is up and the model loaded when the prompts turn out longer than the model's context.
        string json = Path.Combine(_dir, "sweep.json"), prompts = Path.Combine(_dir, "long.json");
        File.WriteAllText(json, Earlier);
        var ids = Enumerable.Range(0, 3).Select(b => new { tokens = Enumerable.Range(0, 2000).Select(i => (long)((i * 7 + b) % 999)).ToArray(), correct_id = 1, incorrect_id = 2 });
        File.WriteAllText(prompts, JsonSerializer.Serialize(ids));
        var r = Run("sweep", "--model", Golden.Dir, "--analysis", "dla", "--clean", prompts, "--batch-size", "2", "--json", json);
        Assert.True(r.Code == 1, $"exit {r.Code}: {r.Err}");
        Assert.Contains("more than n_ctx = 64", r.Err);
        Assert.Contains("characters)", r.Err); // the 2000-token prompt is quoted by its start only
        Assert.True(r.Err.Length < 600, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Equal(Earlier, File.ReadAllText(json));
        Assert.Equal([prompts, json], Directory.GetFiles(_dir).Order(StringComparer.Ordinal));
    }
}
