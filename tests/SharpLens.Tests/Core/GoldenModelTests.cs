using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

/// <summary>Weights, logits, losses and caches of every processing variant against TransformerLens v3.5.1.</summary>
public sealed class GoldenModelTests
{
    // One test per processing step, so a regression points at the step.
    [Theory]
    [InlineData("none", "weights_none.safetensors")]
    [InlineData("fold_ln", "weights_fold_ln.safetensors")]
    [InlineData("fold_ln_cww", "weights_fold_ln_cww.safetensors")]
    [InlineData("fold_ln_cww_cu", "weights_fold_ln_cww_cu.safetensors")]
    [InlineData("processed", "weights_processed.safetensors")]
    public void WeightsMatchTransformerLens(string variant, string file)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model(variant);
        var expected = Golden.Load(file);
        Assert.Equal(expected.Keys.OrderBy(k => k, StringComparer.Ordinal), model.ParameterNames.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (name, t) in expected) Golden.AssertClose(t, model.Parameter(name), $"{variant}:{name}");
    }

    [Theory]
    [InlineData("none")]
    [InlineData("fold_ln")]
    [InlineData("fold_ln_cww")]
    [InlineData("fold_ln_cww_cu")]
    [InlineData("processed")]
    public void LogitsAndLossMatchTransformerLens(string variant)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model(variant);
        var tokens = Golden.Tokens;
        var expected = Golden.Load("logits.safetensors");
        var both = model.Forward(tokens, ReturnType.Both);
        Golden.AssertClose(expected[$"logits_{variant}"], both.Logits!, $"logits_{variant}");
        Golden.AssertClose(expected[$"loss_{variant}"], both.Loss!, $"loss_{variant}");
        var perToken = model.Forward(tokens, ReturnType.Loss, lossPerToken: true).Loss!;
        Golden.AssertClose(expected[$"loss_per_token_{variant}"], perToken, $"loss_per_token_{variant}");
        Assert.Null(model.Forward(tokens, ReturnType.None).Logits);
        if (variant == "processed")
            Golden.AssertClose(expected["logits_processed_corrupted"], model.Forward(Golden.Tensor("inputs.safetensors", "corrupted_tokens")), "corrupted");
    }

    [Theory]
    [InlineData("none", "cache_none.safetensors")]
    [InlineData("fold_ln", "cache_fold_ln.safetensors")]
    [InlineData("processed", "cache_processed.safetensors")]
    public void CacheMatchesTransformerLensInOrder(string variant, string file)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model(variant);
        var (logits, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Assert.Equal(Golden.StringList("hook_names_in_order"), cache.Keys);
        var expected = Golden.Load(file);
        foreach (var (name, t) in expected) Golden.AssertClose(t, cache[name], $"{variant}:{name}");
        Golden.AssertClose(cache["unembed.hook_out"], logits, "hook_out == logits", 1e-7);
    }

    [Fact]
    public void OptionalHooksMatchTransformerLens()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var expected = Golden.Load("cache_processed_optional_hooks.safetensors");
        var plainLogits = model.Forward(Golden.Tokens);
        model.Config.UseAttnResult = true; model.Config.UseSplitQkvInput = true; model.Config.UseHookMlpIn = true;
        var (logits, cache) = model.RunWithCache(Golden.Tokens);
        using (cache)
        {
            Assert.Equal(Golden.StringList("hook_names_with_optional_hooks"), cache.Keys);
            foreach (var (name, t) in expected.Where(kv => !kv.Key.StartsWith("attn_in_run.")))
                Golden.AssertClose(t, cache[name], name);
            Golden.AssertClose(plainLogits, logits, "logits unchanged by optional hooks");
        }
        model.Config.UseAttnResult = false; model.Config.UseSplitQkvInput = false; model.Config.UseHookMlpIn = false;
        model.Config.UseAttnIn = true;
        var (_, cache2) = model.RunWithCache(Golden.Tokens, n => n.EndsWith("hook_attn_in") || n.EndsWith("ln1.hook_scale"));
        using (cache2)
        {
            foreach (var (name, t) in expected.Where(kv => kv.Key.StartsWith("attn_in_run.")))
                Golden.AssertClose(t, cache2[name["attn_in_run.".Length..]], name);
            Assert.Equal(4, cache2.Count);
        }
    }

    [Fact]
    public void NamesFilterKeepsOnlyResidPost()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, cache) = model.RunWithCache(Golden.Tokens, n => n.EndsWith("hook_resid_post"));
        using var _ = cache;
        Assert.Equal(Golden.StringList("resid_post_only_names_filter_keys"), cache.Keys);
        var expected = Golden.Load("cache_processed.safetensors");
        Golden.AssertClose(expected["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_post"], "resid_post");
    }

    [Fact]
    public void RemoveBatchDimMatchesTransformerLens()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, cache) = model.RunWithCache(Golden.Tokens.narrow(0, 0, 1), removeBatchDim: true);
        using var _ = cache;
        Assert.False(cache.HasBatchDim);
        Golden.AssertClose(Golden.Tensor("misc.safetensors", "remove_batch_dim.blocks.0.attn.hook_pattern"), cache["blocks.0.attn.hook_pattern"], "pattern");
        var err = Assert.Throws<SharpLensException>(() => model.RunWithCache(Golden.Tokens, removeBatchDim: true));
        Assert.Contains("batch of exactly 1", err.Message);
    }
}
