using SharpLens.Analysis;
using SharpLens.Cache;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Cache;

/// <summary>
/// The text-input RunWithCache overloads offer the token overloads' options (posSlice, cacheDtype, stopAtLayer,
/// includeBackward, names) and give exactly what the token overloads give on the same tokenized, padded batch.
/// </summary>
public sealed class TextRunWithCacheTests
{
    // Unequal lengths: the text overloads must pass the padding mask on.
    private static readonly string[] Texts = ["When Mary", "and John went to"];

    private static HookedTransformer Model()
    {
        var model = Golden.Model();
        model.Tokenizer = new CharTokenizer();
        return model;
    }

    private static void SameCache(ActivationCache expected, ActivationCache actual)
    {
        Assert.Equal(expected.Keys, actual.Keys);
        Assert.NotEmpty(actual.Keys);
        foreach (var k in expected.Keys)
        {
            Assert.Equal(expected[k].dtype, actual[k].dtype);
            Assert.Equal(expected[k].shape, actual[k].shape);
            Assert.True(expected[k].equal(actual[k]).all().item<bool>(), k);
        }
    }

    [Fact]
    public void PosSliceAndCacheDtypeMatchTheTokenOverload()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        using var batch = model.ToTokens(Texts);
        var slice = Slice.Range(1, 4);
        var (expectedLogits, expected) = model.RunWithCache(batch.Tokens, n => n.EndsWith("hook_resid_post", StringComparison.Ordinal),
            attentionMask: batch.AttentionMask, posSlice: slice, cacheDtype: ScalarType.BFloat16);
        var (logits, actual) = model.RunWithCache(Texts, n => n.EndsWith("hook_resid_post", StringComparison.Ordinal),
            posSlice: slice, cacheDtype: ScalarType.BFloat16);
        using (expected) using (actual)
        {
            Assert.True(expectedLogits.equal(logits).all().item<bool>());
            SameCache(expected, actual);
            Assert.Equal(ScalarType.BFloat16, actual["blocks.0.hook_resid_post"].dtype);
            Assert.Equal(new long[] { 2, 3, model.Config.DModel }, actual["blocks.0.hook_resid_post"].shape);
        }
    }

    [Fact]
    public void OneTextWithAnIntPosSliceMatchesTheTokenOverload()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        using var batch = model.ToTokens(Texts[1]);
        var (_, expected) = model.RunWithCache(batch.Tokens, removeBatchDim: true, posSlice: Slice.At(-1));
        var (_, actual) = model.RunWithCache(Texts[1], removeBatchDim: true, posSlice: Slice.At(-1));
        using (expected) using (actual)
        {
            SameCache(expected, actual);
            Assert.Equal(new long[] { 1, model.Config.DModel }, actual["blocks.0.hook_resid_post"].shape);
        }
    }

    [Fact]
    public void StopAtLayerReturnsTheResidualLikeTheTokenOverload()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        using var batch = model.ToTokens(Texts);
        var (expectedResid, expected) = model.RunWithCache(batch.Tokens, stopAtLayer: 1, posSlice: Slice.At(0), attentionMask: batch.AttentionMask);
        var (resid, actual) = model.RunWithCache(Texts, stopAtLayer: 1, posSlice: Slice.At(0));
        var (_, one) = model.RunWithCache(Texts[0], 1);
        using (expected) using (actual) using (one)
        {
            Assert.Equal(new long[] { 2, batch.Tokens.shape[1], model.Config.DModel }, resid.shape);
            Assert.True(expectedResid.equal(resid).all().item<bool>());
            SameCache(expected, actual);
            Assert.DoesNotContain(actual.Keys, k => k.StartsWith("blocks.1.", StringComparison.Ordinal));
            Assert.Contains("blocks.0.hook_resid_post", one.Keys);
            Assert.DoesNotContain(one.Keys, k => k.StartsWith("blocks.1.", StringComparison.Ordinal) || k.StartsWith("unembed", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void NamesAndBackwardMatchTheTokenOverload()
    {
        using var model = Model();
        using var scope = NewDisposeScope();
        using var batch = model.ToTokens(Texts);
        string[] names = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern"];
        Tensor Metric(Tensor l) => l[.., -1, 0].sum();
        var (_, expected) = model.RunWithCache(batch.Tokens, names, attentionMask: batch.AttentionMask, includeBackward: true, metric: Metric,
            posSlice: Slice.At(-1));
        var (_, actual) = model.RunWithCache(Texts, names, includeBackward: true, metric: Metric, posSlice: Slice.At(-1));
        using (expected) using (actual)
        {
            SameCache(expected, actual);
            Assert.Contains("blocks.0.hook_resid_post_grad", actual.Keys);
            Assert.Equal(4, actual.Keys.Count());
        }
        var e = Assert.Throws<SharpLensException>(() => model.RunWithCache(Texts, ["blocks.0.hook_resid_pots"]));
        Assert.Contains("blocks.0.hook_resid_post", e.Message);
    }
}
