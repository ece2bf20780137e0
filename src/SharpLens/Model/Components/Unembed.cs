using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary><c>unembed.hook_in</c> → <c>x·W_U + b_U</c> → <c>unembed.hook_out</c> (= the logits).</summary>
internal sealed class Unembed(Tensor wU, Tensor bU, HookPoint hookIn, HookPoint hookOut)
{
    public Tensor Forward(Tensor x) => hookOut.Apply(Ops.Affine(hookIn.Apply(x), wU, bU));
}
