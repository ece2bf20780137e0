using SharpLens.Analysis;
using SharpLens.Gradients;
using SharpLens.Hooks;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

/// <summary>
/// README.md's C# snippets, as written there (GPT-2 small and its layer numbers swapped for the 2-layer golden model),
/// so an API rename that would break them breaks the build here first. Keep the two in step.
/// </summary>
public sealed class ReadmeSnippetTests
{
    private static readonly long[] Ids = [999, 624, 683, 896, 577, 999, 5, 499, 820, 131];

    [Fact]
    public void QuickstartAndHooks()
    {
        using var model = HookedTransformer.FromPretrained(Golden.Dir);
        using var scope = NewDisposeScope();
        var tokens = tensor(Ids, [2, 5]);
        var (logits, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var scaled = cache.ApplyLnToStack(cache["resid_post", -1][.., -1, ..], layer: -1, posSlice: -1);
            var (heads, labels) = cache.StackHeadResults(-1, posSlice: -1);
            Assert.Equal([2L, 64], scaled.shape);
            Assert.Equal([8L, 2, 64], heads.shape);
            Assert.Equal("L0H0", labels[0]);
        }
        var ablated = model.RunWithHooks(tokens, [Ablations.ZeroAblateHead(layer: 1, head: 2)]);
        Assert.True((ablated - logits).abs().max().item<float>() > 0);
        Tensor zeroed;
        using (model.Hooks(("blocks.0.hook_mlp_out", (act, hook) => act * 0)))
            zeroed = model.Forward(tokens);
        Assert.True((zeroed - logits).abs().max().item<float>() > 0);
    }

    [Fact]
    public void BoundedCachesAndStreaming()
    {
        using var model = HookedTransformer.FromPretrained(Golden.Dir);
        using var scope = NewDisposeScope();
        var tokens = tensor(Ids, [2, 5]);
        var resid1 = model.Forward(tokens, stopAtLayer: 1);
        var logits = model.Forward(resid1, startAtLayer: 1);
        Assert.True(logits.allclose(model.Forward(tokens), rtol: 1e-4, atol: 1e-5));
        var (resid, cache) = model.RunWithCache(tokens, stopAtLayer: -1, namesFilter: n => n.EndsWith("resid_post"));
        using (cache) Assert.Equal(["blocks.0.hook_resid_post"], cache.Keys);
        var (logits2, last) = model.RunWithCache(tokens, posSlice: -1, cacheDtype: ScalarType.BFloat16);
        using (last) Assert.Equal(ScalarType.BFloat16, last["blocks.0.hook_resid_post"].dtype);
        string path = Path.Combine(TestEnvironment.NewTempDir("readme-"), "acts.safetensors");
        model.RunWithCacheToFile(tokens, path, posSlice: Slice.Parse("-4:"));
        Assert.True(File.Exists(path));
        var loss = model.Forward(resid1, ReturnType.Loss, startAtLayer: 1, tokens: tokens);
        Assert.True(loss.Loss!.item<float>() > 0);
    }

    [Fact]
    public void PrecisionGradientsAndLoading()
    {
        using (var half = HookedTransformer.FromPretrained(Golden.Dir, dtype: ScalarType.BFloat16))
            Assert.Equal("bfloat16", ModelDtype.Name(half.Dtype));
        using (var folder = HookedTransformer.FromFolder(Golden.Dir, useWeightsCache: false))
            Assert.Equal(WeightsCacheUse.NotUsed, folder.WeightsCacheUse);
        using (var noCache = HookedTransformer.FromPretrained(Golden.Dir, load: new LoadOptions { UseWeightsCache = false }))
            Assert.Equal(WeightsCacheUse.NotUsed, noCache.WeightsCacheUse);

        using var model = HookedTransformer.FromPretrained(Golden.Dir);
        using var scope = NewDisposeScope();
        var tokens = tensor(Ids, [2, 5]);
        var answers = tensor(new long[] { 5, 7, 8, 9 }, [2, 2]);
        var (clean, corrupted) = (tokens, tokens.flip(1));
        Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, answers);
        var (logits, cache) = model.RunWithCache(tokens, includeBackward: true, metric: Metric);
        using (cache) Assert.Contains("blocks.1.attn.hook_z_grad", cache.Keys);
        int calls = 0;
        using (model.Hooks(Hook.Backward("blocks.1.attn.hook_z", (grad, hp) => { calls++; return null; })))
            model.Backward(tokens, Metric);
        Assert.Equal(1, calls);
        model.ZeroGrad();
        var attr = AttributionPatching.Run(model, [PatchKind.ResidPre], clean, corrupted, Metric, PatchDirection.Denoising);
        Assert.Equal(1.0, PatchComparison.Of(attr[0].Values, attr[0].Values).Pearson, 6);
        var ig = IntegratedGradients.Run(model, tokens, l => LogitDiff.PerPrompt(l, answers), steps: 20);
        Assert.NotNull(ig);
    }
}
