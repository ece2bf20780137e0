using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Gated MLP (SwiGLU / GeGLU, TransformerLens's <c>GatedMLP</c>): <c>hook_pre = x·W_gate</c>,
/// <c>hook_pre_linear = x·W_in</c>, <c>hook_post = act(pre)·pre_linear + b_in</c>, output <c>post·W_out + b_out</c>.
/// </summary>
internal sealed class GatedMlp(Tensor wGate, Tensor wIn, Tensor bIn, Tensor wOut, Tensor bOut, string actFn,
    HookPoint hookPre, HookPoint hookPreLinear, HookPoint hookPost) : IMlp
{
    public Tensor Forward(Tensor x)
    {
        var pre = hookPre.Apply(Ops.Affine(x, wGate, null));
        var preLinear = hookPreLinear.Apply(Ops.Affine(x, wIn, null));
        var post = hookPost.Apply(Mlp.Activate(pre, actFn) * preLinear + bIn);
        return Ops.Affine(post, wOut, bOut);
    }
}
