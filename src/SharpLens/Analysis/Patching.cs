using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>Which activation an activation-patching experiment patches (TransformerLens's <c>patching</c> functions).</summary>
public enum PatchKind
{
    /// <summary><c>hook_resid_pre</c> at each (layer, pos) → [n_layers, pos].</summary>
    ResidPre,
    /// <summary><c>hook_resid_mid</c> at each (layer, pos) → [n_layers, pos].</summary>
    ResidMid,
    /// <summary><c>hook_attn_out</c> at each (layer, pos) → [n_layers, pos].</summary>
    AttnOut,
    /// <summary><c>hook_mlp_out</c> at each (layer, pos) → [n_layers, pos].</summary>
    MlpOut,
    /// <summary>Head output (<c>hook_z</c>) of each head at every position → [n_layers, n_heads].</summary>
    HeadOutAllPos,
    /// <summary>Head output (<c>hook_z</c>) of each head at each position → [n_layers, pos, n_heads].</summary>
    HeadOutByPos,
    /// <summary>Queries of each head, all positions → [n_layers, n_heads].</summary>
    HeadQAllPos,
    /// <summary>Keys of each head, all positions → [n_layers, n_heads].</summary>
    HeadKAllPos,
    /// <summary>Values of each head, all positions → [n_layers, n_heads].</summary>
    HeadVAllPos,
    /// <summary>Attention pattern of each head, all positions → [n_layers, n_heads].</summary>
    HeadPatternAllPos,
    /// <summary>Queries of each head at each position → [n_layers, pos, n_heads].</summary>
    HeadQByPos,
    /// <summary>Keys of each head at each position → [n_layers, pos, n_heads].</summary>
    HeadKByPos,
    /// <summary>Values of each head at each position → [n_layers, pos, n_heads].</summary>
    HeadVByPos,
    /// <summary>Attention pattern of each head at each destination position → [n_layers, dest_pos, n_heads].</summary>
    HeadPatternByDestPos,
}

/// <summary>Result of an activation-patching sweep.</summary>
/// <param name="Kind">What was patched.</param>
/// <param name="Axes">Axis names of <see cref="Values"/>, e.g. ["layer", "pos"].</param>
/// <param name="Values">Metric after each patch; shape given by <see cref="Axes"/>.</param>
public sealed record PatchingResult(PatchKind Kind, IReadOnlyList<string> Axes, Tensor Values);

/// <summary>
/// Activation patching with TransformerLens's semantics: run the corrupted input once per index, replacing one slice
/// of one activation with its value from the clean run, and record the metric of the logits.
/// </summary>
public static class Patching
{
    /// <summary>Hook name suffix, axes and head-indexed flag of each kind.</summary>
    internal static (string Hook, string[] Axes) Describe(PatchKind kind) => kind switch
    {
        PatchKind.ResidPre => ("hook_resid_pre", ["layer", "pos"]),
        PatchKind.ResidMid => ("hook_resid_mid", ["layer", "pos"]),
        PatchKind.AttnOut => ("hook_attn_out", ["layer", "pos"]),
        PatchKind.MlpOut => ("hook_mlp_out", ["layer", "pos"]),
        PatchKind.HeadOutAllPos => ("attn.hook_z", ["layer", "head"]),
        PatchKind.HeadQAllPos => ("attn.hook_q", ["layer", "head"]),
        PatchKind.HeadKAllPos => ("attn.hook_k", ["layer", "head"]),
        PatchKind.HeadVAllPos => ("attn.hook_v", ["layer", "head"]),
        PatchKind.HeadPatternAllPos => ("attn.hook_pattern", ["layer", "head"]),
        PatchKind.HeadOutByPos => ("attn.hook_z", ["layer", "pos", "head"]),
        PatchKind.HeadQByPos => ("attn.hook_q", ["layer", "pos", "head"]),
        PatchKind.HeadKByPos => ("attn.hook_k", ["layer", "pos", "head"]),
        PatchKind.HeadVByPos => ("attn.hook_v", ["layer", "pos", "head"]),
        PatchKind.HeadPatternByDestPos => ("attn.hook_pattern", ["layer", "dest_pos", "head"]),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// Runs one patching sweep. <paramref name="metric"/> maps logits to a scalar tensor. The clean cache must hold
    /// the patched activation of every layer. Indices run in row-major order, one forward pass each.
    /// </summary>
    public static PatchingResult Run(HookedTransformer model, PatchKind kind, Tensor corruptedTokens, ActivationCache cleanCache,
        Func<Tensor, Tensor> metric, IProgress<(int Done, int Total)>? progress = null)
    {
        var (hook, axes) = Describe(kind);
        var cfg = model.Config;
        long pos = corruptedTokens.shape[^1];
        string first = $"blocks.0.{hook}";
        var clean0 = cleanCache[first];
        // hook_pattern is [b, h, q, k]; every other patched activation is [b, pos, ...].
        long cleanPos = hook == "attn.hook_pattern" ? clean0.shape[2] : clean0.shape[1];
        if (clean0.shape[0] != corruptedTokens.shape[0] || cleanPos != pos)
            throw new SharpLensException($"Patching: the clean cache's '{first}' has shape {TensorExtensions.ShapeText(clean0.shape)} but the corrupted tokens are " +
                $"{TensorExtensions.ShapeText(corruptedTokens.shape)}; clean and corrupted inputs must have the same batch size and length.");
        bool byPos = axes.Length == 3 || axes[1] == "pos";
        bool byHead = axes.Contains("head");
        int nPos = byPos ? (int)pos : 1, nHeads = byHead ? cfg.NHeads : 1;
        int total = cfg.NLayers * nPos * nHeads, done = 0;
        var values = new float[total];
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string name = $"blocks.{l}.{hook}";
            _ = cleanCache[name]; // fails before any run when the clean cache lacks this activation
            for (int p = 0; p < nPos; p++)
                for (int h = 0; h < nHeads; h++)
                {
                    using var scope = NewDisposeScope();
                    var logits = model.RunWithHooks(corruptedTokens, [Ablations.PatchFrom(cleanCache, name, byPos ? p : null, byHead ? h : null)]);
                    values[done++] = metric(logits).item<float>();
                    progress?.Report((done, total));
                }
        }
        long[] shape = axes.Length == 2 ? [cfg.NLayers, byPos ? pos : cfg.NHeads] : [cfg.NLayers, pos, cfg.NHeads];
        return new PatchingResult(kind, axes, tensor(values).reshape(shape));
    }

    /// <summary>
    /// Every TransformerLens "every" bundle: resid_pre, attn_out and mlp_out by (layer, pos) —
    /// <c>get_act_patch_block_every</c> — or head out/q/k/v/pattern for all positions
    /// (<c>get_act_patch_attn_head_all_pos_every</c>) or by position (<c>..._by_pos_every</c>).
    /// </summary>
    public static IReadOnlyList<PatchingResult> RunEvery(HookedTransformer model, string bundle, Tensor corruptedTokens,
        ActivationCache cleanCache, Func<Tensor, Tensor> metric, IProgress<(int Done, int Total)>? progress = null)
    {
        PatchKind[] kinds = bundle switch
        {
            "block" => [PatchKind.ResidPre, PatchKind.AttnOut, PatchKind.MlpOut],
            "head_all_pos" => [PatchKind.HeadOutAllPos, PatchKind.HeadQAllPos, PatchKind.HeadKAllPos, PatchKind.HeadVAllPos, PatchKind.HeadPatternAllPos],
            "head_by_pos" => [PatchKind.HeadOutByPos, PatchKind.HeadQByPos, PatchKind.HeadKByPos, PatchKind.HeadVByPos, PatchKind.HeadPatternByDestPos],
            _ => throw new SharpLensException($"Unknown patching bundle '{bundle}'; allowed: block, head_all_pos, head_by_pos."),
        };
        return kinds.Select(k => Run(model, k, corruptedTokens, cleanCache, metric, progress)).ToList();
    }
}
