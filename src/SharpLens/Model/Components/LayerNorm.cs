using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// LayerNorm as TransformerLens writes it, so <c>hook_scale</c> exists:
/// centre, <c>scale = sqrt(mean(x²) + eps)</c>, divide (<c>hook_normalized</c>), then <c>w·x + b</c> (LN) or nothing more (LNPre, after
/// the weights were folded into the next layer). In a bfloat16/float16 model the statistics are computed in float32
/// (as TransformerLens does): <c>hook_scale</c> is float32, <c>hook_normalized</c> and the output are in the model's dtype.
/// </summary>
internal sealed class LayerNorm(Tensor? w, Tensor? b, double eps, HookPoint hookScale, HookPoint hookNormalized) : INorm
{
    public Tensor Forward(Tensor x)
    {
        var dtype = x.dtype;
        x = Ops.Up(x); // bfloat16 sums of squares lose the small features: statistics in float32 (measured, README Precision)
        x = x - x.mean([-1], keepdim: true);
        var scale = hookScale.Apply((x.pow(2).mean([-1], keepdim: true) + eps).sqrt());
        x = x / scale;
        x = hookNormalized.Apply(x.dtype == dtype ? x : x.to_type(dtype)); // TransformerLens hooks the normalized value before w and b
        return w is null ? x : b is null ? x * w : addcmul(b, x, w, 1.0);
    }
}
