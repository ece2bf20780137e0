using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// RMSNorm as TransformerLens writes it: <c>scale = sqrt(mean(x²) + eps)</c> (<c>hook_scale</c>), <c>x / scale</c>
/// (<c>hook_normalized</c>), then <c>· w</c> (RMS) or nothing more (RMSPre, after the weight was folded into the next
/// layer). No centring. Statistics in float32 for bfloat16/float16 models (<c>hook_scale</c> float32), like <see cref="LayerNorm"/>.
/// </summary>
internal sealed class RmsNorm(Tensor? w, double eps, HookPoint hookScale, HookPoint hookNormalized) : INorm
{
    public Tensor Forward(Tensor x)
    {
        var dtype = x.dtype;
        var xf = Ops.Up(x);
        var scale = hookScale.Apply((xf.pow(2).mean([-1], keepdim: true) + eps).sqrt());
        var normed = xf / scale;
        x = hookNormalized.Apply(normed.dtype == dtype ? normed : normed.to_type(dtype));
        return w is null ? x : x * w;
    }
}
