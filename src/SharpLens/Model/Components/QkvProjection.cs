using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// The q/k/v projection of one attention layer from a shared [batch, pos, d_model] input to [batch, pos, heads, d_head]
/// (k and v with the key/value heads). Which layout it multiplies with is chosen once, when the model is built, from
/// how the weights lie in memory — so a checkpoint that needs no conversion is used where it is mapped, never copied:
/// <list type="bullet">
/// <item><see cref="Fused"/>: one [d_model, (h + 2·kv)·d_head] = [q | k | v] matrix, one GEMM (GPT-2's <c>c_attn</c>,
/// Phi-3's <c>qkv_proj</c>, a weights-cache file, or weights the loader computed and fused).</item>
/// <item><see cref="Separate"/>: three GEMMs on the checkpoint's own <c>q_proj</c>/<c>k_proj</c>/<c>v_proj</c> matrices,
/// used transposed (the GEMM reads an [out, in] matrix as [in, out] by its strides, without a copy).</item>
/// <item><see cref="Interleaved"/>: GPT-NeoX's <c>query_key_value</c>, rows ordered (head, [q|k|v], d_head): one GEMM,
/// then q, k, v are views of its output.</item>
/// </list>
/// All three compute the same dot products; only the GEMM shapes differ.
/// </summary>
internal abstract class QkvProjection
{
    private protected QkvProjection(long heads, long kvHeads, long dHead) { H = heads; Kv = kvHeads; Dh = dHead; }

    private protected long H { get; }
    private protected long Kv { get; }
    private protected long Dh { get; }

    /// <summary>Which layout: <c>fused</c>, <c>separate</c> or <c>interleaved</c> (for reports and tests).</summary>
    public abstract string Kind { get; }

    /// <summary>The weight matrices the forward pass multiplies with (views of the parameters' storage).</summary>
    public abstract IReadOnlyList<Tensor> Matrices { get; }

    /// <summary>q [b, p, h, dh], k and v [b, p, kv, dh] from <paramref name="x"/> [b, p, d_model].</summary>
    public abstract (Tensor Q, Tensor K, Tensor V) Forward(Tensor x);

    /// <summary>
    /// The fused [d_model, (h + 2·kv)·d_head] matrix and bias as a weights-cache file stores them: this projection's own
    /// tensors for <see cref="Fused"/>, new tensors in the caller's dispose scope otherwise.
    /// </summary>
    public abstract (Tensor W, Tensor B) FusedWeights();

    /// <summary>One GEMM with <paramref name="w"/> [d, (h + 2·kv)·dh] and <paramref name="b"/> [(h + 2·kv)·dh].</summary>
    public static QkvProjection Fused(Tensor w, Tensor b, long heads, long kvHeads, long dHead) => new FusedQkv(w, b, heads, kvHeads, dHead);

    /// <summary>Three GEMMs with [d, n] matrices (any strides a GEMM takes directly) and [n] biases.</summary>
    public static QkvProjection Separate(Tensor wq, Tensor wk, Tensor wv, Tensor bq, Tensor bk, Tensor bv, long heads, long kvHeads, long dHead) =>
        new SeparateQkv(wq, wk, wv, bq, bk, bv, heads, kvHeads, dHead);

    /// <summary>One GEMM with <paramref name="w"/> [d, h·3·dh] and <paramref name="b"/> [h·3·dh], columns ordered (head, [q|k|v], d_head).</summary>
    public static QkvProjection Interleaved(Tensor w, Tensor b, long heads, long dHead) => new InterleavedQkv(w, b, heads, dHead);

    /// <summary>
    /// A head-major parameter [heads, d_model, d_head] as the [d_model, heads·d_head] matrix a GEMM multiplies with,
    /// when that is a view whose strides the GEMM takes without copying (row-major, or an nn.Linear [out, in] matrix
    /// transposed); else null.
    /// </summary>
    public static Tensor? AsMatrix(Tensor w)
    {
        long heads = w.shape[0], d = w.shape[1], dh = w.shape[2];
        var s = w.stride();
        long n = heads * dh;
        if (s[1] == 1 && s[2] == d && s[0] == dh * d) return w.as_strided([d, n], [1, d], w.storage_offset()); // Linear weightᵀ
        if (s[2] == 1 && s[0] == dh && s[1] == n) return w.as_strided([d, n], [n, 1], w.storage_offset());     // [d, h·dh] row-major
        return null;
    }

    private sealed class FusedQkv(Tensor w, Tensor b, long heads, long kvHeads, long dHead) : QkvProjection(heads, kvHeads, dHead)
    {
        public override string Kind => "fused";
        public override IReadOnlyList<Tensor> Matrices => [w];

        public override (Tensor Q, Tensor K, Tensor V) Forward(Tensor x)
        {
            var qkv = Ops.Affine(x, w, b);
            long bs = x.shape[0], p = x.shape[1];
            return (qkv.narrow(-1, 0, H * Dh).view(bs, p, H, Dh),
                qkv.narrow(-1, H * Dh, Kv * Dh).view(bs, p, Kv, Dh),
                qkv.narrow(-1, (H + Kv) * Dh, Kv * Dh).view(bs, p, Kv, Dh));
        }

        public override (Tensor W, Tensor B) FusedWeights() => (w, b);
    }

    private sealed class SeparateQkv(Tensor wq, Tensor wk, Tensor wv, Tensor bq, Tensor bk, Tensor bv, long heads, long kvHeads, long dHead)
        : QkvProjection(heads, kvHeads, dHead)
    {
        public override string Kind => "separate";
        public override IReadOnlyList<Tensor> Matrices => [wq, wk, wv];

        public override (Tensor Q, Tensor K, Tensor V) Forward(Tensor x)
        {
            long bs = x.shape[0], p = x.shape[1];
            return (Ops.Affine(x, wq, bq).view(bs, p, H, Dh), Ops.Affine(x, wk, bk).view(bs, p, Kv, Dh), Ops.Affine(x, wv, bv).view(bs, p, Kv, Dh));
        }

        public override (Tensor W, Tensor B) FusedWeights() => (cat([wq, wk, wv], 1), cat([bq, bk, bv], 0));
    }

    private sealed class InterleavedQkv(Tensor w, Tensor b, long heads, long dHead) : QkvProjection(heads, heads, dHead)
    {
        public override string Kind => "interleaved";
        public override IReadOnlyList<Tensor> Matrices => [w];

        public override (Tensor Q, Tensor K, Tensor V) Forward(Tensor x)
        {
            var qkv = Ops.Affine(x, w, b).view(x.shape[0], x.shape[1], H, 3, Dh);
            return (qkv.select(3, 0), qkv.select(3, 1), qkv.select(3, 2));
        }

        public override (Tensor W, Tensor B) FusedWeights()
        {
            long d = w.shape[0];
            var wf = w.view(d, H, 3, Dh).permute(0, 2, 1, 3).reshape(d, 3 * H * Dh);
            return (wf, b.view(H, 3, Dh).transpose(0, 1).reshape(-1));
        }
    }
}
