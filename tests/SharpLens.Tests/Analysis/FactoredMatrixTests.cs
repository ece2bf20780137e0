using SharpLens.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Analysis;

public sealed class FactoredMatrixTests
{
    // Fixed seed per test (own generator, so parallel tests cannot disturb it).
    private static Tensor Rand(Generator g, params long[] shape) => randn(shape, generator: g);

    private static void Close(Tensor expected, Tensor actual, string what) => Golden.AssertClose(expected, actual, what, 1e-4);

    [Fact]
    public void ProductTransposeAndShape()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        var a = Rand(g, 6, 4);
        var b = Rand(g, 4, 5);
        using var fm = new FactoredMatrix(a, b);
        Assert.Equal([6L, 5], fm.Shape);
        Assert.Equal((6L, 4L, 5L), (fm.Ldim, fm.Mdim, fm.Rdim));
        Assert.Equal(2, fm.Ndim);
        Close(a.matmul(b), fm.AB, "AB");
        using var t = fm.T;
        Assert.Equal([5L, 6], t.Shape);
        Close(a.matmul(b).mT, t.AB, "T");
        Assert.Equal("FactoredMatrix: Shape(torch.Size([6, 5])), Hidden Dim(4)", fm.ToString());
        Assert.Same(fm.A, fm.Pair.A);
        var e = Assert.Throws<SharpLensException>(() => fm.BA);
        Assert.Contains("ldim == rdim", e.Message);
    }

    [Fact]
    public void BatchedSvdNormAndBA()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(2);
        var a = Rand(g, 2, 3, 7, 4);
        var b = Rand(g, 2, 3, 4, 7);
        using var fm = new FactoredMatrix(a, b);
        var ab = a.matmul(b);
        Close(ab, fm.AB, "AB");
        Close(b.matmul(a), fm.BA, "BA");
        var (u, s, v) = fm.Svd();
        Assert.Equal([2L, 3, 7, 4], u.shape);
        Assert.Equal([2L, 3, 4], s.shape);
        Assert.Equal([2L, 3, 7, 4], v.shape);   // TL's "Vh" is V [rdim, k]
        Close(ab, u.matmul(diag_embed(s)).matmul(v.mT), "U diag(S) Vh^T");
        Close(linalg.svdvals(ab)[TensorIndex.Ellipsis, TensorIndex.Slice(0, 4)], s, "S vs svdvals(AB)");
        Close(eye(4).expand(2, 3, 4, 4), u.mT.matmul(u), "U orthonormal");
        Close(eye(4).expand(2, 3, 4, 4), v.mT.matmul(v), "V orthonormal");
        Assert.Same(s, fm.S);                   // cached, as TL's lru_cache
        Close(linalg.matrix_norm(ab), fm.Norm(), "Frobenius norm");
        Close(ab, fm.U.matmul(fm.Collapse_l()), "U @ collapse_l");
        Close(ab, fm.Collapse_r().matmul(fm.Vh.mT), "collapse_r @ Vh^T");
        using var even = fm.MakeEven();
        Close(ab, even.AB, "make_even");
        Close(even.A.pow(2).sum([-2, -1]), even.B.pow(2).sum([-2, -1]), "make_even halves carry equal weight");
    }

    [Fact]
    public void SvdWhenTheInnerDimIsLargest()
    {
        // mdim > ldim, rdim: k = min(ldim, mdim, rdim) singular values.
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var a = Rand(g, 3, 8);
        var b = Rand(g, 8, 5);
        using var fm = new FactoredMatrix(a, b);
        var ab = a.matmul(b);
        Assert.Equal([3L], fm.S.shape);
        Close(linalg.svdvals(ab), fm.S, "S");
        Close(ab, fm.U.matmul(diag_embed(fm.S)).matmul(fm.Vh.mT), "reconstruction");
        Close(linalg.matrix_norm(ab), fm.Norm(), "norm");
    }

    [Fact]
    public void EigenvaluesAreThoseOfAB()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(4);
        var a = Rand(g, 2, 3, 6, 3).to_type(ScalarType.Float64);
        var b = Rand(g, 2, 3, 3, 6).to_type(ScalarType.Float64);
        using var fm = new FactoredMatrix(a, b);
        var ev = fm.Eigenvalues;                             // [2, 3, 3] complex
        Assert.Equal([2L, 3, 3], ev.shape);
        Assert.True(ev.is_complex());
        var full = linalg.eigvals(a.matmul(b));              // [2, 3, 6]: the same 3 plus 3 zeros
        var dist = (ev.unsqueeze(-1) - full.unsqueeze(-2)).abs();
        double scale = full.abs().max().item<double>();
        Assert.True(dist.min(-1).values.max().item<double>() < 1e-6 * scale, "each eigenvalue of BA is one of AB");
        // The 3 largest-magnitude eigenvalues of AB are each found in BA's, the rest are ~0.
        var sorted = full.abs().sort(-1, descending: true).Values;
        Close(ev.abs().sort(-1, descending: true).Values, sorted[TensorIndex.Ellipsis, TensorIndex.Slice(0, 3)], "|eigenvalues|");
        Assert.True(sorted[TensorIndex.Ellipsis, TensorIndex.Slice(3, null)].max().item<double>() < 1e-9 * scale);
        var back = (full.unsqueeze(-1) - ev.unsqueeze(-2)).abs().min(-1).values;   // [2,3,6]
        var top = full.abs() > 1e-6 * scale;
        Assert.True(back.masked_select(top).max().item<double>() < 1e-6 * scale, "each non-zero eigenvalue of AB is one of BA");
    }

    [Fact]
    public void LeadingDimsBroadcast()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var a = Rand(g, 2, 1, 6, 4);
        var b = Rand(g, 3, 4, 5);
        using var fm = new FactoredMatrix(a, b);
        Assert.Equal([2L, 3, 6, 5], fm.Shape);
        Assert.Equal([2L, 3, 6, 4], fm.A.shape);
        Close(a.matmul(b), fm.AB, "broadcast AB");
        var e = Assert.Throws<SharpLensException>(() => new FactoredMatrix(Rand(g, 2, 6, 4), Rand(g, 3, 4, 5)));
        Assert.Contains("broadcast", e.Message);
        e = Assert.Throws<SharpLensException>(() => new FactoredMatrix(Rand(g, 6, 4), Rand(g, 3, 5)));
        Assert.Contains("inner dimension", e.Message);
        Assert.Throws<SharpLensException>(() => new FactoredMatrix(Rand(g, 4), Rand(g, 4, 5)));
    }

    [Fact]
    public void ProductsWithTensorsFollowTransformerLensFactoring()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(6);
        var a = Rand(g, 2, 3, 6, 4);
        var b = Rand(g, 2, 3, 4, 5);
        using var fm = new FactoredMatrix(a, b);
        var ab = a.matmul(b);

        // rdim 5 > mdim 4: (A, B @ other) keeps mdim 4.
        var right = Rand(g, 5, 7);
        using (var p = fm.Multiply(right)) { Assert.Equal(4, p.Mdim); Assert.Equal([2L, 3, 6, 7], p.Shape); Close(ab.matmul(right), p.AB, "fm @ M"); }
        // rdim 3 <= mdim 4: (AB, other), mdim becomes rdim.
        var a2 = Rand(g, 6, 4);
        var b2 = Rand(g, 4, 3);
        using (var small = new FactoredMatrix(a2, b2))
        using (var p = small.Multiply(Rand(g, 3, 2))) { Assert.Equal(3, p.Mdim); Close(a2.matmul(b2).matmul(p.B), p.AB, "fm @ M (small rdim)"); }

        // ldim 6 > mdim 4: (other @ A, B).
        var left = Rand(g, 8, 6);
        using (var p = fm.LeftMultiply(left)) { Assert.Equal(4, p.Mdim); Assert.Equal([2L, 3, 8, 5], p.Shape); Close(left.matmul(ab), p.AB, "M @ fm"); }
        var a3 = Rand(g, 3, 4);
        var b3 = Rand(g, 4, 5);
        using (var small = new FactoredMatrix(a3, b3))
        {
            var l = Rand(g, 2, 3);
            using var p = small.LeftMultiply(l);
            Assert.Equal(3, p.Mdim);
            Close(l.matmul(a3).matmul(b3), p.AB, "M @ fm (small ldim)");
        }

        var v = Rand(g, 5);
        Close(ab.matmul(v), fm.MultiplyVector(v), "fm @ v");
        var w = Rand(g, 6);
        Close(w.matmul(ab), fm.LeftMultiplyVector(w), "w @ fm");

        Assert.Contains("MultiplyVector", Assert.Throws<SharpLensException>(() => fm.Multiply(v)).Message);
        Assert.Contains("inner dimension", Assert.Throws<SharpLensException>(() => fm.Multiply(Rand(g, 4, 2))).Message);
        Assert.Contains("inner dimension", Assert.Throws<SharpLensException>(() => fm.LeftMultiply(Rand(g, 2, 5))).Message);
        Assert.Throws<SharpLensException>(() => fm.MultiplyVector(w));
    }

    [Fact]
    public void ProductOfFactoredMatrices()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        // An OV-times-QK-like chain: [2,3] heads, d_model 8, d_head 2.
        var a1 = Rand(g, 2, 3, 8, 2); var b1 = Rand(g, 2, 3, 2, 8);
        var a2 = Rand(g, 8, 2); var b2 = Rand(g, 2, 6);
        using var f1 = new FactoredMatrix(a1, b1);
        using var f2 = new FactoredMatrix(a2, b2);
        using var p = f1.Multiply(f2);
        Assert.Equal([2L, 3, 8, 6], p.Shape);
        Assert.Equal(2, p.Mdim);   // stays low-rank: (A1, B1 A2 B2)
        Close(a1.matmul(b1).matmul(a2.matmul(b2)), p.AB, "f1 @ f2");
        using var f1t = f1.T;
        using var head = f1t.Get(0, 0);
        using var headT = head.T;                       // = f1[0, 0]
        using var q = f2.LeftMultiply(headT);           // f1[0, 0] @ f2
        Assert.Equal([8L, 6], q.Shape);
        Close(a1[0, 0].matmul(b1[0, 0]).matmul(a2.matmul(b2)), q.AB, "left product");
    }

    [Fact]
    public void IndexingLeadingAndMatrixDims()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(8);
        var a = Rand(g, 2, 3, 6, 4);
        var b = Rand(g, 2, 3, 4, 5);
        using var fm = new FactoredMatrix(a, b);
        var ab = a.matmul(b);
        using (var x = fm[1]) { Assert.Equal([3L, 6, 5], x.Shape); Close(ab[1], x.AB, "fm[1]"); }
        using (var x = fm[-1, 1..3]) { Assert.Equal([2L, 6, 5], x.Shape); Close(ab[1, TensorIndex.Slice(1, 3)], x.AB, "fm[-1, 1:3]"); }
        using (var x = fm[^1, ^1]) { Assert.Equal([6L, 5], x.Shape); Close(ab[1, 2], x.AB, "fm[-1, -1]"); }
        using (var x = fm[Slice.All, Slice.FromList(2, 0)]) { Assert.Equal([2L, 2, 6, 5], x.Shape); Close(ab.index_select(1, tensor(new long[] { 2, 0 })), x.AB, "fm[:, [2, 0]]"); }
        // One more index reaches the rows; an int there keeps the dim (TL's slice(i, i + 1)).
        using (var x = fm[0, 2, 1]) { Assert.Equal([1L, 5], x.Shape); Close(ab[0, 2, TensorIndex.Slice(1, 2)], x.AB, "fm[0, 2, 1]"); }
        using (var x = fm[0, 2, 1..4]) { Assert.Equal([3L, 5], x.Shape); Close(ab[0, 2, TensorIndex.Slice(1, 4)], x.AB, "fm[0, 2, 1:4]"); }
        using (var x = fm[0, 2, -1]) { Assert.Equal([1L, 5], x.Shape); Close(ab[0, 2, TensorIndex.Slice(5, 6)], x.AB, "fm[0, 2, -1]"); }
        // Two more reach the columns too.
        using (var x = fm[0, 2, 1..4, -1]) { Assert.Equal([3L, 1], x.Shape); Close(ab[0, 2, TensorIndex.Slice(1, 4), TensorIndex.Slice(4, 5)], x.AB, "fm[0, 2, 1:4, -1]"); }
        using (var x = fm[1, .., 2, 0..2]) { Assert.Equal([3L, 1, 2], x.Shape); Close(ab[1, TensorIndex.Colon, TensorIndex.Slice(2, 3), TensorIndex.Slice(0, 2)], x.AB, "fm[1, :, 2, 0:2]"); }
        using (var x = fm.Get()) Close(ab, x.AB, "fm[()]");
        Assert.Contains("too many", Assert.Throws<SharpLensException>(() => fm[0, 0, 0, 0, 0]).Message);
    }

    [Fact]
    public void CornerScalarAndUnsqueeze()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        var a = Rand(g, 5, 6, 4);
        var b = Rand(g, 5, 4, 7);
        using var fm = new FactoredMatrix(a, b);
        var ab = a.matmul(b);
        // TL's get_corner cuts every dim, leading ones included.
        Close(ab[TensorIndex.Slice(0, 3), TensorIndex.Slice(0, 3), TensorIndex.Slice(0, 3)], fm.GetCorner(), "corner 3");
        Close(ab[TensorIndex.Slice(0, 2), TensorIndex.Slice(0, 2), TensorIndex.Slice(0, 2)], fm.GetCorner(2), "corner 2");
        using (var x = fm * 2.5) Close(ab * 2.5, x.AB, "fm * 2.5");
        using (var x = -0.5 * fm) Close(ab * -0.5, x.AB, "-0.5 * fm");
        using (var x = fm.Scale(tensor(3.0f))) Close(ab * 3, x.AB, "fm * tensor(3)");
        Assert.Contains("scalar", Assert.Throws<SharpLensException>(() => fm.Scale(ones(2))).Message);
        using (var x = fm.Unsqueeze(0)) { Assert.Equal([1L, 5, 6, 7], x.Shape); Close(ab.unsqueeze(0), x.AB, "unsqueeze(0)"); }
        using (var x = fm.Unsqueeze(1)) Assert.Equal([5L, 1, 6, 7], x.Shape);
    }

    [Fact]
    public void OwnershipAndDisposal()
    {
        var g = new Generator(10);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Tensor ab;
        FactoredMatrix fm;
        using (var scope = NewDisposeScope())
        {
            var a = Rand(g, 2, 6, 4);
            var b = Rand(g, 2, 4, 6);
            ab = a.matmul(b).MoveToOuterDisposeScope();
            fm = new FactoredMatrix(a, b);
            _ = fm.S;  // cache the SVD inside the scope: it must survive the scope
        }   // the caller's a and b are gone; the matrix keeps its own views
        using (var scope = NewDisposeScope())
        {
            Close(ab, fm.AB, "AB after the inputs were disposed");
            Close(linalg.svdvals(ab)[TensorIndex.Ellipsis, TensorIndex.Slice(0, 4)], fm.S, "cached S after the scope");
        }
        using (var scope = NewDisposeScope()) { using var t = fm.T; using var p = fm.Multiply(fm); _ = fm.Eigenvalues; using var x = fm[0, 1..3, 2]; }
        fm.Dispose();
        fm.Dispose();   // idempotent
        Assert.Throws<ObjectDisposedException>(() => fm.AB);
        Assert.Throws<ObjectDisposedException>(() => fm.A);
        ab.Dispose();
        GC.Collect(); GC.WaitForPendingFinalizers();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
