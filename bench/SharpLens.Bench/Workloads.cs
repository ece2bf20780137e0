using SharpLens.Analysis;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>The measured operations, each self-contained: it frees everything it allocates.</summary>
internal static class Workloads
{
    public static void Forward(HookedTransformer model, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        model.Forward(tokens);
    }

    public static void RunWithCache(HookedTransformer model, Tensor tokens, Func<string, bool>? filter)
    {
        using var scope = NewDisposeScope();
        var (_, cache) = model.RunWithCache(tokens, filter);
        cache.Dispose();
    }

    /// <summary>
    /// The seed notebook's direct-logit-attribution pipeline on the IOI batch: run with cache, logit-difference
    /// directions from the answer tokens, accumulated residual (incl. resid_mid) at the last position through the final
    /// LayerNorm's cached scale, then every head's result at the last position through the same scale, each projected
    /// on the directions (the seed's <c>residual_stack_to_logit_diff</c>).
    /// </summary>
    public static void Dla(HookedTransformer model, Tensor tokens, Tensor answers)
    {
        using var scope = NewDisposeScope();
        long batch = tokens.shape[0];
        var (_, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            var dirs = model.TokensToResidualDirections(answers);                            // [batch, 2, d]
            var diff = dirs.select(1, 0) - dirs.select(1, 1);                               // [batch, d]
            var (acc, _) = cache.AccumulatedResid(-1, inclMid: true, posSlice: -1);         // [2L+1, batch, d]
            var logitLens = einsum("cbd,bd->c", cache.ApplyLnToStack(acc, -1, posSlice: -1), diff) / batch;
            var (heads, _) = cache.StackHeadResults(-1, posSlice: -1);                      // [L·H, batch, d]
            var perHead = einsum("cbd,bd->c", cache.ApplyLnToStack(heads, -1, posSlice: -1), diff) / batch;
            _ = logitLens.sum().item<float>() + perHead.sum().item<float>();               // read results, as the seed prints them
        }
    }

    /// <summary>The library's whole DLA analysis (what <c>sharplens dla</c> runs): the above plus decomposition, top heads and patterns.</summary>
    public static void DlaRun(HookedTransformer model, Tensor tokens, Tensor answers)
    {
        using var scope = NewDisposeScope();
        DirectLogitAttribution.Run(model, tokens, answers);
    }

    /// <summary>
    /// FLOPs of one forward, 2·m·n·k for every matmul: fused QKV, attention scores and pattern·V (full square, as
    /// the kernel computes), W_O, MLP in and out, unembed. Elementwise work (LayerNorm, GELU, softmax) is not counted.
    /// </summary>
    public static double ForwardFlops(HookedTransformerConfig c, long batch, long pos)
    {
        double n = batch * pos, d = c.DModel, hd = (double)c.NHeads * c.DHead;
        double perLayer = 2 * n * d * 3 * hd          // QKV
            + 2 * 2 * batch * (double)c.NHeads * pos * pos * c.DHead // scores + pattern·V
            + 2 * n * hd * d                          // W_O
            + (c.AttnOnly ? 0 : 2 * 2 * n * d * c.DMlp); // MLP in + out
        return c.NLayers * perLayer + 2 * n * d * c.DVocabOut;
    }
}
