using SharpLens.Cli;
using SharpLens.Cli.Commands;

namespace SharpLens.Tests.Hub;

public sealed class HubCliTests : HubTestBase
{
    private static async Task<(int Code, string Out, string Err)> Run(ICliCommand command, params string[] argv)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        int code = await command.RunAsync(CliArgs.Parse(argv), o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task DownloadPrintsPlainProgressAndTheSnapshotFolder()
    {
        var (code, stdout, stderr) = await Run(new DownloadCommand(() => Options()), Repo, "--revision", "main");
        Assert.Equal(0, code);
        Assert.Equal(Snapshot, stdout.Trim());
        Assert.Contains($"{Repo} at 'main' → {Cache}", stderr);
        Assert.Contains("model.safetensors: 675.3 kB done in", stderr);
        Assert.Contains("config.json: 810 B done in", stderr);
        AssertWeightsInstalled();

        // Again: already cached, the branch is re-checked with HEADs only.
        int gets = Hub.Count(r => r.Method == "GET");
        (code, stdout, _) = await Run(new DownloadCommand(() => Options()), Repo);
        Assert.Equal(0, code);
        Assert.Equal(Snapshot, stdout.Trim());
        Assert.Equal(gets, Hub.Count(r => r.Method == "GET"));
    }

    [Fact]
    public async Task DownloadErrorsGoThroughTheAppWithExitCodes()
    {
        var app = new DownloadCommand(() => Options() with { Offline = true });
        var e = await Assert.ThrowsAsync<SharpLens.Loading.Hub.HubOfflineException>(() => Run(app, Repo));
        Assert.Contains("sharplens download test-org/tiny-gpt2", e.Message);
        await Assert.ThrowsAsync<CliUsageException>(() => Run(app));
        var unknown = await Assert.ThrowsAsync<SharpLensException>(() => Run(app, "gpt3"));
        Assert.StartsWith("unknown model 'gpt3'. Supported: gpt2, ", unknown.Message);
        Assert.Empty(Hub.Log);
    }

    [Fact]
    public async Task ModelsListsNamesRepositoriesSizesAndCacheState()
    {
        // gpt2 cached by hand (config + weights), the others not.
        string snap = Path.Combine(Cache, "models--openai-community--gpt2", "snapshots", FakeHub.Commit);
        Directory.CreateDirectory(snap);
        File.WriteAllText(Path.Combine(snap, "config.json"), "{}");
        File.WriteAllText(Path.Combine(snap, "model.safetensors"), "x");
        Directory.CreateDirectory(Path.Combine(Cache, "models--openai-community--gpt2", "refs"));
        File.WriteAllText(Path.Combine(Cache, "models--openai-community--gpt2", "refs", "main"), FakeHub.Commit);

        var (code, stdout, _) = await Run(new ModelsCommand(() => Options()));
        Assert.Equal(0, code);
        var rows = stdout.Split('\n');
        string Row(string repo) => Assert.Single(rows, l => l.Contains($" {repo} "));
        Assert.Matches(@"gpt2 \(gpt2-small\).*124M.*84,934,656.*yes", Row("openai-community/gpt2"));
        Assert.Matches(@"gpt2-xl.*1\.5B.*1,474,560,000.*no", Row("openai-community/gpt2-xl"));
        Assert.Matches(@"distilgpt2.*82M.*no", Row("distilbert/distilgpt2"));
        Assert.DoesNotContain("\u001b[", stdout); // no ANSI codes when not a terminal
    }

    [Fact]
    public void LineProgressPrintsAtTenPercentStepsAndOnceWhenDone()
    {
        var w = new StringWriter();
        var p = new LineProgress(w);
        for (long b = 0; b <= 1_000_000; b += 10_000) p.Report(new("w.bin", b, 1_000_000));
        p.Report(new("w.bin", 1_000_000, 1_000_000));
        var lines = w.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(11, lines.Length); // 0 %, 10 % … 90 %, done
        Assert.StartsWith("w.bin: 0 B / 1.0 MB (0%)", lines[0]);
        Assert.StartsWith("w.bin: 500.0 kB / 1.0 MB (50%)", lines[5]);
        Assert.StartsWith("w.bin: 1.0 MB done in", lines[10]);
    }
}
