using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// LayerNorm as TransformerLens writes it, so <c>hook_scale</c> exists:
/// centre, <c>scale = sqrt(mean(x²) + eps)</c>, divide (<c>hook_normalized</c>), then <c>w·x + b</c> (LN) or nothing more (LNPre, after
/// the weights were folded into the next layer).
/// </summary>
internal sealed class LayerNorm(Tensor? w, Tensor? b, double eps, HookPoint hookScale, HookPoint hookNormalized) : INorm
{
    public Tensor Forward(Tensor x)
    {
        x = x - x.mean([-1], keepdim: true);
        var scale = hookScale.Apply((x.pow(2).mean([-1], keepdim: true) + eps).sqrt());
        x = hookNormalized.Apply(x / scale); // TransformerLens hooks the normalized value before w and b
        return w is null ? x : b is null ? x * w : addcmul(b, x, w, 1.0);
    }
}
