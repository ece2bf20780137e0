using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Sequential block with sandwich norms (Gemma 2/3; TransformerLens's <c>use_normalization_before_and_after</c>):
/// <c>resid_mid = resid_pre + ln1_post(attn(ln1(resid_pre)))</c>, <c>resid_post = resid_mid + ln2_post(mlp(ln2(resid_mid)))</c>.
/// <c>hook_attn_out</c>/<c>hook_mlp_out</c> hold what is added to the residual (after the post norms), while per-head
/// results are taken inside attention, before <c>ln1_post</c>, so they do not sum to <c>hook_attn_out</c>. The post
/// norms are never folded.
/// </summary>
internal sealed class SandwichBlock(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks) : TransformerBlock(cfg, parts, hooks)
{
    public override Tensor Forward(Tensor resid, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        var residPre = Hooks.ResidPre.Apply(resid);
        var attnOut = Hooks.AttnOut.Apply(Parts.Ln1Post!.Forward(Attend(residPre, Parts.Ln1, ctx, kvCache)));
        var residMid = Hooks.ResidMid!.Apply(residPre + attnOut);
        if (Parts.Mlp is null) return Hooks.ResidPost.Apply(residMid);
        var mlpOut = Hooks.MlpOut.Apply(Parts.Ln2Post!.Forward(Mlp(residMid, Parts.Ln2)));
        return Hooks.ResidPost.Apply(residMid + mlpOut);
    }
}
