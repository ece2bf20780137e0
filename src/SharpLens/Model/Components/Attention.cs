using SharpLens.Hooks;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpLens.Model.Components;

/// <summary>Hook points of one attention layer, named as in TransformerLens (<c>blocks.L.attn.hook_*</c>).</summary>
internal sealed record AttentionHooks(HookPoint Q, HookPoint K, HookPoint V, HookPoint AttnScores, HookPoint Pattern, HookPoint Z, HookPoint Result);

/// <summary>
/// Causal multi-head attention with head-major weights (<c>W_Q</c> [head, d_model, d_head], <c>W_O</c>
/// [head, d_head, d_model]). <c>hook_attn_scores</c> is scaled and masked with -inf above the diagonal, as in
/// TransformerLens. When nothing observes the scores or the pattern, a fused kernel computes z directly.
/// </summary>
internal sealed class Attention
{
    private readonly HookedTransformerConfig _cfg;
    private readonly Tensor _wQ, _wK, _wV, _wO, _bQ, _bK, _bV, _bO;
    private readonly Tensor _wQkv, _bQkv, _wOFlat; // fused views for the common (unsplit) path
    private readonly AttentionHooks _hooks;
    private readonly double _scale;

    public Attention(HookedTransformerConfig cfg, int layer, Tensor wQ, Tensor wK, Tensor wV, Tensor wO,
        Tensor bQ, Tensor bK, Tensor bV, Tensor bO, Tensor wQkv, Tensor bQkv, Tensor wOFlat, AttentionHooks hooks)
    {
        _cfg = cfg; _wQ = wQ; _wK = wK; _wV = wV; _wO = wO; _bQ = bQ; _bK = bK; _bV = bV; _bO = bO;
        _wQkv = wQkv; _bQkv = bQkv; _hooks = hooks;
        _wOFlat = wOFlat;
        _scale = (cfg.UseAttnScale ? cfg.AttnScale : 1.0) * (cfg.ScaleAttnByInverseLayerIdx ? layer + 1 : 1);
    }

    /// <summary>
    /// Inputs are [batch, pos, d_model], or [batch, pos, head, d_model] when the model splits q/k/v inputs per head.
    /// <paramref name="attentionMask"/> is [batch, pastLength + pos] (1 = real token) or null.
    /// </summary>
    public Tensor Forward(Tensor qIn, Tensor kIn, Tensor vIn, Tensor? attentionMask, KeyValueCacheEntry? kvCache)
    {
        int h = _cfg.NHeads, dh = _cfg.DHead;
        Tensor q, k, v;
        if (qIn.dim() == 3 && ReferenceEquals(qIn, kIn) && ReferenceEquals(kIn, vIn))
        {
            var qkv = Ops.Affine(qIn, _wQkv, _bQkv);               // one GEMM for q, k and v
            var parts = qkv.view(qIn.shape[0], qIn.shape[1], 3, h, dh).unbind(2);
            q = parts[0]; k = parts[1]; v = parts[2];
        }
        else
        {
            q = Project(qIn, _wQ, _bQ); k = Project(kIn, _wK, _bK); v = Project(vIn, _wV, _bV);
        }
        q = _hooks.Q.Apply(q); k = _hooks.K.Apply(k); v = _hooks.V.Apply(v);
        if (kvCache is not null) (k, v) = kvCache.Append(k, v);

        long qLen = q.shape[1], kLen = k.shape[1];
        var qh = q.permute(0, 2, 1, 3); var kh = k.permute(0, 2, 1, 3); var vh = v.permute(0, 2, 1, 3); // [b, h, p, dh]
        Tensor z;
        bool fused = attentionMask is null && qLen == kLen && !_hooks.AttnScores.HasHooks && !_hooks.Pattern.HasHooks
            && Math.Abs(_scale - Math.Sqrt(dh)) < 1e-12;
        if (fused)
        {
            z = F.scaled_dot_product_attention(qh, kh, vh, is_casual: true); // [b, h, q, dh]
        }
        else
        {
            var scores = qh.matmul(kh.transpose(-1, -2)) / _scale;            // [b, h, q, k]
            var allowed = ones(qLen, kLen, dtype: ScalarType.Bool).tril(kLen - qLen);
            if (attentionMask is not null)
                allowed = allowed.unsqueeze(0).logical_and(attentionMask.to_type(ScalarType.Bool).unsqueeze(1)).unsqueeze(1);
            scores = _hooks.AttnScores.Apply(scores.masked_fill(allowed.logical_not(), float.NegativeInfinity));
            var pattern = scores.softmax(-1);
            pattern = pattern.masked_fill(pattern.isnan(), 0.0); // rows with every key masked (left padding)
            pattern = _hooks.Pattern.Apply(pattern);
            z = pattern.matmul(vh);
        }
        z = _hooks.Z.Apply(z.permute(0, 2, 1, 3));                       // [b, q, h, dh]

        if (_cfg.UseAttnResult)
        {
            var result = _hooks.Result.Apply(einsum("bphd,hde->bphe", z, _wO));
            return result.sum(-2) + _bO;
        }
        return Ops.Affine(z.reshape(z.shape[0], z.shape[1], h * dh), _wOFlat, _bO);
    }

    /// <summary>Per-head projection of a [b, p, d] or per-head [b, p, h, d] input to [b, p, h, d_head].</summary>
    private Tensor Project(Tensor x, Tensor w, Tensor b) =>
        (x.dim() == 4 ? einsum("bphd,hde->bphe", x, w) : einsum("bpd,hde->bphe", x, w)) + b;
}
