using Microsoft.Extensions.DependencyInjection;
using SharpLens.Cluster;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Tests.Cli;
using static TorchSharp.torch;

namespace SharpLens.Tests.Cluster;

/// <summary>Sweeps without Redis: one in-process silo, same grains and ledger semantics, same numbers as the single commands.</summary>
public sealed class SweepInProcessTests
{
    [Theory]
    [InlineData("resid_pre", 5)]
    [InlineData("head_out_all_pos", 7)]
    public void PatchSweepEqualsThePatchCommand(string kind, int batch)
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
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

    [Theory]
    [InlineData("attribution", "resid_pre", "denoising", 5)]
    [InlineData("attribution", "head_out_by_pos", "noising", 6)]
    [InlineData("attribution", "head_pattern_all_pos", "denoising", 4)]
    [InlineData("patch", "attn_out", "noising", 7)]
    public void PatchingSweepsEqualThePatchCommandInEitherDirection(string analysis, string kind, string direction, int batch)
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, corrupted) = SweepTestData.PromptFiles(dir, 19, seed: 11);
        string expected = Path.Combine(dir, "patch.json"), actual = Path.Combine(dir, "sweep.json");
        string method = analysis == "patch" ? "exact" : "attribution";
        var p = CliTestHelper.Run("patch", "--model", Golden.Dir, "--kind", kind, "--method", method, "--direction", direction,
            "--clean", clean, "--corrupted", corrupted, "--json", expected);
        Assert.True(p.Code == 0, p.Err);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", analysis, "--kind", kind, "--direction", direction,
            "--clean", clean, "--corrupted", corrupted, "--batch-size", batch.ToString(), "--json", actual);
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(expected, actual);
        var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(actual))!;
        Assert.Equal(method, o["method"]!.GetValue<string>());
        Assert.Equal(direction, o["direction"]!.GetValue<string>());
        Assert.Equal((19 + batch - 1) / batch, o["job"]!["items"]!.GetValue<int>());
    }

    [Fact]
    public void AttributionSweepIsNotTheExactSweep()
    {
        // Guards the test above: the two methods give different numbers here, so equality to the right one means something.
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, corrupted) = SweepTestData.PromptFiles(dir, 6, seed: 11);
        string a = Path.Combine(dir, "a.json"), e = Path.Combine(dir, "e.json");
        foreach (var (analysis, path) in new[] { ("attribution", a), ("patch", e) })
            Assert.Equal(0, CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", analysis, "--kind", "resid_pre", "--clean", clean,
                "--corrupted", corrupted, "--batch-size", "4", "--json", path).Code);
        var ex = Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => SweepTestData.AssertSameResult(e, a));
        Assert.Contains("$.values", ex.Message);
    }

    [Fact]
    public void DlaSweepEqualsTheDlaCommandIncludingPerPromptRowsInOrder()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, _) = SweepTestData.PromptFiles(dir, 17, seed: 3);
        string expected = Path.Combine(dir, "dla.json"), actual = Path.Combine(dir, "sweep.json"), report = Path.Combine(dir, "sweep.html");
        Assert.Equal(0, CliTestHelper.Run("dla", "--model", Golden.Dir, "--prompts", clean, "--json", expected).Code);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "dla", "--clean", clean, "--batch-size", "4", "--json", actual, "--report", report);
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(expected, actual);
        Assert.Contains("<html", File.ReadAllText(report));
    }

    [Fact]
    public void Bfloat16SweepEqualsThePatchCommandInBfloat16()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, corrupted) = SweepTestData.PromptFiles(dir, 9, seed: 5);
        string expected = Path.Combine(dir, "patch.json"), actual = Path.Combine(dir, "sweep.json"), f32 = Path.Combine(dir, "f32.json");
        Assert.Equal(0, CliTestHelper.Run("patch", "--model", Golden.Dir, "--kind", "resid_pre", "--dtype", "bf16", "--clean", clean, "--corrupted", corrupted,
            "--json", expected).Code);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--kind", "resid_pre", "--dtype", "bf16", "--clean", clean,
            "--corrupted", corrupted, "--batch-size", "4", "--json", actual);
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(expected, actual);
        Assert.Equal("bfloat16", System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(actual))!["dtype"]!.GetValue<string>());
        Assert.Equal(0, CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--kind", "resid_pre", "--clean", clean,
            "--corrupted", corrupted, "--batch-size", "4", "--json", f32).Code);
        Assert.Equal("float32", System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(f32))!["dtype"]!.GetValue<string>());
        var bf = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(actual))!["clean_metric"]!.GetValue<double>();
        var fl = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(f32))!["clean_metric"]!.GetValue<double>();
        Assert.NotEqual(fl, bf); // bfloat16 really was used
    }

    [Fact]
    public void BadArgumentsAreUsageErrorsAndWriteNothing()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, _) = SweepTestData.PromptFiles(dir, 4);
        string json = Path.Combine(dir, "out.json");
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patchh", "--clean", clean, "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("unknown --analysis 'patchh'", r.Err);
        Assert.Contains("patch", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--clean", clean, "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--kind and --corrupted", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "attribution", "--kind", "resid_pre", "--clean", clean, "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--analysis attribution needs --kind and --corrupted", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "patch", "--kind", "resid_pre", "--clean", clean, "--corrupted", clean,
            "--direction", "noisng", "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("unknown --direction 'noisng'", r.Err);
        Assert.Contains("noising", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "dla", "--clean", clean, "--direction", "noising", "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--direction applies to --analysis patch and attribution", r.Err);
        r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "dla", "--clean", clean, "--dtype", "fp8", "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--dtype 'fp8' is not a dtype; allowed: float32, bfloat16, float16", r.Err);
        r = CliTestHelper.Run("sweep", "--resume", "sweep-x", "--json", json);
        Assert.Equal(2, r.Code);
        Assert.Contains("--resume needs --redis", r.Err);
        Assert.False(File.Exists(json));
    }

    private sealed class OtherModel(HookedTransformer model) : ISweepModelSource
    {
        public (HookedTransformer Model, string Hash) Load(string name, bool noProcessing, ScalarType dtype) => (model, "a-different-model");
    }

    /// <summary>
    /// Counts loads per key (model, processing, dtype) and hashes each key as the CLI does. It hands out the float32 golden
    /// model for every dtype: what is tested here is the worker's bookkeeping, not bfloat16 arithmetic.
    /// </summary>
    private sealed class CountingSource : ISweepModelSource
    {
        public List<(string, bool, ScalarType)> Loads { get; } = [];

        public (HookedTransformer Model, string Hash) Load(string name, bool noProcessing, ScalarType dtype)
        {
            lock (Loads) Loads.Add((name, noProcessing, dtype));
            return (HookedTransformer.FromFolder(Golden.Dir, noProcessing ? ProcessingOptions.None : ProcessingOptions.Default, "tiny"),
                ModelIdentity.Hash(Golden.Dir, noProcessing, dtype));
        }
    }

    [Fact]
    public async Task AWorkerLoadsEachModelAndDtypeOnceAndKeepsWorkingAfterRefusingAJob()
    {
        var source = new CountingSource();
        using var host = await SweepHost.StartInProcessAsync(source, new SweepWorkerSettings());
        var grains = host.Services.GetRequiredService<IGrainFactory>();
        string f32 = ModelIdentity.Hash(Golden.Dir, false, ScalarType.Float32), bf16 = ModelIdentity.Hash(Golden.Dir, false, ScalarType.BFloat16);
        Assert.NotEqual(f32, bf16);
        var prompts = Enumerable.Range(0, 3).Select(i => new SweepPrompt
        {
            Prompt = $"p{i}", Correct = "a", Incorrect = "b", Ids = [999, 5 + i, 17, 301, 42 + i], CorrectId = 3 + i, IncorrectId = 400 + i,
        }).ToArray();
        SweepSpec Job(string id, string dtype, string hash) => new()
        {
            JobId = id, Model = "tiny", Analysis = SweepAnalysis.Dla, BatchSize = 2, ModelHash = hash, Version = SweepWorker.Version,
            NLayers = 2, NHeads = 4, Dtype = dtype, Prompts = prompts,
        };
        // The first job names a dtype this worker cannot load (it skips that job); the second job's client computed in
        // bfloat16 but asks for float32: the worker cannot reproduce it and refuses it. Neither stops it working on the others.
        var jobs = new[] { Job("bad-dtype", "int8", f32), Job("mismatch", "float32", bf16), Job("f32", "float32", f32), Job("bf16", "bfloat16", bf16), Job("f32-again", "float32", f32) };
        foreach (var spec in jobs)
        {
            await grains.GetGrain<ISweepJobGrain>(spec.JobId).Submit(spec);
            await grains.GetGrain<IJobDirectoryGrain>(0).Add(spec.JobId);
        }
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        async Task<JobStatus> Status(string id) => await grains.GetGrain<ISweepJobGrain>(id).Status();
        var ids = new[] { "f32", "bf16", "f32-again" };
        while (DateTime.UtcNow < until)
        {
            var states = await Task.WhenAll(ids.Select(Status));
            Assert.All(states, st => Assert.Null(st.Error));
            if (states.All(st => st.Finished)) break;
            await Task.Delay(200);
        }
        var refused = await Status("mismatch");
        Assert.Contains(refused.Refusals, r => r.Contains("loaded a different model"));
        Assert.Equal(0, refused.Done);
        Assert.Equal(0, (await Status("bad-dtype")).Done);
        foreach (var id in ids) Assert.True((await Status(id)).Finished, id);
        // One load per key: the float32 model serves "f32" and "f32-again" (and the refused job), bfloat16 is a second key.
        Assert.Equal([("tiny", false, ScalarType.Float32), ("tiny", false, ScalarType.BFloat16)], source.Loads.Order().ToList());
        Assert.Equal(await grains.GetGrain<ISweepJobGrain>("f32").Results(), await grains.GetGrain<ISweepJobGrain>("f32-again").Results());
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

/// <summary>SAE feature statistics as a sweep, checked against SAELens's own feature activations on the golden tokens.</summary>
public sealed class SaeStatsSweepTests
{
    [Theory]
    [InlineData("standard_blocks.0.hook_resid_post")]
    [InlineData("topk_blocks.1.hook_resid_pre")]
    [InlineData("standard_blocks.0.attn.hook_z")]
    public void FeatureFrequenciesAndMeansEqualSaeLensActivations(string saeName)
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        using var scope = TorchSharp.torch.NewDisposeScope();
        var tokens = Tests.Sae.SaeGolden.T("tokens");
        string prompts = CliTestHelper.TokenPromptFile(dir, "tokens.json", tokens, TorchSharp.torch.zeros(new long[] { tokens.shape[0], 2 }, TorchSharp.torch.ScalarType.Int64));
        string json = Path.Combine(dir, "stats.json");
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "sae-stats", "--sae", Tests.Sae.SaeGolden.Folder(saeName),
            "--clean", prompts, "--batch-size", "3", "--top-k", "5", "--json", json);
        Assert.True(r.Code == 0, r.Err);
        var o = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(json))!.AsObject();

        var acts = Tests.Sae.SaeGolden.T($"{saeName}/cache.{Tests.Sae.SaeGolden.HookOf(saeName)}.hook_sae_acts_post").to_type(TorchSharp.torch.ScalarType.Float64);
        var flat = acts.reshape(-1, acts.shape[^1]);
        double n = flat.shape[0];
        Assert.Equal(n, o["tokens"]!.GetValue<double>());
        var freq = (flat.gt(0).to_type(TorchSharp.torch.ScalarType.Float64).sum(0L) / n).data<double>().ToArray();
        var mean = (flat.sum(0L) / n).data<double>().ToArray();
        var gotFreq = o["feature_frequency"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        var gotMean = o["feature_mean_activation"]!.AsArray().Select(x => x!.GetValue<double>()).ToArray();
        Assert.Equal(freq, gotFreq); // active-feature counts are exact
        double scale = Math.Max(1, mean.Max(Math.Abs));
        for (int j = 0; j < mean.Length; j++) Assert.True(Math.Abs(mean[j] - gotMean[j]) <= 1e-4 * scale, $"feature {j}: {gotMean[j]} vs {mean[j]}");
        Assert.Equal(freq.Count(f => f == 0), o["dead_features"]!.GetValue<int>());
        Assert.Equal(flat.gt(0).sum().item<long>() / n, o["l0_mean"]!.GetValue<double>(), 9);
        Assert.Equal(5, o["top_features"]!.AsArray().Count);
        Assert.Equal(freq.Max(), o["top_features"]![0]!["frequency"]!.GetValue<double>());
        Assert.Equal(2, o["job"]!["items"]!.GetValue<int>());
    }

    [Fact]
    public void SaeStatsWithoutAnSaeIsAUsageError()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        var (clean, _) = SweepTestData.PromptFiles(dir, 2);
        var r = CliTestHelper.Run("sweep", "--model", Golden.Dir, "--analysis", "sae-stats", "--clean", clean, "--json", Path.Combine(dir, "x.json"));
        Assert.Equal(2, r.Code);
        Assert.Contains("needs --sae", r.Err);
    }
}
