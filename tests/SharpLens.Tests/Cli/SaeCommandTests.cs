using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tests.Sae;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary><c>sharplens run --sae</c> and <c>sharplens sae</c> on the golden SAEs.</summary>
public sealed class SaeCommandTests : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private string TokensFile()
    {
        using var t = SaeGolden.T("tokens");
        string path = Path.Combine(_dir, "tokens.json");
        File.WriteAllText(path, JsonSerializer.Serialize(Enumerable.Range(0, (int)t.shape[0]).Select(b => t[b].data<long>().ToArray())));
        return path;
    }

    [Fact]
    public void RunWithTwoSaesExportsTheSplicedLogitsAndEverySaeHook()
    {
        string outPath = Path.Combine(_dir, "acts.safetensors");
        var multi = SaeGolden.Strings(SaeGolden.Manifest["multi_sae"]!);
        var (code, stdout, stderr) = Run(["run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath,
            .. multi.SelectMany(m => new[] { "--sae", SaeGolden.Folder(m) })]);
        Assert.True(code == 0, stderr);
        Assert.Contains("loaded SAE(standard, blocks.0.hook_resid_post", stderr);
        using var scope = NewDisposeScope();
        using var f = SafetensorsFile.Open(outPath);
        Assert.Equal(["logits", "tokens", .. SaeGolden.Strings(SaeGolden.Manifest["cache_keys_with_saes"]!["multi/cache"]!)], f.Names);
        Golden.AssertClose(SaeGolden.T("multi/logits_spliced"), f.Read("logits"), "multi logits");
        Assert.Equal("blocks.0.hook_resid_post,blocks.1.hook_resid_pre", f.Metadata["saes"]);
    }

    [Fact]
    public void RunWithAHookZSaeAndTheErrorTerm()
    {
        const string name = "standard_blocks.0.attn.hook_z";
        string outPath = Path.Combine(_dir, "acts.safetensors");
        var (code, _, stderr) = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath,
            "--sae", SaeGolden.Folder(name), "--sae-hook", "blocks.0.attn.hook_z", "--sae-error-term");
        Assert.True(code == 0, stderr);
        using var scope = NewDisposeScope();
        using var f = SafetensorsFile.Open(outPath);
        Assert.Equal(["logits", "tokens", .. SaeGolden.Strings(SaeGolden.Manifest["cache_keys_with_saes"]![name + "/cache_error_term"]!)], f.Names);
        Golden.AssertClose(SaeGolden.T(name + "/logits_spliced_error_term"), f.Read("logits"), "logits");
        foreach (var h in new[] { "hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error", "hook_sae_output" })
            Golden.AssertClose(SaeGolden.T($"{name}/cache_error_term.blocks.0.attn.hook_z.{h}"), f.Read($"blocks.0.attn.hook_z.{h}"), h);
        Assert.Equal("true", f.Metadata["sae_error_term"]);
    }

    [Fact]
    public void RunSaeErrors()
    {
        string outPath = Path.Combine(_dir, "acts.safetensors");
        var r1 = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath, "--sae-error-term");
        Assert.Equal(2, r1.Code);
        Assert.Contains("need --sae", r1.Err);
        var r2 = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath,
            "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "--sae-hook", "blocks.9.hook_resid_post");
        Assert.Equal(1, r2.Code);
        Assert.Contains("reads hook 'blocks.9.hook_resid_post', which this model", r2.Err);
        var r3 = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath,
            "--sae", SaeGolden.Folder("jumprelu_blocks.1.hook_mlp_out_gemma_scope"));
        Assert.Equal(1, r3.Code);
        Assert.Contains("Cannot tell which hook the Gemma Scope SAE", r3.Err);
        var r4 = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(), "--out", outPath,
            "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "--sae-hook", "blocks.0.mlp.hook_pre");
        Assert.Equal(1, r4.Code);
        Assert.Contains("d_in = 64, but activations at 'blocks.0.mlp.hook_pre'", r4.Err);
        Assert.False(File.Exists(outPath));
    }

    [Fact]
    public void SaeJsonMatchesTheGoldenNumbers()
    {
        const string name = "standard_blocks.0.hook_resid_post";
        string json = Path.Combine(_dir, "sae.json"), report = Path.Combine(_dir, "sae.html"), answers = Path.Combine(_dir, "answers.json");
        using var scope = NewDisposeScope();
        var ans = SaeGolden.T("answer_tokens");
        File.WriteAllText(answers, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => ans[b].data<long>().ToArray())));
        var (code, stdout, stderr) = Run("sae", "--model", Golden.Dir, "--sae", SaeGolden.Folder(name), "--tokens-file", TokensFile(),
            "--answers", answers, "--top-k", "10", "--json", json, "--report", report);
        Assert.True(code == 0, stderr);
        Assert.Contains("Top 10 features per token", stdout);
        var o = JsonNode.Parse(File.ReadAllText(json))!;
        void Near(string key, double expected) =>
            Assert.True(Math.Abs(o[key]!.GetValue<double>() - expected) <= 1e-4 * Math.Max(1, Math.Abs(expected)), $"{key}: {o[key]} vs {expected}");
        Assert.Equal(Golden.Dir, o["model"]!.GetValue<string>());
        Assert.Equal("blocks.0.hook_resid_post", o["sae"]!["hook_name"]!.GetValue<string>());
        Assert.Equal("standard", o["sae"]!["architecture"]!.GetValue<string>());
        Assert.Equal(64, o["sae"]!["d_in"]!.GetValue<int>());
        Assert.Equal(256, o["sae"]!["d_sae"]!.GetValue<int>());
        Near("l0_mean", SaeGolden.T(name + "/metrics/l0_mean").item<float>());
        Near("mse", SaeGolden.T(name + "/metrics/mse").item<float>());
        Near("explained_variance", SaeGolden.T(name + "/metrics/explained_variance").item<float>());
        Near("ce_loss_clean", SaeGolden.T("clean/loss").item<float>());
        Near("ce_loss_with_sae", SaeGolden.T(name + "/loss_spliced").item<float>());
        Near("ce_loss_zero_ablation", SaeGolden.T(name + "/saelens_evals/ce_loss_with_ablation").mean().item<float>());
        Near("ce_loss_score", SaeGolden.T(name + "/saelens_evals/ce_loss_score").item<float>());

        // top features per token: the golden encode's active features, strongest first (at most 10)
        var enc = SaeGolden.T(name + "/encode");
        var top = o["top_features"]!.AsArray();
        Assert.Equal(48, top.Count);
        foreach (var entry in top)
        {
            int b = entry!["batch"]!.GetValue<int>(), p = entry["pos"]!.GetValue<int>();
            var feats = entry["features"]!.AsArray();
            var row = enc[b, p];
            int active = (int)(row > 0).sum().item<long>();
            Assert.Equal(Math.Min(10, active), feats.Count);
            var (vals, idx) = row.topk(feats.Count);
            for (int i = 0; i < feats.Count; i++)
            {
                Assert.Equal(idx[i].item<long>(), feats[i]!["id"]!.GetValue<long>());
                Assert.True(Math.Abs(vals[i].item<float>() - feats[i]!["activation"]!.GetValue<float>()) <= 1e-4 * Math.Max(1, vals[i].item<float>()));
            }
        }
        var dla = o["feature_dla_top"]!.AsArray();
        var idxs = SaeGolden.T(name + "/feature_dla_top_idx").data<long>().ToArray();
        var means = SaeGolden.T(name + "/feature_dla_top_mean").data<float>().ToArray();
        Assert.Equal(10, dla.Count);
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(idxs[i], dla[i]!["id"]!.GetValue<long>());
            Assert.True(Math.Abs(means[i] - dla[i]!["logit_diff"]!.GetValue<double>()) <= 1e-4 * Math.Max(1, Math.Abs(means[i])));
        }
        string html = File.ReadAllText(report);
        Assert.Contains("feature activations per token", html);
        Assert.Contains("Top features and their activating tokens", html);
        Assert.DoesNotContain("<script src=\"http", html);
    }

    [Fact]
    public void SaeCommandErrors()
    {
        var r1 = Run("sae", "--model", Golden.Dir, "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"));
        Assert.Equal(2, r1.Code);
        Assert.Contains("exactly one of --tokens-file or --prompt", r1.Err);
        string bad = Path.Combine(_dir, "answers.json");
        File.WriteAllText(bad, "[[1, 2]]");
        var r2 = Run("sae", "--model", Golden.Dir, "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "--tokens-file", TokensFile(),
            "--answers", bad, "--json", Path.Combine(_dir, "o.json"));
        Assert.Equal(1, r2.Code);
        Assert.Contains("one answer pair per prompt (4)", r2.Err);
        Assert.False(File.Exists(Path.Combine(_dir, "o.json")));
    }
}
