using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Sae;
using SharpLens.Tests.Hub;
using static TorchSharp.torch;

namespace SharpLens.Tests.Sae;

/// <summary>Gemma Scope npz, pre-6.0 configs, the Hub, and the load/splice errors.</summary>
public sealed class SaeLoadingTests : IDisposable
{
    private const string Jump = "jumprelu_blocks.1.hook_mlp_out";
    private readonly string _tmp = Directory.CreateTempSubdirectory("sharplens-sae-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_tmp, recursive: true); } catch (IOException) { }
    }

    private string GemmaDir => SaeGolden.Folder(Jump + "_gemma_scope");

    [Fact]
    public void GemmaScopeNpzEncodesBitwiseLikeItsSaeLensTwin()
    {
        using var twin = SaeGolden.Load(Jump);
        using var npz = SparseAutoencoder.FromFolder(GemmaDir, "blocks.1.hook_mlp_out");
        var converted = JsonNode.Parse(File.ReadAllText(Path.Combine(GemmaDir, "saelens_converted_cfg.json")))!;
        Assert.Equal(converted["metadata"]!["hook_name"]!.GetValue<string>(), npz.HookName);
        Assert.Equal(converted["d_in"]!.GetValue<int>(), npz.Config.DIn);
        Assert.Equal(converted["d_sae"]!.GetValue<int>(), npz.Config.DSae);
        Assert.Equal(SaeArchitecture.JumpReLU, npz.Config.Architecture);
        Assert.False(npz.Config.ApplyBDecToInput);
        Assert.Equal("none", npz.Config.NormalizeActivations);
        using var scope = NewDisposeScope();
        var x = SaeGolden.T(Jump + "/sae_in");
        Assert.True(twin.Encode(x).eq(npz.Encode(x)).all().item<bool>(), "npz encode must equal the SAELens-format encode bitwise");
        Golden.AssertClose(SaeGolden.T(Jump + "/encode"), npz.Encode(x), "npz encode");
        foreach (var w in twin.StateDict.Keys) Assert.True(twin.StateDict[w].eq(npz.StateDict[w]).all().item<bool>(), w);
    }

    [Fact]
    public void GemmaScopeHookIsInferredFromTheRepositoryLayoutOrMustBeGiven()
    {
        var e = Assert.Throws<SharpLensException>(() => SparseAutoencoder.FromFolder(GemmaDir));
        Assert.Contains("--sae-hook", e.Message);
        string dir = Path.Combine(_tmp, "models--google--gemma-scope-2b-pt-mlp", "snapshots", "abc", "layer_1", "width_16k", "average_l0_10");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(GemmaDir, "params.npz"), Path.Combine(dir, "params.npz"));
        using var sae = SparseAutoencoder.FromFolder(dir);
        Assert.Equal("blocks.1.hook_mlp_out", sae.HookName);
        Assert.Equal("blocks.12.hook_resid_post", SparseAutoencoder.GemmaScopeHook("google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82"));
        Assert.Equal("blocks.3.attn.hook_z", SparseAutoencoder.GemmaScopeHook("google/gemma-scope-9b-pt-att/layer_3/width_16k/average_l0_20/"));
        Assert.Equal("hook_embed", SparseAutoencoder.GemmaScopeHook("google/gemma-scope-2b-pt-res/embedding/width_4k/average_l0_6"));
        Assert.Null(SparseAutoencoder.GemmaScopeHook("some/other-repo/layer_3"));
    }

    [Fact]
    public void Pre60ConfigsAreRenamedOnLoad()
    {
        const string name = "topk_blocks.1.hook_resid_pre";
        string dir = Path.Combine(_tmp, "old");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(SaeGolden.Folder(name), "sae_weights.safetensors"), Path.Combine(dir, "sae_weights.safetensors"));
        File.WriteAllText(Path.Combine(dir, "cfg.json"), """
            {"d_in": 64, "d_sae": 192, "dtype": "float32", "device": "cpu", "model_name": "tiny-gpt2",
             "hook_point": "blocks.1.hook_resid_pre", "hook_point_layer": 1, "hook_point_head_index": null,
             "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8}, "normalize_activations": false,
             "prepend_bos": true, "context_size": 128}
            """);
        using var sae = SparseAutoencoder.FromFolder(dir);
        Assert.Equal(SaeArchitecture.TopK, sae.Config.Architecture);
        Assert.Equal(8, sae.Config.K);
        Assert.Equal("blocks.1.hook_resid_pre", sae.HookName);
        Assert.Equal("none", sae.Config.NormalizeActivations);
        Assert.True(sae.Config.ApplyBDecToInput);
        Assert.Null(sae.LogSparsity);
        using var scope = NewDisposeScope();
        Golden.AssertClose(SaeGolden.T(name + "/encode"), sae.Encode(SaeGolden.T(name + "/sae_in")), "pre-6.0 topk encode");

        File.WriteAllText(Path.Combine(dir, "cfg.json"), """{"d_in": 64, "d_sae": 192, "hook_point": "blocks.0.attn.hook_z", "normalize_activations": true}""");
        var cfg = SaeConfig.FromJson(JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "cfg.json")))!.AsObject(), "cfg");
        Assert.True(cfg.ReshapeHookZ);
        Assert.Equal("expected_average_only_in", cfg.NormalizeActivations);
        Assert.Equal(SaeArchitecture.Standard, cfg.Architecture);
    }

    [Fact]
    public void ClearErrors()
    {
        using var model = SaeGolden.Model();
        // hook not in the model
        using (var sae = SparseAutoencoder.FromFolder(SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "blocks.5.hook_resid_post"))
        {
            var e = Assert.Throws<SharpLensException>(() => model.AddSae(sae));
            Assert.Contains("reads hook 'blocks.5.hook_resid_post', which this model", e.Message);
            Assert.Contains("Did you mean", e.Message);
        }
        // d_in does not match the hook's width
        using (var sae = SparseAutoencoder.FromFolder(SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "blocks.0.mlp.hook_post"))
        {
            var e = Assert.Throws<SharpLensException>(() => model.AddSae(sae));
            Assert.Contains("d_in = 64, but activations at 'blocks.0.mlp.hook_post'", e.Message);
            Assert.Contains("width 256", e.Message);
            using var scope = NewDisposeScope();
            var e2 = Assert.Throws<SharpLensException>(() => sae.Encode(zeros(2, 3, 256)));
            Assert.Contains("has d_in = 64", e2.Message);
        }
        Assert.Empty(model.AttachedSaes());
        // unknown architecture
        string dir = Path.Combine(_tmp, "arch");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "sae_weights.safetensors"), Path.Combine(dir, "sae_weights.safetensors"));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "cfg.json")))!.AsObject();
        cfg["architecture"] = "jumprelux";
        File.WriteAllText(Path.Combine(dir, "cfg.json"), cfg.ToJsonString());
        var ea = Assert.Throws<SharpLensException>(() => SparseAutoencoder.FromFolder(dir));
        Assert.Contains("unknown SAE architecture 'jumprelux'. Supported: standard, topk, jumprelu, gated", ea.Message);
        Assert.Contains("Did you mean 'jumprelu'", ea.Message);
        // weights that do not fit the architecture
        cfg["architecture"] = "gated";
        File.WriteAllText(Path.Combine(dir, "cfg.json"), cfg.ToJsonString());
        var ew = Assert.Throws<SharpLensException>(() => SparseAutoencoder.FromFolder(dir));
        Assert.Contains("a gated SAE needs the weights W_enc, W_dec, b_dec, b_gate, b_mag, r_mag; missing b_gate, b_mag, r_mag", ew.Message);
        // not an SAE folder
        var en = Assert.Throws<SharpLensException>(() => SparseAutoencoder.FromFolder(_tmp));
        Assert.Contains("is not an SAE folder", en.Message);
    }
}

/// <summary>SAEs from the (fake) Hugging Face Hub, into the shared cache.</summary>
public sealed class SaeHubTests : HubTestBase
{
    [Fact]
    public void LoadsSaeLensAndGemmaScopeFoldersFromTheHub()
    {
        var files = new Dictionary<string, FakeHub.RepoFile>();
        foreach (var f in new[] { "cfg.json", "sae_weights.safetensors", "sparsity.safetensors" })
            files["saes/gated_blocks.1.hook_resid_post/" + f] = new(File.ReadAllBytes(Path.Combine(SaeGolden.Folder("gated_blocks.1.hook_resid_post"), f)), Lfs: f != "cfg.json");
        Hub.Repos["test-org/tiny-saes"] = files;
        Hub.Repos["google/gemma-scope-tiny-mlp"] = new()
        {
            ["layer_1/width_16k/average_l0_10/params.npz"] = new(File.ReadAllBytes(Path.Combine(SaeGolden.Folder("jumprelu_blocks.1.hook_mlp_out_gemma_scope"), "params.npz")), Lfs: true),
        };
        var options = new LoadOptions { Hub = Options() };
        using var scope = NewDisposeScope();
        using (var sae = SparseAutoencoder.Load("test-org/tiny-saes/saes/gated_blocks.1.hook_resid_post", options: options))
        {
            Assert.Equal("blocks.1.hook_resid_post", sae.HookName);
            Assert.NotNull(sae.LogSparsity);
            Assert.StartsWith(Path.Combine(Cache, "models--test-org--tiny-saes", "snapshots"), sae.Source);
            Golden.AssertClose(SaeGolden.T("gated_blocks.1.hook_resid_post/encode"), sae.Encode(SaeGolden.T("gated_blocks.1.hook_resid_post/sae_in")), "hub encode");
        }
        using (var sae = SparseAutoencoder.Load("google/gemma-scope-tiny-mlp/layer_1/width_16k/average_l0_10", options: options))
        {
            Assert.Equal("blocks.1.hook_mlp_out", sae.HookName);
            Golden.AssertClose(SaeGolden.T("jumprelu_blocks.1.hook_mlp_out/encode"), sae.Encode(SaeGolden.T("jumprelu_blocks.1.hook_mlp_out/sae_in")), "gemma hub encode");
        }
        var e = Assert.Throws<SharpLensException>(() => SparseAutoencoder.Load("test-org/tiny-saes/nothing/here", options: options));
        Assert.Contains("has no SAE at 'nothing/here'", e.Message);
    }
}

/// <summary>An SAE at an opt-in hook switches the hook on while attached.</summary>
public sealed class SaeOptInHookTests
{
    [Fact]
    public void SaeAtHookMlpInRunsAndSwitchesTheHookBackOff()
    {
        const string name = "standard_constant_norm_rescale_blocks.1.hook_resid_mid";
        using var model = SaeGolden.Model();
        using var sae = SparseAutoencoder.FromFolder(SaeGolden.Folder(name), "blocks.1.hook_mlp_in");
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        Assert.False(model.Config.UseHookMlpIn);
        var (logits, cache) = model.RunWithCacheWithSaes(tokens, [sae]);
        using (cache)
        {
            // hook_mlp_in = resid_mid, so the SAE sees the golden sae_in and gives the golden features.
            Golden.AssertClose(SaeGolden.T(name + "/encode"), cache["blocks.1.hook_mlp_in.hook_sae_acts_post"], "encode at hook_mlp_in");
        }
        Assert.True((logits - SaeGolden.T("clean/logits")).abs().max().item<float>() > 1e-3, "the SAE must act on the MLP input");
        Assert.False(model.Config.UseHookMlpIn);
    }
}

/// <summary>Gradients flow through a spliced SAE (attribution to features).</summary>
public sealed class SaeGradientTests
{
    [Fact]
    public void FeatureGradientsAreTheHookGradientThroughTheDecoder()
    {
        const string name = "standard_blocks.0.hook_resid_post";
        using var model = SaeGolden.Model();
        using var sae = SaeGolden.Load(name);
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        var answers = SaeGolden.T("answer_tokens");
        Tensor Metric(Tensor logits) =>
            (logits.select(1, -1).gather(-1, answers.narrow(1, 0, 1)) - logits.select(1, -1).gather(-1, answers.narrow(1, 1, 1))).mean();
        var (_, clean) = model.RunWithCache(tokens, [sae.HookName], includeBackward: true, metric: Metric);
        model.AddSae(sae, useErrorTerm: true);
        try
        {
            var (_, spliced) = model.RunWithCache(tokens, includeBackward: true, metric: Metric);
            using (clean)
            using (spliced)
            {
                var hookGrad = clean[sae.HookName + "_grad"];
                Golden.AssertClose(hookGrad, spliced[sae.HookName + ".hook_sae_output_grad"], "output grad = clean hook grad");
                Golden.AssertClose(hookGrad.matmul(sae.W_dec.t()), spliced[sae.HookName + ".hook_sae_acts_post_grad"], "feature grads");
                Assert.True(spliced[sae.HookName + ".hook_sae_acts_post_grad"].abs().max().item<float>() > 1e-4);
            }
        }
        finally
        {
            model.ResetSaes();
        }
    }
}
