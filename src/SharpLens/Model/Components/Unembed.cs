using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// <c>unembed.hook_in</c> → <c>x·W_U + b_U</c> → <c>unembed.hook_out</c>. With a final soft-cap the returned logits
/// are <c>cap·tanh(hook_out / cap)</c> while <c>hook_out</c> keeps the uncapped value, as in TransformerLens.
/// </summary>
internal sealed class Unembed(Tensor wU, Tensor bU, double? softCap, HookPoint hookIn, HookPoint hookOut)
{
    public Tensor Forward(Tensor x)
    {
        var logits = hookOut.Apply(Ops.Affine(hookIn.Apply(x), wU, bU));
        return softCap is { } cap ? (logits / cap).tanh() * cap : logits;
    }
}
