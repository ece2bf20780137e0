using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Sequential pre-norm block (GPT-2, Llama, ...): <c>resid_mid = resid_pre + attn(ln1(resid_pre))</c>,
/// <c>resid_post = resid_mid + mlp(ln2(resid_mid))</c>.
/// </summary>
internal sealed class SequentialBlock(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks) : TransformerBlock(cfg, parts, hooks)
{
    public override Tensor Forward(Tensor resid, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        var residPre = Hooks.ResidPre.Apply(resid);
        var attnOut = Hooks.AttnOut.Apply(Attend(residPre, Parts.Ln1, ctx, kvCache));
        var residMid = Hooks.ResidMid!.Apply(residPre + attnOut);
        if (Parts.Mlp is null) return Hooks.ResidPost.Apply(residMid);
        var mlpOut = Hooks.MlpOut.Apply(Mlp(residMid, Parts.Ln2));
        return Hooks.ResidPost.Apply(residMid + mlpOut);
    }
}
