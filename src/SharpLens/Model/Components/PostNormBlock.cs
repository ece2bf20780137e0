using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Post-norm block (OLMo-2): attention and MLP read the residual stream directly and their outputs are normalised
/// before being added: <c>resid_mid = resid_pre + ln1(attn(resid_pre))</c>, <c>resid_post = resid_mid + ln2(mlp(resid_mid))</c>.
/// As in TransformerLens, <c>hook_attn_out</c>/<c>hook_mlp_out</c> hold the raw outputs (before ln1/ln2), so the hook
/// order is resid_pre, attn.*, hook_attn_out, ln1.*, resid_mid, mlp.*, hook_mlp_out, ln2.*, resid_post, and a
/// decomposition of the residual into attn_out/mlp_out terms does not sum to it. Norm weights cannot be folded into a
/// following layer here.
/// </summary>
internal sealed class PostNormBlock(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks) : TransformerBlock(cfg, parts, hooks)
{
    public override Tensor Forward(Tensor resid, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        var residPre = Hooks.ResidPre.Apply(resid);
        var attnOut = Hooks.AttnOut.Apply(Attend(residPre, null, ctx, kvCache));
        var residMid = Hooks.ResidMid!.Apply(residPre + Parts.Ln1!.Forward(attnOut));
        if (Parts.Mlp is null) return Hooks.ResidPost.Apply(residMid);
        var mlpOut = Hooks.MlpOut.Apply(Mlp(residMid, null));
        return Hooks.ResidPost.Apply(residMid + Parts.Ln2!.Forward(mlpOut));
    }
}
