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
    /// direction from the answer tokens, accumulated residual (incl. resid_mid) at the last position through the final
    /// LayerNorm scale, then every head's result at the last position through the same scale, each projected on the
    /// direction.
    /// TODO(lead): the library's ActivationCache.AccumulatedResid / ApplyLnToStack / StackHeadResults and
    /// HookedTransformer.TokensToResidualDirections were not on main when this was written; this computes the same
    /// quantities with plain tensor ops from the cache (TransformerLens semantics for LNPre). Swap in the library
    /// calls once they land so the bench times them:
    ///   var dirs = model.TokensToResidualDirections(answers);                 // [batch, 2, d_model]
    ///   var (acc, _) = cache.AccumulatedResid(-1, inclMid: true);
    ///   var accLn = cache.ApplyLnToStack(acc, -1, posSlice: -1);
    ///   var (heads, _) = cache.StackHeadResults(-1);
    ///   var headsLn = cache.ApplyLnToStack(heads, -1, posSlice: -1);
    /// </summary>
    public static void Dla(HookedTransformer model, Tensor tokens, Tensor answers)
    {
        using var scope = NewDisposeScope();
        var cfg = model.Config;
        long batch = tokens.shape[0];
        var (_, cache) = model.RunWithCache(tokens);
        using (cache)
        {
            // TokensToResidualDirections: W_U columns of the answers → [batch, 2, d_model]
            var dirs = model.Parameter("unembed.W_U").t().index_select(0, answers.reshape(-1)).view(batch, 2, cfg.DModel);
            var diff = dirs.select(1, 0) - dirs.select(1, 1);                                   // [batch, d]

            // ApplyLnToStack(layer -1, pos -1) for LNPre: centre, divide by ln_final.hook_scale at the last position
            var scale = cache["ln_final.hook_scale"].select(1, -1);                           // [batch, 1]
            Tensor ApplyLn(Tensor stack) => (stack - stack.mean([-1], keepdim: true)) / scale;

            var acc = new List<Tensor>();                                                      // AccumulatedResid(-1, inclMid)
            for (int l = 0; l < cfg.NLayers; l++)
            {
                acc.Add(cache[$"blocks.{l}.hook_resid_pre"].select(1, -1));
                acc.Add(cache[$"blocks.{l}.hook_resid_mid"].select(1, -1));
            }
            acc.Add(cache[$"blocks.{cfg.NLayers - 1}.hook_resid_post"].select(1, -1));
            var logitLens = einsum("cbd,bd->c", ApplyLn(stack(acc)), diff) / batch;           // [2L+1]

            var heads = new List<Tensor>();                                                    // StackHeadResults(-1)
            for (int l = 0; l < cfg.NLayers; l++)
                heads.Add(einsum("bhd,hde->hbe", cache[$"blocks.{l}.attn.hook_z"].select(1, -1), model.Parameter($"blocks.{l}.attn.W_O")));
            var perHead = einsum("cbd,bd->c", ApplyLn(cat(heads)), diff) / batch;              // [L·H]
            _ = logitLens.sum().item<float>() + perHead.sum().item<float>();                       // force completion
        }
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
