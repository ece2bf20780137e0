using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// RMSNorm as TransformerLens writes it: <c>scale = sqrt(mean(x²) + eps)</c> (<c>hook_scale</c>), <c>x / scale</c>
/// (<c>hook_normalized</c>), then <c>· w</c> (RMS) or nothing more (RMSPre, after the weight was folded into the next
/// layer). No centring.
/// </summary>
internal sealed class RmsNorm(Tensor? w, double eps, HookPoint hookScale, HookPoint hookNormalized) : INorm
{
    public Tensor Forward(Tensor x)
    {
        var scale = hookScale.Apply((x.pow(2).mean([-1], keepdim: true) + eps).sqrt());
        x = hookNormalized.Apply(x / scale);
        return w is null ? x : x * w;
    }
}
