using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>Token-id prompts of different lengths as one right-padded batch.</summary>
public static class PromptTensors
{
    /// <summary>The id used to pad a batch for <paramref name="model"/>: the tokenizer's pad, else the config's pad, eos, or 0.</summary>
    public static long PadId(HookedTransformer model) =>
        model.Tokenizer?.PadTokenId ?? model.Config.PadTokenId ?? model.Config.EosTokenId ?? 0;

    /// <summary>[batch, max length] int64 tokens, right-padded with <paramref name="pad"/>, and each prompt's real length.</summary>
    public static (Tensor Tokens, int[] Lengths) RightPadded(IReadOnlyList<long[]> prompts, long pad)
    {
        if (prompts.Count == 0) throw new SharpLensException("A prompt batch needs at least one prompt.");
        int pos = prompts.Max(p => p.Length);
        var flat = prompts.SelectMany(p => p.Concat(Enumerable.Repeat(pad, pos - p.Length))).ToArray();
        return (tensor(flat, [prompts.Count, pos]), prompts.Select(p => p.Length).ToArray());
    }
}
