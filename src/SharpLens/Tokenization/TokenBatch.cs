using TorchSharp;

namespace SharpLens.Tokenization;

/// <summary>Which end of a shorter prompt gets the padding (TransformerLens <c>padding_side</c>).</summary>
public enum PaddingSide
{
    /// <summary>Pads after the text (TransformerLens's default).</summary>
    Right,
    /// <summary>Pads before the text, and before its BOS.</summary>
    Left,
}

/// <summary>Which occurrence <see cref="TextEncoding.GetTokenPosition(ITokenizer, int, string, TokenPositionMode, bool, int?)"/> returns.</summary>
public enum TokenPositionMode
{
    /// <summary>The first occurrence.</summary>
    First,
    /// <summary>The last occurrence.</summary>
    Last,
}

/// <summary>Tokens of a batch of prompts, as TransformerLens's <c>to_tokens</c> returns them, plus the padding mask.</summary>
public sealed class TokenBatch : IDisposable
{
    internal TokenBatch(torch.Tensor tokens, torch.Tensor? attentionMask, int[] lengths, PaddingSide paddingSide)
    {
        Tokens = tokens;
        AttentionMask = attentionMask;
        Lengths = lengths;
        PaddingSide = paddingSide;
    }

    /// <summary>Token ids, [batch, pos], int64.</summary>
    public torch.Tensor Tokens { get; }

    /// <summary>
    /// [batch, pos] int64, 1 = attend, 0 = padding, computed like TransformerLens's <c>utils.get_attention_mask</c>
    /// (see <see cref="TextEncoding.GetAttentionMask(ITokenizer, torch.Tensor, bool, PaddingSide)"/>);
    /// null when every prompt had the same length, so nothing was padded.
    /// </summary>
    public torch.Tensor? AttentionMask { get; }

    /// <summary>Number of real (non-padding) tokens of each prompt, BOS included.</summary>
    public IReadOnlyList<int> Lengths { get; }

    /// <summary>The side padding went to.</summary>
    public PaddingSide PaddingSide { get; }

    /// <summary>Frees the native tensors.</summary>
    public void Dispose()
    {
        Tokens.Dispose();
        AttentionMask?.Dispose();
    }
}
