using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// <c>unembed.hook_in</c> → <c>x·W_U + b_U</c> → <c>unembed.hook_out</c>. With a final soft-cap the returned logits
/// are <c>cap·tanh(hook_out / cap)</c> while <c>hook_out</c> keeps the uncapped value, as in TransformerLens.
/// Logits (and <c>hook_out</c>) are float32 whatever the model's dtype, so log-softmax, loss and logit differences are
/// float32; bfloat16 logits of magnitude 20 would be off by up to 0.06.
/// </summary>
internal sealed class Unembed(Tensor wU, Tensor bU, double? softCap, HookPoint hookIn, HookPoint hookOut)
{
    public Tensor Forward(Tensor x)
    {
        var logits = hookOut.Apply(Ops.AffineFloat32(hookIn.Apply(x), wU, bU));
        return softCap is { } cap ? (logits / cap).tanh() * cap : logits;
    }
}
