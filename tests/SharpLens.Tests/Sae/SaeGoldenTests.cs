using SharpLens.Hooks;
using SharpLens.Model;
using SharpLens.Sae;
using static TorchSharp.torch;

namespace SharpLens.Tests.Sae;

/// <summary>Loading, encode/decode and splicing against SAELens v6.18 + HookedSAETransformer run on the tiny GPT-2.</summary>
public sealed class SaeGoldenTests
{
    private static readonly string[] SaeHooks = ["hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error", "hook_sae_output"];

    [Fact]
    public void CleanModelMatchesTheGoldenModel()
    {
        using var model = SaeGolden.Model();
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        Golden.AssertClose(SaeGolden.T("clean/logits"), model.Forward(tokens), "clean logits");
        Golden.AssertClose(SaeGolden.T("clean/loss_per_token"), model.Forward(tokens, ReturnType.Loss, lossPerToken: true).Loss!, "clean loss per token");
    }

    [Theory]
    [MemberData(nameof(SaeGolden.All), MemberType = typeof(SaeGolden))]
    public void EncodeAndDecodeMatchSaeLens(string name)
    {
        using var sae = SaeGolden.Load(name);
        using var scope = NewDisposeScope();
        var cfg = SaeGolden.Manifest["saes"]![name]!;
        Assert.Equal(SaeGolden.HookOf(name), sae.HookName);
        Assert.Equal(cfg["architecture"]!.GetValue<string>(), SaeConfig.ArchitectureNames[(int)sae.Config.Architecture]);
        Assert.Equal(cfg["d_sae"]!.GetValue<int>(), sae.Config.DSae);
        var x = SaeGolden.T($"{name}/sae_in");
        var acts = sae.Encode(x);
        var expected = SaeGolden.T($"{name}/encode");
        Golden.AssertClose(expected, acts, "encode");
        Assert.True((acts > 0).eq(expected > 0).all().item<bool>(), "active features differ");
        Golden.AssertClose(SaeGolden.T($"{name}/decode"), sae.Decode(acts), "decode");
        Assert.NotNull(sae.LogSparsity);
    }

    [Theory]
    [MemberData(nameof(SaeGolden.All), MemberType = typeof(SaeGolden))]
    public void SplicedRunsMatchHookedSaeTransformer(string name)
    {
        using var model = SaeGolden.Model();
        using var sae = SaeGolden.Load(name);
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        // sae_in is the clean cache at the hook
        var (_, clean) = model.RunWithCache(tokens, [sae.HookName]);
        using (clean) Golden.AssertClose(SaeGolden.T($"{name}/sae_in"), clean[sae.HookName], "sae_in");

        Golden.AssertClose(SaeGolden.T($"{name}/logits_spliced"), model.RunWithSaes(tokens, [sae]), "logits_spliced");
        Golden.AssertClose(SaeGolden.T($"{name}/logits_spliced_error_term"), model.RunWithSaes(tokens, [sae], useErrorTerm: true), "logits with error term");
        Golden.AssertClose(SaeGolden.T("clean/logits"), model.RunWithSaes(tokens, [sae], useErrorTerm: true), "error term keeps the output", rel: 1e-5);
        Golden.AssertClose(SaeGolden.T($"{name}/loss_spliced"), model.RunWithSaes(tokens, [sae], ReturnType.Loss).Loss!, "loss_spliced");
        Golden.AssertClose(SaeGolden.T($"{name}/loss_per_token_spliced"),
            model.RunWithSaes(tokens, [sae], ReturnType.Loss, lossPerToken: true).Loss!, "loss per token");
        Assert.Empty(model.AttachedSaes());
        Assert.False(sae.UseErrorTerm); // the override was temporary
        Assert.Contains(sae.HookName, model.HookNames);
    }

    [Theory]
    [MemberData(nameof(SaeGolden.All), MemberType = typeof(SaeGolden))]
    public void CacheWithSaesHasHookedSaeTransformersKeysAndValues(string name)
    {
        using var model = SaeGolden.Model();
        using var sae = SaeGolden.Load(name);
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        foreach (var (suffix, errorTerm) in new[] { ("cache", false), ("cache_error_term", true) })
        {
            var (logits, cache) = model.RunWithCacheWithSaes(tokens, [sae], useErrorTerm: errorTerm);
            using (cache)
            {
                Assert.Equal(SaeGolden.Strings(SaeGolden.Manifest["cache_keys_with_saes"]![$"{name}/{suffix}"]!), cache.Keys);
                foreach (var h in SaeHooks)
                {
                    string entry = $"{name}/{suffix}.{sae.HookName}.{h}";
                    if (!SaeGolden.Has(entry)) { Assert.False(errorTerm && h == "hook_sae_error"); continue; }
                    Golden.AssertClose(SaeGolden.T(entry), cache[$"{sae.HookName}.{h}"], entry);
                }
                if (!errorTerm) Golden.AssertClose(SaeGolden.T($"{name}/cache.ln_final.hook_scale"), cache["ln_final.hook_scale"], "ln_final scale");
            }
            Golden.AssertClose(SaeGolden.T(errorTerm ? $"{name}/logits_spliced_error_term" : $"{name}/logits_spliced"), logits, "cached run logits");
        }
    }

    [Theory]
    [MemberData(nameof(SaeGolden.All), MemberType = typeof(SaeGolden))]
    public void AblatingAFeatureWithTheErrorTermPropagates(string name)
    {
        using var model = SaeGolden.Model();
        using var sae = SaeGolden.Load(name);
        using var scope = NewDisposeScope();
        var tokens = SaeGolden.T("tokens");
        long feature = SaeGolden.T($"{name}/feature_dla_top_idx")[0].item<long>();
        model.AddSae(sae, useErrorTerm: true);
        try
        {
            Assert.DoesNotContain(sae.HookName, model.HookNames);
            var ablated = model.RunWithHooks(tokens, [Hook.At($"{sae.HookName}.hook_sae_acts_post", (a, _) => a.index_fill(-1, tensor(new[] { feature }), 0))]);
            Golden.AssertClose(SaeGolden.T($"{name}/logits_ablate_top_feature_error_term"), ablated, "ablated logits");
            Assert.True((ablated - SaeGolden.T("clean/logits")).abs().max().item<float>() > 1e-4, "the ablation must change the logits");
            // hooks on the replaced hook name no longer fire
            bool fired = false;
            Assert.Throws<SharpLensException>(() => model.AddHook(sae.HookName, (a, _) => { fired = true; return null; }));
            Assert.False(fired);
        }
        finally
        {
            model.ResetSaes();
        }
        Assert.Contains(sae.HookName, model.HookNames);
        Assert.DoesNotContain($"{sae.HookName}.hook_sae_input", model.HookNames);
        Assert.False(sae.UseErrorTerm);
        Golden.AssertClose(SaeGolden.T("clean/logits"), model.Forward(tokens), "clean again after reset");
    }

    [Fact]
    public void TwoSaesAtOnce()
    {
        using var model = SaeGolden.Model();
        var saes = SaeGolden.Strings(SaeGolden.Manifest["multi_sae"]!).Select(SaeGolden.Load).ToList();
        using var scope = NewDisposeScope();
        try
        {
            var tokens = SaeGolden.T("tokens");
            Golden.AssertClose(SaeGolden.T("multi/logits_spliced"), model.RunWithSaes(tokens, saes), "multi logits");
            Golden.AssertClose(SaeGolden.T("multi/loss_spliced"), model.RunWithSaes(tokens, saes, ReturnType.Loss).Loss!, "multi loss");
            var (_, cache) = model.RunWithCacheWithSaes(tokens, saes);
            using (cache) Assert.Equal(SaeGolden.Strings(SaeGolden.Manifest["cache_keys_with_saes"]!["multi/cache"]!), cache.Keys);
            // Permanently attached, then a temporary different set at one hook: the first comes back.
            model.AddSae(saes[0]);
            using (var other = SaeGolden.Load("standard_layer_norm_blocks.0.hook_resid_pre"))
            {
                using (model.Saes([saes[1], other])) Assert.Equal(3, model.AttachedSaes().Count);
                Assert.Equal([saes[0]], model.AttachedSaes());
            }
            Golden.AssertClose(SaeGolden.T("standard_blocks.0.hook_resid_post/logits_spliced"), model.Forward(tokens), "first SAE still attached");
            model.ResetSaes();
            Golden.AssertClose(SaeGolden.T("clean/logits"), model.Forward(tokens), "clean after reset");
            var (_, cleanCache) = model.RunWithCache(tokens);
            using (cleanCache) Assert.Equal(SaeGolden.Strings(SaeGolden.Manifest["hook_names_in_order_clean"]!), cleanCache.Keys);
        }
        finally
        {
            foreach (var s in saes) s.Dispose();
        }
    }
}
