using System.Globalization;
using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>
/// TransformerLens's <c>FactoredMatrix</c>: the matrix <c>AB</c> kept as its two factors A [..., ldim, mdim] and
/// B [..., mdim, rdim], so that products, SVD, eigenvalues and norms are computed cheaply through the small inner
/// dimension. Leading (batch) dims of A and B broadcast, e.g. [n_layers, n_heads, d_model, d_head] for all OV circuits.
/// </summary>
/// <remarks>
/// <para><b>Ownership.</b> The constructor does not copy and does not take ownership: it makes its own broadcast
/// views of the tensors you pass (sharing their storage), so you may dispose your tensors at any time. Like TL, the
/// matrix therefore sees in-place changes to them. <see cref="Dispose"/> releases the views and the cached SVD.</para>
/// <para>The tensors exposed by <see cref="A"/>, <see cref="B"/>, <see cref="Pair"/>, <see cref="U"/>, <see cref="S"/>,
/// <see cref="Vh"/> and <see cref="Svd"/> belong to the matrix: do not dispose them; they live until the matrix is
/// disposed. Every other tensor returned (<see cref="AB"/>, <see cref="BA"/>, <see cref="Eigenvalues"/>,
/// <see cref="Norm"/>, products, collapses, corners) is new and owned by the caller (or the caller's dispose scope).
/// Every <see cref="FactoredMatrix"/> returned is new and must be disposed by the caller. Not thread-safe.</para>
/// </remarks>
public sealed class FactoredMatrix : IDisposable
{
    private readonly Tensor _a, _b;
    private readonly long[] _shape;
    private (Tensor U, Tensor S, Tensor Vh)? _svd;
    private bool _disposed;

    /// <summary>
    /// Represents <c>A @ B</c>. A is [..., ldim, mdim], B is [..., mdim, rdim]; their leading dims must broadcast.
    /// The inputs are neither copied nor owned (see the class remarks).
    /// </summary>
    public FactoredMatrix(Tensor a, Tensor b)
    {
        if (a.dim() < 2 || b.dim() < 2)
            throw new SharpLensException($"FactoredMatrix factors must have at least 2 dims (A [..., ldim, mdim], B [..., mdim, rdim]); shapes were A {Fmt(a.shape)}, B {Fmt(b.shape)}.");
        if (a.shape[^1] != b.shape[^2])
            throw new SharpLensException($"Factored matrix must match on inner dimension, shapes were A {Fmt(a.shape)}, B {Fmt(b.shape)}.");
        var lead = BroadcastLeading(a.shape, b.shape);
        Ldim = a.shape[^2]; Mdim = a.shape[^1]; Rdim = b.shape[^1];
        _shape = [.. lead, Ldim, Rdim];
        // Views, detached from any dispose scope: the matrix owns these handles, the caller keeps its own tensors.
        _a = a.broadcast_to([.. lead, Ldim, Mdim]).DetachFromDisposeScope();
        _b = b.broadcast_to([.. lead, Mdim, Rdim]).DetachFromDisposeScope();
    }

    /// <summary>Left factor [..., ldim, mdim] (broadcast to the full leading shape; owned by the matrix).</summary>
    public Tensor A { get { Live(); return _a; } }

    /// <summary>Right factor [..., mdim, rdim] (broadcast to the full leading shape; owned by the matrix).</summary>
    public Tensor B { get { Live(); return _b; } }

    /// <summary>(A, B), as TL's <c>pair</c> (owned by the matrix).</summary>
    public (Tensor A, Tensor B) Pair => (A, B);

    /// <summary>Rows of the represented matrix.</summary>
    public long Ldim { get; }

    /// <summary>Inner (hidden) dimension of the factorisation.</summary>
    public long Mdim { get; }

    /// <summary>Columns of the represented matrix.</summary>
    public long Rdim { get; }

    /// <summary>Shape of <c>AB</c>: broadcast leading dims + [ldim, rdim] (a copy).</summary>
    public long[] Shape => (long[])_shape.Clone();

    /// <summary>Number of dims of <c>AB</c>.</summary>
    public int Ndim => _shape.Length;

    /// <summary>The product <c>A @ B</c> [..., ldim, rdim], materialised (new tensor; can be large).</summary>
    public Tensor AB { get { Live(); return _a.matmul(_b); } }

    /// <summary>The reverse product <c>B @ A</c> [..., mdim, mdim] (new tensor); needs ldim == rdim.</summary>
    public Tensor BA
    {
        get
        {
            Live();
            if (Ldim != Rdim) throw new SharpLensException($"BA needs ldim == rdim (a square matrix); the shape is {Fmt(_shape)}.");
            return _b.matmul(_a);
        }
    }

    /// <summary>The transpose, factored as (Bᵀ, Aᵀ) (new matrix).</summary>
    public FactoredMatrix T { get { Live(); return Build(() => (_b.mT, _a.mT)); } }

    /// <summary>
    /// The thin SVD computed from the factors as TL does (SVD of A, SVD of B, then of the small middle matrix):
    /// U [..., ldim, k], S [..., k], Vh [..., rdim, k] with k = min(ldim, mdim, rdim), such that
    /// <c>U @ diag(S) @ Vh.mT == AB</c>. As in TL, <b>Vh is V, not Vᴴ</b> (TL uses <c>torch.svd</c>, which returns V):
    /// transpose it to rebuild the matrix. Computed once and cached; the tensors belong to the matrix.
    /// </summary>
    public (Tensor U, Tensor S, Tensor Vh) Svd()
    {
        Live();
        if (_svd is { } cached) return cached;
        using var scope = NewDisposeScope();
        var (ua, sa, vha) = linalg.svd(_a, fullMatrices: false);
        var (ub, sb, vhb) = linalg.svd(_b, fullMatrices: false);
        // middle = diag(Sa) Vaᵀ Ub diag(Sb): small [ka, kb]; AB = Ua middle Vbᵀ.
        var middle = sa.unsqueeze(-1) * vha.matmul(ub) * sb.unsqueeze(-2);
        var (um, sm, vhm) = linalg.svd(middle, fullMatrices: false);
        var u = ua.matmul(um);
        var v = vhb.mT.matmul(vhm.mT);
        _svd = (u.DetachFromDisposeScope(), sm.DetachFromDisposeScope(), v.DetachFromDisposeScope());
        return _svd.Value;
    }

    /// <summary>Left singular vectors [..., ldim, k] (cached, owned by the matrix).</summary>
    public Tensor U => Svd().U;

    /// <summary>Singular values [..., k], descending (cached, owned by the matrix).</summary>
    public Tensor S => Svd().S;

    /// <summary>Right singular vectors as TL returns them: V [..., rdim, k], not its transpose (cached, owned by the matrix).</summary>
    public Tensor Vh => Svd().Vh;

    /// <summary>
    /// Eigenvalues of <c>AB</c> computed from the small <c>BA</c> [..., mdim, mdim] (complex, new tensor; unsorted, as
    /// <c>torch.linalg.eig</c> returns them). AB has the same non-zero eigenvalues plus ldim - mdim zeros. Needs
    /// ldim == rdim. 16-bit inputs are computed in float32, as in TL.
    /// </summary>
    public Tensor Eigenvalues
    {
        get
        {
            using var scope = NewDisposeScope();
            var ba = BA;
            if (ba.dtype is ScalarType.BFloat16 or ScalarType.Float16) ba = ba.to_type(ScalarType.Float32);
            return linalg.eigvals(ba).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Frobenius norm [...] = sqrt(sum S²) (new tensor).</summary>
    public Tensor Norm()
    {
        using var scope = NewDisposeScope();
        return S.pow(2).sum(-1).sqrt().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TL's <c>__getitem__</c>: indexes the leading dims of both factors with the same slices (ints drop the dim).
    /// With one more index than leading dims the last indexes the rows (ldim), with two more also the columns (rdim);
    /// those keep their dim even for an int, as in TL. Unlike TL (whose <c>-1</c> there selects nothing), a negative
    /// int on the row/column dim selects that row/column. Several index lists are applied one axis at a time (outer
    /// product), unlike torch's paired advanced indexing.
    /// </summary>
    public FactoredMatrix Get(params Slice[] indices)
    {
        Live();
        int lead = Ndim - 2;
        if (indices.Length > Ndim)
            throw new SharpLensException($"{indices.Length} indices are too many for a FactoredMatrix with shape {Fmt(_shape)}; at most {Ndim} are allowed.");
        if (indices.Length <= lead) return Build(() => (Index(_a, indices), Index(_b, indices)));
        var front = indices[..lead];
        var row = KeepDim(indices[lead]);
        if (indices.Length == lead + 1) return Build(() => (Index(_a, [.. front, row]), Index(_b, front)));
        var col = KeepDim(indices[lead + 1]);
        return Build(() => (Index(_a, [.. front, row]), Index(_b, [.. front, Slice.All, col])));
    }

    /// <summary>Same as <see cref="Get"/>: <c>fm[0, 1..3]</c>.</summary>
    public FactoredMatrix this[params Slice[] indices] => Get(indices);

    /// <summary>
    /// <c>this @ other</c> for a matrix (or batch of matrices) <paramref name="other"/> [..., rdim, n]; stays factored.
    /// As in TL: if rdim > mdim the result is (A, B @ other), else (AB, other). For a vector use <see cref="MultiplyVector"/>.
    /// </summary>
    public FactoredMatrix Multiply(Tensor other)
    {
        Live();
        if (other.dim() < 2) throw new SharpLensException($"Multiply needs a matrix [..., rdim = {Rdim}, n]; got shape {Fmt(other.shape)}. Use MultiplyVector for a vector.");
        if (other.shape[^2] != Rdim)
            throw new SharpLensException($"Right matrix must match on inner dimension, shapes were self: {Fmt(_shape)}, other: {Fmt(other.shape)}.");
        return Rdim > Mdim ? Build(() => (_a, _b.matmul(other))) : Build(() => (AB, other));
    }

    /// <summary><c>this @ v</c> for a vector v [rdim]: the product vector [..., ldim] (new tensor), computed as A @ (B @ v).</summary>
    public Tensor MultiplyVector(Tensor v)
    {
        Live();
        if (v.dim() != 1 || v.shape[0] != Rdim) throw new SharpLensException($"MultiplyVector needs a vector [rdim = {Rdim}]; got shape {Fmt(v.shape)}.");
        using var scope = NewDisposeScope();
        return _a.matmul(_b.matmul(v.unsqueeze(-1))).squeeze(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>this @ other</c> for another factored matrix, as TL: <c>(this @ other.A) @ other.B</c>, each step keeping the
    /// result factored through the cheaper inner dimension.
    /// </summary>
    public FactoredMatrix Multiply(FactoredMatrix other)
    {
        using var left = Multiply(other.A);
        return left.Multiply(other.B);
    }

    /// <summary>
    /// <c>other @ this</c> for a matrix (or batch) <paramref name="other"/> [..., n, ldim]; stays factored. As in TL:
    /// if ldim > mdim the result is (other @ A, B), else (other, AB). For a vector use <see cref="LeftMultiplyVector"/>.
    /// </summary>
    public FactoredMatrix LeftMultiply(Tensor other)
    {
        Live();
        if (other.dim() < 2) throw new SharpLensException($"LeftMultiply needs a matrix [..., n, ldim = {Ldim}]; got shape {Fmt(other.shape)}. Use LeftMultiplyVector for a vector.");
        if (other.shape[^1] != Ldim)
            throw new SharpLensException($"Left matrix must match on inner dimension, shapes were self: {Fmt(_shape)}, other: {Fmt(other.shape)}.");
        return Ldim > Mdim ? Build(() => (other.matmul(_a), _b)) : Build(() => (other, AB));
    }

    /// <summary><c>v @ this</c> for a vector v [ldim]: the product vector [..., rdim] (new tensor), computed as (v @ A) @ B.</summary>
    public Tensor LeftMultiplyVector(Tensor v)
    {
        Live();
        if (v.dim() != 1 || v.shape[0] != Ldim) throw new SharpLensException($"LeftMultiplyVector needs a vector [ldim = {Ldim}]; got shape {Fmt(v.shape)}.");
        using var scope = NewDisposeScope();
        return v.unsqueeze(-2).matmul(_a).matmul(_b).squeeze(-2).MoveToOuterDisposeScope();
    }

    /// <summary><c>other @ this</c> for another factored matrix (= <c>other.Multiply(this)</c>).</summary>
    public FactoredMatrix LeftMultiply(FactoredMatrix other) => other.Multiply(this);

    /// <summary>Scalar multiple: (s·A, B), as TL's <c>*</c>.</summary>
    public FactoredMatrix Scale(double scalar) { Live(); return Build(() => (_a * scalar, _b)); }

    /// <summary>Scalar multiple by a one-element tensor: (s·A, B).</summary>
    public FactoredMatrix Scale(Tensor scalar)
    {
        Live();
        if (scalar.numel() != 1)
            throw new SharpLensException($"Tensor must be a scalar for use with * but was of shape {Fmt(scalar.shape)}. For matrix multiplication, use Multiply instead.");
        return Build(() => (_a * scalar, _b));
    }

    /// <summary>Scalar multiple (new matrix).</summary>
    public static FactoredMatrix operator *(FactoredMatrix m, double scalar) => m.Scale(scalar);

    /// <summary>Scalar multiple (new matrix).</summary>
    public static FactoredMatrix operator *(double scalar, FactoredMatrix m) => m.Scale(scalar);

    /// <summary>TL's <c>collapse_l</c>: drops the left orthogonal factor, diag(S) Vᵀ [..., k, rdim] (new tensor).</summary>
    public Tensor Collapse_l()
    {
        using var scope = NewDisposeScope();
        return (S.unsqueeze(-1) * Vh.mT).MoveToOuterDisposeScope();
    }

    /// <summary>TL's <c>collapse_r</c>: drops the right orthogonal factor, U diag(S) [..., ldim, k] (new tensor).</summary>
    public Tensor Collapse_r()
    {
        using var scope = NewDisposeScope();
        return (U * S.unsqueeze(-2)).MoveToOuterDisposeScope();
    }

    /// <summary>TL's <c>make_even</c>: the same matrix factored as (U √S, √S Vᵀ), each half orthogonal and carrying √S (new matrix).</summary>
    public FactoredMatrix MakeEven()
    {
        var (u, s, v) = Svd();
        return Build(() => { var r = s.sqrt(); return (u * r.unsqueeze(-2), r.unsqueeze(-1) * v.mT); });
    }

    /// <summary>Inserts a size-1 leading dim at <paramref name="k"/> in both factors, as TL's <c>unsqueeze</c> (new matrix).</summary>
    public FactoredMatrix Unsqueeze(long k) { Live(); return Build(() => (_a.unsqueeze(k), _b.unsqueeze(k))); }

    /// <summary>
    /// TL's <c>get_corner(k)</c>: <c>A[..., :k, :] @ B[..., :, :k]</c>, then every dim (leading dims too, as TL's
    /// <c>utils.get_corner</c>) cut to its first k entries (new tensor).
    /// </summary>
    public Tensor GetCorner(long k = 3)
    {
        Live();
        using var scope = NewDisposeScope();
        var m = _a.slice(-2, 0, k, 1).matmul(_b.slice(-1, 0, k, 1));
        for (int d = 0; d < m.dim(); d++) m = m.slice(d, 0, k, 1);
        return m.MoveToOuterDisposeScope();
    }

    /// <summary>TL's repr: <c>FactoredMatrix: Shape(torch.Size([2, 3, 4, 5])), Hidden Dim(4)</c>.</summary>
    public override string ToString() => $"FactoredMatrix: Shape(torch.Size({Fmt(_shape)})), Hidden Dim({Mdim})";

    /// <summary>Releases the matrix's views of A and B and its cached SVD.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _a.Dispose(); _b.Dispose();
        if (_svd is { } svd) { svd.U.Dispose(); svd.S.Dispose(); svd.Vh.Dispose(); }
        _svd = null;
    }

    // Builds a new matrix from factors computed in a scratch scope: the new matrix makes its own views, so the
    // temporaries can all go.
    private static FactoredMatrix Build(Func<(Tensor, Tensor)> factors)
    {
        using var scope = NewDisposeScope();
        var (a, b) = factors();
        return new FactoredMatrix(a, b);
    }

    private static Tensor Index(Tensor t, IReadOnlyList<Slice> indices)
    {
        long dim = 0;
        foreach (var s in indices)
        {
            t = s.Apply(t, dim);
            if (s.Mode != SliceMode.Int) dim++;
        }
        return t;
    }

    // TL turns an int on the row/column dim into slice(i, i + 1) so the dim stays; -1 must become slice(-1, None).
    private static Slice KeepDim(Slice s)
    {
        if (s.Mode != SliceMode.Int) return s;
        long i = s.Indices()[0];
        return Slice.Range(i, i == -1 ? null : i + 1);
    }

    // torch.broadcast_shapes of the leading dims (TorchSharp 0.107's own rejects shapes of different lengths).
    private static long[] BroadcastLeading(long[] a, long[] b)
    {
        int n = Math.Max(a.Length, b.Length) - 2;
        var r = new long[n];
        for (int i = 1; i <= n; i++)
        {
            long x = i + 2 <= a.Length ? a[^(i + 2)] : 1, y = i + 2 <= b.Length ? b[^(i + 2)] : 1;
            if (x != y && x != 1 && y != 1)
                throw new SharpLensException($"Shape mismatch: cannot broadcast the leading dimensions of A {Fmt(a)} and B {Fmt(b)} (sizes {x} and {y} at leading dim {n - i}).");
            r[n - i] = x == 1 ? y : x;
        }
        return r;
    }

    private void Live() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static string Fmt(long[] shape) => "[" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
}
