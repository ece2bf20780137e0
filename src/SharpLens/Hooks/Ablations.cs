using SharpLens.Cache;
using static TorchSharp.torch;

namespace SharpLens.Hooks;

/// <summary>
/// Ready-made hooks for ablation and patching; each is a <see cref="Hook"/> to pass to <c>RunWithHooks</c> or
/// <c>model.Hooks(...)</c>, and they compose (several on one run, several on one hook point).
/// </summary>
public static class Ablations
{
    private static string HeadHook(int layer, string at) => at switch
    {
        "z" or "v" or "q" or "k" => $"blocks.{layer}.attn.hook_{at}",
        "pattern" => $"blocks.{layer}.attn.hook_pattern",
        _ => throw new SharpLensException($"A head can be ablated at 'z', 'v', 'q', 'k' or 'pattern', not '{at}'."),
    };

    /// <summary>Zeroes one head's activation at <c>hook_z</c> (default), <c>hook_v</c>, <c>hook_q</c>, <c>hook_k</c> or <c>hook_pattern</c>.</summary>
    public static Hook ZeroAblateHead(int layer, int head, string at = "z") =>
        Hook.At(HeadHook(layer, at), (act, _) =>
        {
            var o = act.clone();
            if (at == "pattern") o[.., head] = 0; else o[.., .., head] = 0;
            return o;
        });

    /// <summary>
    /// Replaces one head's activation by its mean over batch and position — of <paramref name="reference"/> when given
    /// (e.g. a cache of a reference distribution), else of the current run.
    /// </summary>
    public static Hook MeanAblateHead(int layer, int head, string at = "z", ActivationCache? reference = null)
    {
        string name = HeadHook(layer, at);
        return Hook.At(name, (act, _) =>
        {
            var src = reference?[name] ?? act;
            var o = act.clone();
            if (at == "pattern") o[.., head] = src[.., head].mean([0], keepdim: true).expand_as(o[.., head]);
            else o[.., .., head] = src[.., .., head].mean([0, 1], keepdim: true).expand_as(o[.., .., head]);
            return o;
        });
    }

    /// <summary>Zeroes a whole activation, e.g. <c>blocks.3.hook_mlp_out</c> or <c>blocks.3.hook_attn_out</c>.</summary>
    public static Hook ZeroAblate(string hookName) => Hook.At(hookName, (act, _) => zeros_like(act));

    /// <summary>
    /// Replaces an activation by its mean over batch and position (of <paramref name="reference"/> when given, else
    /// of the current run), broadcast back to its shape.
    /// </summary>
    public static Hook MeanAblate(string hookName, ActivationCache? reference = null) =>
        Hook.At(hookName, (act, _) => (reference?[hookName] ?? act).mean([0, 1], keepdim: true).expand_as(act));

    /// <summary>Zeroes one MLP neuron (<c>blocks.L.mlp.hook_post[..., neuron]</c>).</summary>
    public static Hook ZeroAblateNeuron(int layer, int neuron) =>
        Hook.At($"blocks.{layer}.mlp.hook_post", (act, _) =>
        {
            var o = act.clone();
            o[.., .., neuron] = 0;
            return o;
        });

    /// <summary>
    /// Replaces an activation by the same activation from another run's cache, entirely or only at
    /// <paramref name="position"/> and/or <paramref name="head"/>. Head-indexed hooks are [b, pos, head, d_head];
    /// <c>hook_pattern</c> / <c>hook_attn_scores</c> are [b, head, dest, src], where the position is the destination.
    /// </summary>
    public static Hook PatchFrom(ActivationCache source, string hookName, int? position = null, int? head = null) =>
        Hook.At(hookName, (act, _) =>
        {
            var src = source[hookName];
            if (!src.shape.SequenceEqual(act.shape))
                throw new SharpLensException($"PatchFrom '{hookName}': the source activation has shape {TensorExtensions.ShapeText(src.shape)} " +
                    $"but this run's has {TensorExtensions.ShapeText(act.shape)}; clean and corrupted inputs must have the same shape.");
            if (position is null && head is null) return src.clone();
            var o = act.clone();
            bool headFirst = hookName.EndsWith("hook_pattern", StringComparison.Ordinal) || hookName.EndsWith("hook_attn_scores", StringComparison.Ordinal);
            TensorIndex All = TensorIndex.Colon;
            TensorIndex P = position is { } p ? p : All, H = head is { } h ? h : All;
            TensorIndex[] at = headFirst ? [All, H, P] : [All, P, H];
            o[at] = src[at];
            return o;
        });
}
