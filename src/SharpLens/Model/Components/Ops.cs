using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>Small tensor helpers shared by the components.</summary>
internal static class Ops
{
    /// <summary>
    /// <c>x @ w + b</c> over the last axis of <paramref name="x"/>, as one GEMM (addmm) on a 2-D view. The result has
    /// <paramref name="x"/>'s dtype; bfloat16/float16 products accumulate in float32 either way (see <see cref="HalfGemm"/>).
    /// </summary>
    public static Tensor Affine(Tensor x, Tensor w, Tensor? b)
    {
        if (x.dtype == ScalarType.Float32 || HalfGemm.Native(x.dtype)) return AffineRaw(x, w, b);
        return AffineRaw(Up(x), Up(w), b is null ? null : Up(b)).to_type(x.dtype);
    }

    /// <summary>Widened weights above this many elements are converted a column block at a time (the unembedding).</summary>
    internal const long WidenBlockElements = 1L << 22;

    /// <summary>
    /// <see cref="Affine"/> with a float32 result (the logits): no rounding to bfloat16/float16 on the way out. A large
    /// half weight (W_U: 321 MB in float32 for GPT-2-XL) is widened a block of columns at a time, so the extra memory is
    /// one block (16 MB) rather than a float32 copy of the matrix.
    /// </summary>
    public static Tensor AffineFloat32(Tensor x, Tensor w, Tensor? b)
    {
        if (x.dtype == ScalarType.Float32) return AffineRaw(x, w, b);
        if (HalfGemm.Native(x.dtype)) return AffineRaw(x, w, b).to_type(ScalarType.Float32);
        if (w.numel() <= WidenBlockElements) return AffineRaw(Up(x), Up(w), b is null ? null : Up(b));
        var shape = x.shape;
        var x2 = Up(x.reshape(-1, shape[^1]));
        long n = w.shape[1], block = Math.Max(1, WidenBlockElements / w.shape[0]);
        var y = empty([x2.shape[0], n], dtype: ScalarType.Float32);
        for (long c = 0; c < n; c += block)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(block, n - c);
            var part = x2.matmul(w.narrow(1, c, len).to_type(ScalarType.Float32));
            if (b is not null) part.add_(b.narrow(0, c, len).to_type(ScalarType.Float32));
            y.narrow(1, c, len).copy_(part);
        }
        shape[^1] = n;
        return y.view(shape);
    }

    /// <summary>Batched <c>a @ b</c> in <paramref name="a"/>'s dtype, float32 accumulation for half types.</summary>
    public static Tensor MatMul(Tensor a, Tensor b) =>
        a.dtype == ScalarType.Float32 || HalfGemm.Native(a.dtype) ? a.matmul(b) : Up(a).matmul(Up(b)).to_type(a.dtype);

    /// <summary>A two-operand einsum in <paramref name="a"/>'s dtype, float32 accumulation for half types.</summary>
    public static Tensor Einsum(string equation, Tensor a, Tensor b) =>
        a.dtype == ScalarType.Float32 || HalfGemm.Native(a.dtype) ? einsum(equation, a, b) : einsum(equation, Up(a), Up(b)).to_type(a.dtype);

    /// <summary>The tensor in float32 (itself when it already is).</summary>
    public static Tensor Up(Tensor t) => t.dtype == ScalarType.Float32 ? t : t.to_type(ScalarType.Float32);

    /// <summary>Whether <paramref name="dtype"/> is bfloat16 or float16 (computed with float32 islands).</summary>
    public static bool IsHalf(ScalarType dtype) => dtype is ScalarType.BFloat16 or ScalarType.Float16;

    private static Tensor AffineRaw(Tensor x, Tensor w, Tensor? b)
    {
        var shape = x.shape;
        var x2 = x.reshape(-1, shape[^1]);
        var y = b is null ? x2.matmul(w) : addmm(b, x2, w, 1.0f, 1.0f);
        shape[^1] = w.shape[^1];
        return y.view(shape);
    }

    /// <summary>Registers a parameter-derived tensor with the model, not with the caller's dispose scope.</summary>
    public static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();
}
