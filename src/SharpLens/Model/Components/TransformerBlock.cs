using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>Hook points of one block that belong to the block itself (<c>blocks.L.hook_*</c>); <c>hook_resid_mid</c> only where the layout has one.</summary>
internal sealed record BlockHooks(HookPoint ResidPre, HookPoint AttnIn, HookPoint QInput, HookPoint KInput, HookPoint VInput,
    HookPoint AttnOut, HookPoint? ResidMid, HookPoint MlpIn, HookPoint MlpOut, HookPoint ResidPost);

/// <summary>The parts of one block, chosen from the config when the model is built. Absent parts are null.</summary>
/// <param name="Ln1">Norm before attention (after it in the post-norm layout).</param>
/// <param name="Attn">The attention sublayer.</param>
/// <param name="Ln2">Norm before the MLP (after it in the post-norm layout).</param>
/// <param name="Mlp">The MLP, null for attention-only models.</param>
/// <param name="Ln1Post">Sandwich norm after attention (<c>ln1_post</c>).</param>
/// <param name="Ln2Post">Sandwich norm after the MLP (<c>ln2_post</c>).</param>
internal sealed record BlockParts(INorm? Ln1, Attention Attn, INorm? Ln2, IMlp? Mlp, INorm? Ln1Post, INorm? Ln2Post);

/// <summary>
/// One transformer block: how the residual stream flows through its parts is the block layout (a subclass), chosen
/// once per model by <see cref="Create"/>. The parts and the per-head input hooks are shared by every layout.
/// </summary>
internal abstract class TransformerBlock(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks)
{
    protected HookedTransformerConfig Cfg { get; } = cfg;
    protected BlockParts Parts { get; } = parts;
    protected BlockHooks Hooks { get; } = hooks;

    /// <summary>The layout the config selects.</summary>
    public static TransformerBlock Create(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks)
    {
        if (cfg.ParallelAttnMlp) return new ParallelBlock(cfg, parts, hooks);
        if (cfg.UseNormalizationBeforeAndAfter) return new SandwichBlock(cfg, parts, hooks);
        if (cfg.UsePostNormBlock) return new PostNormBlock(cfg, parts, hooks);
        return new SequentialBlock(cfg, parts, hooks);
    }

    /// <summary>Whether this config's layout has <c>hook_resid_mid</c>.</summary>
    public static bool HasResidMid(HookedTransformerConfig cfg) => !cfg.ParallelAttnMlp;

    /// <summary>Maps resid_pre [batch, pos, d_model] to resid_post.</summary>
    public abstract Tensor Forward(Tensor resid, AttentionContext ctx, KeyValueCacheEntry? kvCache);

    /// <summary>
    /// Attention on <paramref name="residPre"/> through <paramref name="norm"/> (null: read the residual directly). With
    /// <c>use_split_qkv_input</c> / <c>use_attn_in</c> the input is first copied per head (keys and values per key/value
    /// head) into <c>hook_q_input</c>... / <c>hook_attn_in</c> and the norm runs on each copy, as in TransformerLens.
    /// </summary>
    protected Tensor Attend(Tensor residPre, INorm? norm, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        Tensor N(Tensor x) => norm is null ? x : norm.Forward(x);
        if (Cfg.UseAttnIn)
        {
            if (Cfg.UsesGroupedQueryNames)
                throw new SharpLensException("hook_attn_in (UseAttnIn) is not available with grouped-query attention (n_key_value_heads is set), " +
                    "as in TransformerLens; use UseSplitQkvInput, whose hook_k_input/hook_v_input have the key/value heads.");
            var x = N(Hooks.AttnIn.Apply(PerHead(residPre, Cfg.NHeads)));
            return Parts.Attn.Forward(x, x, x, ctx, kvCache);
        }
        if (Cfg.UseSplitQkvInput)
        {
            var q = Hooks.QInput.Apply(PerHead(residPre, Cfg.NHeads));
            var k = Hooks.KInput.Apply(PerHead(residPre, Cfg.KvHeads));
            var v = Hooks.VInput.Apply(PerHead(residPre, Cfg.KvHeads));
            return Parts.Attn.Forward(N(q), N(k), N(v), ctx, kvCache); // the norm's hooks keep the value path's, as in TransformerLens
        }
        var normed = N(residPre);
        return Parts.Attn.Forward(normed, normed, normed, ctx, kvCache);
    }

    /// <summary>The MLP on <paramref name="x"/> (through <c>hook_mlp_in</c> when enabled) and <paramref name="norm"/>.</summary>
    protected Tensor Mlp(Tensor x, INorm? norm)
    {
        if (Cfg.UseHookMlpIn) x = Hooks.MlpIn.Apply(x.clone());
        return Parts.Mlp!.Forward(norm is null ? x : norm.Forward(x));
    }

    /// <summary>Per-head copies of the residual so each head's input can be patched separately.</summary>
    private static Tensor PerHead(Tensor resid, int heads) => resid.unsqueeze(2).expand(-1, -1, heads, -1);
}
