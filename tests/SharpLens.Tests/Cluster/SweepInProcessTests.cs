using Microsoft.Extensions.DependencyInjection;
using SharpLens.Cluster;
using SharpLens.Model;
using SharpLens.Tests.Cli;

namespace SharpLens.Tests.Cluster;

/// <summary>Sweeps without Redis: one in-process silo, same grains and ledger semantics, same numbers as the single commands.</summary>
public sealed class SweepInProcessTests
{
    [Theory]
    [InlineData("resid_pre", 5)]
    [InlineData("head_out_all_pos", 7)]
    public void PatchSweepEqualsThePatchCommand(string kind, int batch)
    {
        string dir = CliTestHelper.TempDir();
        var (clean, corrupted) = SweepTestData.PromptFiles(dir, 23);
        string expected = Path.Combine(dir, "patch.json"), actual = Path.Combine(dir, "sweep.json");
        Assert.Equal(0, CliTestHelper.Run("patch", "--model", Golden.Dir, "--kind", kind, "--clean", clean, "--corrupted", corrupted, "--json", expected).Code);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--kind", kind, "--clean", clean, "--corrupted", corrupted,
            "--batch-size", batch.ToString(), "--json", actual);
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(expected, actual);
        var job = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(actual))!["job"]!;
        Assert.Equal((23 + batch - 1) / batch, job["items"]!.GetValue<int>());
        Assert.All(job["completions"]!.AsArray(), c => Assert.Equal(1, c!.GetValue<int>()));
    }

    [Fact]
    public void DlaSweepEqualsTheDlaCommandIncludingPerPromptRowsInOrder()
    {
        string dir = CliTestHelper.TempDir();
        var (clean, _) = SweepTestData.PromptFiles(dir, 17, seed: 3);
        string expected = Path.Combine(dir, "dla.json"), actual = Path.Combine(dir, "sweep.json"), report = Path.Combine(dir, "sweep.html");
        Assert.Equal(0, CliTestHelper.Run("dla", "--model", Golden.Dir, "--prompts", clean, "--json", expected).Code);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "dla", "--clean", clean, "--batch-size", "4", "--json", actual, "--report", report);
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(expected, actual);
        Assert.Contains("<html", File.ReadAllText(report));
    }

    [Fact]
    public void BadArgumentsAreUsageErrorsAndWriteNothing()
    {
        string dir = CliTestHelper.TempDir();
        var (clean, _) = SweepTestData.PromptFiles(dir, 4);
        string json = Path.Combine(dir, "out.json");
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patchh", "--clean", clean, "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("unknown --analysis 'patchh'", r.Err);
        Assert.Contains("patch", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--clean", clean, "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--kind and --corrupted", r.Err);
        r = CliTestHelper.Run("sweep", "--resume", "sweep-x", "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--resume needs --redis", r.Err);
        Assert.False(File.Exists(json));
    }

    private sealed class OtherModel(HookedTransformer model) : ISweepModelSource
    {
        public (HookedTransformer Model, string Hash) Load(string name, bool noProcessing) => (model, "a-different-model");
    }

    [Fact]
    public async Task AWorkerWithAnotherModelRefusesTheJobAndTheStatusSaysWhy()
    {
        using var model = Golden.Model();
        using var host = await SweepHost.StartInProcessAsync(new OtherModel(model), new SweepWorkerSettings());
        var grains = host.Services.GetRequiredService<IGrainFactory>();
        var spec = new SweepSpec
        {
            JobId = "refused", Model = "tiny", Analysis = SweepAnalysis.Dla, BatchSize = 2, ModelHash = "the-clients-model", Version = SweepWorker.Version,
            NLayers = 2, NHeads = 4,
            Prompts = [new SweepPrompt { Prompt = "p", Correct = "a", Incorrect = "b", Ids = [999, 1, 2], CorrectId = 3, IncorrectId = 4 }],
        };
        await grains.GetGrain<ISweepJobGrain>(spec.JobId).Submit(spec);
        await grains.GetGrain<IJobDirectoryGrain>(0).Add(spec.JobId);
        JobStatus status;
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        do
        {
            await Task.Delay(200);
            status = await grains.GetGrain<ISweepJobGrain>(spec.JobId).Status();
        } while (status.Refusals.Length == 0 && DateTime.UtcNow < until);
        Assert.Contains(status.Refusals, r => r.Contains("loaded a different model"));
        Assert.Equal(0, status.Done);
        Assert.Equal(0, status.Leased);
    }
}
