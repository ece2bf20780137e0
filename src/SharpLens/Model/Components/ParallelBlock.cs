using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Parallel block (GPT-NeoX, GPT-J; TransformerLens's <c>parallel_attn_mlp</c>): attention and MLP both read
/// resid_pre, <c>resid_post = resid_pre + attn(ln1(resid_pre)) + mlp(ln2(resid_pre))</c>. There is no <c>hook_resid_mid</c>.
/// </summary>
internal sealed class ParallelBlock(HookedTransformerConfig cfg, BlockParts parts, BlockHooks hooks) : TransformerBlock(cfg, parts, hooks)
{
    public override Tensor Forward(Tensor resid, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        var residPre = Hooks.ResidPre.Apply(resid);
        var attnOut = Hooks.AttnOut.Apply(Attend(residPre, Parts.Ln1, ctx, kvCache));
        if (Parts.Mlp is null) return Hooks.ResidPost.Apply(residPre + attnOut);
        var mlpOut = Hooks.MlpOut.Apply(Mlp(residPre, Parts.Ln2));
        return Hooks.ResidPost.Apply(residPre + attnOut + mlpOut);
    }
}
