using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Normalization of queries or keys after <c>hook_q</c>/<c>hook_k</c>, before rotary. Per head over d_head (Qwen3,
/// Gemma 3), with TransformerLens's flattened hook shapes <c>hook_scale</c> [batch·pos·heads, 1] and
/// <c>hook_normalized</c> [batch·pos·heads, d_head]; or over the whole projection (OLMo-2), hooks [batch, pos, 1] and
/// [batch, pos, heads·d_head].
/// </summary>
internal sealed class QkNorm(INorm norm, bool perHead)
{
    /// <summary><paramref name="x"/>: [batch, pos, heads, d_head].</summary>
    public Tensor Forward(Tensor x)
    {
        var shape = x.shape;
        var flat = perHead ? x.reshape(-1, shape[3]) : x.reshape(shape[0], shape[1], shape[2] * shape[3]);
        return norm.Forward(flat).reshape(shape);
    }
}
