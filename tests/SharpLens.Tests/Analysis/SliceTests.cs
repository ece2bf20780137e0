using SharpLens.Analysis;
using static TorchSharp.torch;

namespace SharpLens.Tests.Analysis;

public sealed class SliceTests
{
    private static long[] Values(Tensor t) => t.to_type(ScalarType.Int64).data<long>().ToArray();

    // Expected values are numpy's np.arange(10)[...] for the same Python index.
    [Theory]
    [InlineData(1L, 5L, null, new long[] { 1, 2, 3, 4 })]              // 1:5
    [InlineData(1L, 8L, 3L, new long[] { 1, 4, 7 })]                  // 1:8:3
    [InlineData(-3L, null, null, new long[] { 7, 8, 9 })]             // -3:
    [InlineData(null, -7L, null, new long[] { 0, 1, 2 })]             // :-7
    [InlineData(null, null, -1L, new long[] { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0 })] // ::-1
    [InlineData(8L, 2L, -2L, new long[] { 8, 6, 4 })]                 // 8:2:-2
    [InlineData(-1L, -4L, -1L, new long[] { 9, 8, 7 })]               // -1:-4:-1
    [InlineData(20L, 30L, null, new long[0])]                         // 20:30
    [InlineData(-20L, 2L, null, new long[] { 0, 1 })]                 // -20:2
    [InlineData(5L, 1L, null, new long[0])]                           // 5:1
    [InlineData(null, null, 4L, new long[] { 0, 4, 8 })]              // ::4
    public void RangesHavePythonSemantics(long? start, long? stop, long? step, long[] expected)
    {
        using var scope = NewDisposeScope();
        var s = Slice.Range(start, stop, step);
        Assert.Equal(SliceMode.Slice, s.Mode);
        Assert.Equal(expected, Values(s.Apply(arange(10))));
        Assert.Equal(expected, s.Indices(10));
    }

    [Fact]
    public void IntsDropTheAxisAndCountFromTheEnd()
    {
        using var scope = NewDisposeScope();
        var m = arange(30).view(10, 3);
        var r = ((Slice)3).Apply(m, 0);
        Assert.Equal([3L], r.shape);
        Assert.Equal([9L, 10, 11], Values(r));
        Assert.Equal([27L, 28, 29], Values(((Slice)(-1)).Apply(m)));
        Assert.Equal([27L, 28, 29], Values(((Slice)(^1)).Apply(m)));
        Assert.Equal([2L, 5, 8, 11, 14, 17, 20, 23, 26, 29], Values(((Slice)(-1)).Apply(m, -1)));
        Assert.Equal([10L], ((Slice)1).Apply(m, 1).shape);
        var e = Assert.Throws<SharpLensException>(() => ((Slice)(-11)).Apply(m));
        Assert.Contains("[-10, 9]", e.Message);
        Assert.Throws<SharpLensException>(() => ((Slice)10).Apply(m));
        Assert.Throws<SharpLensException>(() => ((Slice)0).Apply(m, 2));
    }

    [Fact]
    public void CSharpRangesMapToPythonSlices()
    {
        using var scope = NewDisposeScope();
        var t = arange(10);
        Assert.Equal([1L, 2, 3, 4, 5, 6, 7, 8], Values(((Slice)(1..^1)).Apply(t)));
        Assert.Equal([7L, 8, 9], Values(((Slice)(^3..)).Apply(t)));
        Assert.Equal([0L, 1, 2], Values(((Slice)(..3)).Apply(t)));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), Values(((Slice)(..)).Apply(t)));
        Assert.Empty(Values(((Slice)(^0..)).Apply(t)));
        Assert.Equal("Slice: slice(1, -1, None) Mode: slice ", ((Slice)(1..^1)).ToString());
        Assert.Equal("Slice: slice(None, None, None) Mode: slice ", ((Slice)(..)).ToString());
        Assert.Equal(Slice.Range(-3, null), (Slice)(^3..));
    }

    [Fact]
    public void ListsKeepTheAxis()
    {
        using var scope = NewDisposeScope();
        var m = arange(30).view(10, 3);
        var r = Slice.FromList(1, 4, -1).Apply(m);
        Assert.Equal([3L, 3], r.shape);
        Assert.Equal([3L, 4, 5, 12, 13, 14, 27, 28, 29], Values(r));
        Assert.Equal([2L, 0], Values(Slice.FromList(tensor(new long[] { 2, 0 })).Apply(arange(10))));
        Assert.Equal([1L, 3], Values(Slice.FromList(tensor(new[] { false, true, false, true })).Apply(arange(4))));
        Assert.Equal([10L, 1], Slice.FromList(2).Apply(m, 1).shape);
        Assert.Equal([1L, 4, 9], Slice.FromList(1, 4, -1).Indices(10));
        Assert.Throws<SharpLensException>(() => Slice.FromList(10).Apply(m));
        Assert.Throws<SharpLensException>(() => Slice.FromList(tensor(new[] { 0.5f })));
        Assert.Equal("Slice: [1 4 5] Mode: array ", Slice.FromList(1, 4, 5).ToString());
    }

    [Fact]
    public void AllLeavesTheTensorAlone()
    {
        using var scope = NewDisposeScope();
        var m = arange(30).view(10, 3);
        Assert.Equal(SliceMode.Identity, Slice.All.Mode);
        Assert.Equal(SliceMode.Identity, default(Slice).Mode);
        var r = Slice.All.Apply(m, 1);
        Assert.Equal([10L, 3], r.shape);
        Assert.Equal(Values(m), Values(r));
        Assert.Equal([0L, 1, 2, 3], Slice.All.Indices(4));
        Assert.Equal("Slice: slice(None, None, None) Mode: identity ", Slice.All.ToString());
    }

    [Fact]
    public void IndicesAndReprMatchTransformerLens()
    {
        // TL returns an int slice's index as given (np.array([-1])), even with max_ctx.
        Assert.Equal([-1L], ((Slice)(-1)).Indices(10));
        Assert.Equal([3L], ((Slice)3).Indices());
        Assert.Throws<SharpLensException>(() => Slice.Range(1, 3).Indices());
        Assert.Equal("Slice: -1 Mode: int ", ((Slice)(-1)).ToString());
        Assert.Equal("Slice: slice(1, 5, None) Mode: slice ", Slice.Range(1, 5).ToString());
        Assert.Equal("Slice: slice(1, 8, 3) Mode: slice ", Slice.Range(1, 8, 3).ToString());
        Assert.Equal("Slice: slice(None, 4, None) Mode: slice ", Slice.Prefix(4).ToString());
        var e = Assert.Throws<SharpLensException>(() => Slice.Range(0, 5, 0));
        Assert.Contains("zero", e.Message);
    }

    [Fact]
    public void UnwrapKeepsAnIntsAxis()
    {
        using var scope = NewDisposeScope();
        var m = arange(30).view(10, 3);
        var u = Slice.Unwrap(-1);
        Assert.Equal(SliceMode.Array, u.Mode);
        Assert.Equal([1L, 3], u.Apply(m).shape);
        Assert.Equal(Slice.Range(1, 3), Slice.Unwrap(Slice.Range(1, 3)));
    }
}
