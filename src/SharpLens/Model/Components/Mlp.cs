using SharpLens.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpLens.Model.Components;

/// <summary>An MLP sublayer: d_model → d_model.</summary>
internal interface IMlp
{
    Tensor Forward(Tensor x);
}

/// <summary><c>hook_pre = x·W_in + b_in</c>, <c>hook_post = act(pre)</c>, output <c>post·W_out + b_out</c>.</summary>
internal sealed class Mlp(Tensor wIn, Tensor bIn, Tensor wOut, Tensor bOut, string actFn, HookPoint hookPre, HookPoint hookPost) : IMlp
{
    public Tensor Forward(Tensor x)
    {
        var pre = hookPre.Apply(Ops.Affine(x, wIn, bIn));
        var post = hookPost.Apply(Activate(pre, actFn));
        return Ops.Affine(post, wOut, bOut);
    }

    /// <summary>TransformerLens's activation functions by name.</summary>
    public static Tensor Activate(Tensor x, string actFn) => actFn switch
    {
        // gelu_new = tanh approximation (GPT-2); measured 1.5e-7 from TransformerLens's formula.
        "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh" => F.gelu(x, GELU.Approximate.tanh),
        "gelu" => F.gelu(x),
        "relu" => F.relu(x),
        "silu" => F.silu(x),
        _ => throw new SharpLensException($"Activation function '{actFn}' is not implemented."),
    };
}
