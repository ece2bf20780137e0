using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>Hook points of one block that belong to the block itself (<c>blocks.L.hook_*</c>).</summary>
internal sealed record BlockHooks(HookPoint ResidPre, HookPoint AttnIn, HookPoint QInput, HookPoint KInput, HookPoint VInput,
    HookPoint AttnOut, HookPoint ResidMid, HookPoint MlpIn, HookPoint MlpOut, HookPoint ResidPost);

/// <summary>
/// Pre-norm GPT-2 block: <c>resid_mid = resid_pre + attn(ln1(resid_pre))</c>,
/// <c>resid_post = resid_mid + mlp(ln2(resid_mid))</c>.
/// </summary>
internal sealed class TransformerBlock(HookedTransformerConfig cfg, LayerNorm ln1, Attention attn, LayerNorm? ln2, Mlp? mlp, BlockHooks hooks)
{
    public Tensor Forward(Tensor resid, Tensor? attentionMask, KeyValueCacheEntry? kvCache)
    {
        var residPre = hooks.ResidPre.Apply(resid);
        Tensor attnOut;
        if (cfg.UseSplitQkvInput || cfg.UseAttnIn)
        {
            // Per-head copies of the residual so each head's input can be patched separately.
            var perHead = residPre.unsqueeze(2).expand(-1, -1, cfg.NHeads, -1);
            Tensor qIn, kIn, vIn;
            if (cfg.UseAttnIn) qIn = kIn = vIn = hooks.AttnIn.Apply(perHead);
            else { qIn = hooks.QInput.Apply(perHead); kIn = hooks.KInput.Apply(perHead); vIn = hooks.VInput.Apply(perHead); }
            var q = ln1.Forward(qIn);
            var k = ReferenceEquals(kIn, qIn) ? q : ln1.Forward(kIn);
            var v = ReferenceEquals(vIn, qIn) ? q : ln1.Forward(vIn);
            attnOut = attn.Forward(q, k, v, attentionMask, kvCache);
        }
        else
        {
            var x = ln1.Forward(residPre);
            attnOut = attn.Forward(x, x, x, attentionMask, kvCache);
        }
        attnOut = hooks.AttnOut.Apply(attnOut);
        var residMid = hooks.ResidMid.Apply(residPre + attnOut);
        if (mlp is null) return hooks.ResidPost.Apply(residMid);
        var mlpIn = cfg.UseHookMlpIn ? hooks.MlpIn.Apply(residMid.clone()) : residMid;
        var mlpOut = hooks.MlpOut.Apply(mlp.Forward(ln2!.Forward(mlpIn)));
        return hooks.ResidPost.Apply(residMid + mlpOut);
    }
}
