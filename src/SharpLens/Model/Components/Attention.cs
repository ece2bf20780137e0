using SharpLens.Hooks;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpLens.Model.Components;

/// <summary>Hook points of one attention layer, named as in TransformerLens (<c>blocks.L.attn.hook_*</c>); rotary ones only for rotary models.</summary>
internal sealed record AttentionHooks(HookPoint Q, HookPoint K, HookPoint V, HookPoint? RotQ, HookPoint? RotK,
    HookPoint AttnScores, HookPoint Pattern, HookPoint Z, HookPoint Result);

/// <summary>
/// Parameters of one attention layer (head-major, TransformerLens shapes; keys/values with n_key_value_heads) plus
/// <c>WOFlat</c>, W_O as one [heads·d_head, d_model] matrix (a view).
/// </summary>
internal sealed record AttentionWeights(Tensor WQ, Tensor WK, Tensor WV, Tensor WO, Tensor BQ, Tensor BK, Tensor BV, Tensor BO, Tensor WOFlat);

/// <summary>What every attention layer of one forward pass shares.</summary>
/// <param name="Mask">[batch, past + pos] (1 = real token) or null when nothing is padded.</param>
/// <param name="Positions">Position of each token of past + pos counted from its prompt's first real token
/// ([batch, past + pos]), or null: positions are simply 0, 1, ...</param>
internal sealed record AttentionContext(Tensor? Mask, Tensor? Positions);

/// <summary>
/// Causal attention with head-major weights (<c>W_Q</c> [head, d_model, d_head], <c>W_O</c> [head, d_head, d_model]),
/// grouped-query keys/values (kv head j serves query heads j·g … j·g+g−1), optional q/k norm and rotary positions,
/// a local window per layer and a score soft-cap. <c>hook_attn_scores</c> is scaled, soft-capped and masked with -inf,
/// as in TransformerLens. When nothing observes the scores or the pattern, a fused kernel computes z directly.
/// In a bfloat16/float16 model q·kᵀ, the scores (<c>hook_attn_scores</c>, float32) and the softmax run in float32 like
/// TransformerLens; the pattern is rounded to the model's dtype before <c>hook_pattern</c>.
/// </summary>
internal sealed class Attention
{
    private readonly HookedTransformerConfig _cfg;
    private readonly AttentionWeights _w;
    private readonly QkvProjection _qkv;
    private readonly QkNorm? _qNorm, _kNorm;
    private readonly Rotary? _rotary;
    private readonly AttentionHooks _hooks;
    private readonly double _scale;
    private readonly int? _window;       // local layers only
    private readonly double? _softCap;

    public Attention(HookedTransformerConfig cfg, int layer, AttentionWeights weights, QkvProjection qkv, QkNorm? qNorm, QkNorm? kNorm, Rotary? rotary, AttentionHooks hooks)
    {
        _cfg = cfg; _w = weights; _qkv = qkv; _qNorm = qNorm; _kNorm = kNorm; _rotary = rotary; _hooks = hooks;
        _scale = (cfg.UseAttnScale ? cfg.AttnScale : 1.0) * (cfg.ScaleAttnByInverseLayerIdx ? layer + 1 : 1);
        _window = cfg.IsLocalLayer(layer) ? cfg.WindowSize : null;
        _softCap = cfg.AttnScoresSoftCap;
    }

    /// <summary>
    /// Inputs are [batch, pos, d_model], or [batch, pos, head, d_model] when the model splits q/k/v inputs per head
    /// (k and v then have the key/value heads).
    /// </summary>
    public Tensor Forward(Tensor qIn, Tensor kIn, Tensor vIn, AttentionContext ctx, KeyValueCacheEntry? kvCache)
    {
        int h = _cfg.NHeads, kvh = _cfg.KvHeads, dh = _cfg.DHead;
        Tensor q, k, v;
        if (qIn.dim() == 3 && ReferenceEquals(qIn, kIn) && ReferenceEquals(kIn, vIn))
            (q, k, v) = _qkv.Forward(qIn); // the layout chosen when the model was built
        else
            (q, k, v) = (Project(qIn, _w.WQ, _w.BQ), Project(kIn, _w.WK, _w.BK), Project(vIn, _w.WV, _w.BV));
        q = _hooks.Q.Apply(q); k = _hooks.K.Apply(k); v = _hooks.V.Apply(v);
        if (_qNorm is not null) { q = _qNorm.Forward(q); k = _kNorm!.Forward(k); }
        if (kvCache is not null) (k, v) = kvCache.Append(k, v); // cached before rotary, like TransformerLens

        long qLen = q.shape[1], kLen = k.shape[1];
        if (_rotary is not null)
        {
            var qPos = ctx.Positions?.narrow(1, kLen - qLen, qLen);
            q = _hooks.RotQ!.Apply(_rotary.Apply(q, kLen - qLen, qPos));
            k = _hooks.RotK!.Apply(_rotary.Apply(k, 0, ctx.Positions));
        }
        if (kvh != h) { k = k.repeat_interleave(h / kvh, 2); v = v.repeat_interleave(h / kvh, 2); }
        var qh = q.permute(0, 2, 1, 3); var kh = k.permute(0, 2, 1, 3); var vh = v.permute(0, 2, 1, 3); // [b, h, p, dh]
        Tensor z;
        bool fused = ctx.Mask is null && qLen == kLen && _window is null && _softCap is null
            && !_hooks.AttnScores.HasHooks && !_hooks.Pattern.HasHooks && Math.Abs(_scale - Math.Sqrt(dh)) < 1e-12;
        var dtype = qh.dtype;
        bool half = Ops.IsHalf(dtype);
        if (fused)
        {
            // Half types: the whole attention in float32 (a few % of the FLOPs), rounded once.
            z = half ? F.scaled_dot_product_attention(Ops.Up(qh), Ops.Up(kh), Ops.Up(vh), is_casual: true).to_type(dtype)
                : F.scaled_dot_product_attention(qh, kh, vh, is_casual: true); // [b, h, q, dh]
        }
        else
        {
            var scores = Ops.Up(qh).matmul(Ops.Up(kh).transpose(-1, -2)) / _scale; // [b, h, q, k], float32 for half types
            if (_softCap is { } cap) scores = (scores / cap).tanh() * cap;     // capped before masking
            scores = _hooks.AttnScores.Apply(scores.masked_fill(Allowed(qLen, kLen, ctx.Mask).logical_not(), float.NegativeInfinity));
            var pattern = scores.softmax(-1);
            pattern = pattern.masked_fill(pattern.isnan(), 0.0); // rows with every key masked (left padding)
            pattern = _hooks.Pattern.Apply(half ? pattern.to_type(dtype) : pattern);
            z = Ops.MatMul(pattern, vh);
        }
        z = _hooks.Z.Apply(z.permute(0, 2, 1, 3));                       // [b, q, h, dh]

        if (_cfg.UseAttnResult)
        {
            var result = _hooks.Result.Apply(Ops.Einsum("bphd,hde->bphe", z, _w.WO));
            return result.sum(-2) + _w.BO;
        }
        return Ops.Affine(z.reshape(z.shape[0], z.shape[1], h * dh), _w.WOFlat, _w.BO);
    }

    /// <summary>
    /// Which keys each query sees: causal (the last <paramref name="qLen"/> of <paramref name="kLen"/> positions), within
    /// the window on local layers (query q sees key k iff q − window &lt; k ≤ q), and only real tokens of the padding mask.
    /// [q, k], or [b, 1, q, k] with a mask.
    /// </summary>
    private Tensor Allowed(long qLen, long kLen, Tensor? mask)
    {
        var allowed = ones(qLen, kLen, dtype: ScalarType.Bool).tril(kLen - qLen);
        if (_window is { } w) allowed = allowed.logical_and(ones(qLen, kLen, dtype: ScalarType.Bool).triu(kLen - qLen - w + 1));
        if (mask is not null)
            allowed = allowed.unsqueeze(0).logical_and(mask.to_type(ScalarType.Bool).unsqueeze(1)).unsqueeze(1);
        return allowed;
    }

    /// <summary>Per-head projection of a [b, p, d] or per-head [b, p, h, d] input to [b, p, h, d_head].</summary>
    private static Tensor Project(Tensor x, Tensor w, Tensor b) =>
        (x.dim() == 4 ? Ops.Einsum("bphd,hde->bphe", x, w) : Ops.Einsum("bpd,hde->bphe", x, w)) + b;
}
