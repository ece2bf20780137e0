using SharpLens.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

/// <summary>Padded batches give every real position the logits of running that prompt alone.</summary>
public sealed class PaddingTests
{
    private static readonly long[] Long = [999, 624, 683, 896, 577, 774, 832, 224, 55, 299];
    private static readonly long[] Short = [999, 5, 499, 820, 131, 796];

    [Fact]
    public void RightPaddingMatchesSeparateRuns()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var padded = Short.Concat(Enumerable.Repeat(999L, Long.Length - Short.Length)).ToArray();
        var tokens = tensor(Long.Concat(padded).ToArray(), [2, Long.Length]);
        var mask = tensor(Enumerable.Repeat(1L, Long.Length).Concat(Enumerable.Repeat(1L, Short.Length)).Concat(Enumerable.Repeat(0L, Long.Length - Short.Length)).ToArray(), [2, Long.Length]);
        var batch = model.Forward(tokens, mask);
        Golden.AssertClose(model.Forward(tensor(Long, [1, Long.Length]))[0], batch[0], "long prompt", 1e-5);
        Golden.AssertClose(model.Forward(tensor(Short, [1, Short.Length]))[0], batch[1].narrow(0, 0, Short.Length), "short prompt", 1e-5);
    }

    [Fact]
    public void LeftPaddingMatchesSeparateRunsWithShiftedPositions()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        int pad = Long.Length - Short.Length;
        var padded = Enumerable.Repeat(999L, pad).Concat(Short).ToArray();
        var tokens = tensor(Long.Concat(padded).ToArray(), [2, Long.Length]);
        var mask = tensor(Enumerable.Repeat(1L, Long.Length).Concat(Enumerable.Repeat(0L, pad)).Concat(Enumerable.Repeat(1L, Short.Length)).ToArray(), [2, Long.Length]);
        var (logits, cache) = model.RunWithCache(tokens, attentionMask: mask);
        using var _ = cache;
        Golden.AssertClose(model.Forward(tensor(Long, [1, Long.Length]))[0], logits[0], "long prompt", 1e-5);
        Golden.AssertClose(model.Forward(tensor(Short, [1, Short.Length]))[0], logits[1].narrow(0, pad, Short.Length), "short prompt", 1e-5);
        // Padding positions attend to nothing: their pattern rows are all zero, not NaN.
        Assert.False(cache["blocks.0.attn.hook_pattern"].isnan().any().item<bool>());
        Assert.Equal(0f, cache["blocks.0.attn.hook_pattern"][1, .., 0].abs().sum().item<float>());
    }

    [Fact]
    public void ModelWithoutTokenizerRejectsTextClearly()
    {
        using var model = Golden.Model();
        Assert.Null(model.Tokenizer);
        var e = Assert.Throws<SharpLensException>(() => model.ToTokens("hello"));
        Assert.Contains("has no tokenizer", e.Message);
    }

    [Fact]
    public void TextInputUsesTheTokenizerWithBos()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        model.Tokenizer = TokenizerLoader.FromFolder(Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer", "mini-bpe", "vocab-merges"));
        Assert.NotNull(model.Tokenizer);
        // The mini vocabulary is larger than the tiny model's, so ids ≥ 1000 must be rejected by name.
        var e = Assert.ThrowsAny<SharpLensException>(() => model.Forward("the cat sat on the mat and the dog"));
        Assert.Contains("outside the vocabulary", e.Message);
    }
}
