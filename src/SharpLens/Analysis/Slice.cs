using System.Globalization;
using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>Which of TransformerLens's four <c>Slice</c> modes a <see cref="Slice"/> is in.</summary>
public enum SliceMode
{
    /// <summary>Everything (TL's <c>Slice(None)</c>, "identity"): the axis is left unchanged.</summary>
    Identity,
    /// <summary>One integer index (TL "int"): the axis is dropped, like <c>t[i]</c> in Python.</summary>
    Int,
    /// <summary>A Python slice <c>start:stop:step</c> (TL "slice"): the axis is kept.</summary>
    Slice,
    /// <summary>A list of indices (TL "array"): the axis is kept, with one entry per index.</summary>
    Array,
}

/// <summary>
/// TransformerLens's <c>utils.Slice</c>: one indexing operation on one axis, with Python semantics. An int drops the axis
/// (negative ints count from the end), a <c>start:stop:step</c> range keeps it (negatives, omitted bounds and negative
/// steps as in Python), an index list keeps it (negative entries count from the end) and <see cref="All"/> leaves the
/// axis alone. Converts implicitly from <see cref="int"/>, <see cref="Index"/> (<c>^1</c> = -1) and <see cref="Range"/>
/// (<c>1..^1</c> = Python <c>1:-1</c>).
/// </summary>
public readonly struct Slice : IEquatable<Slice>
{
    private readonly long _index;            // Int mode
    private readonly long? _start, _stop;    // Slice mode; null = Python None
    private readonly long? _stepRaw;         // Slice mode; null = None (= 1), never 0
    private readonly long[]? _list;          // Array mode (private copy)

    private Slice(SliceMode mode, long index = 0, long? start = null, long? stop = null, long? step = null, long[]? list = null)
    {
        Mode = mode; _index = index; _start = start; _stop = stop; _stepRaw = step; _list = list;
    }

    private long StepValue => _stepRaw ?? 1;

    /// <summary>The mode (default(Slice) is <see cref="SliceMode.Identity"/>).</summary>
    public SliceMode Mode { get; }

    /// <summary>Everything along the axis (TL's <c>Slice(None)</c>; not a new axis).</summary>
    public static Slice All => default;

    /// <summary>One index, dropping the axis (TL's <c>Slice(i)</c>); negative counts from the end.</summary>
    public static Slice At(long index) => new(SliceMode.Int, index: index);

    /// <summary>The Python slice <c>start:stop:step</c> (TL's <c>Slice((start, stop, step))</c>); null bounds mean None.</summary>
    public static Slice Range(long? start, long? stop, long? step = null)
    {
        if (step == 0) throw new SharpLensException("Slice step cannot be zero (as in Python); use a positive or negative step.");
        return new(SliceMode.Slice, start: start, stop: stop, step: step);
    }

    /// <summary>The Python slice <c>:stop</c> (TL's one-element tuple form <c>Slice((k,))</c>).</summary>
    public static Slice Prefix(long stop) => Range(null, stop);

    /// <summary>The listed indices, keeping the axis (TL's <c>Slice([i, j, ...])</c>); negatives count from the end.</summary>
    public static Slice FromList(params long[] indices) => new(SliceMode.Array, list: (long[])indices.Clone());

    /// <summary>The listed indices, keeping the axis.</summary>
    public static Slice FromList(params int[] indices) => new(SliceMode.Array, list: indices.Select(i => (long)i).ToArray());

    /// <summary>
    /// The indices held in a tensor (TL's <c>Slice(tensor)</c>): a 1-D (or 0-D) integer tensor of indices, or a 1-D
    /// boolean mask (its true positions). The values are copied; the tensor is not kept.
    /// </summary>
    public static Slice FromList(Tensor indices)
    {
        if (indices.dtype == ScalarType.Bool)
        {
            if (indices.dim() != 1) throw new SharpLensException($"A boolean mask slice must be 1-D; got shape {TensorExtensions.ShapeText(indices.shape)}.");
            using var nz = indices.nonzero().flatten().cpu();
            return new(SliceMode.Array, list: nz.data<long>().ToArray());
        }
        if (!is_integral(indices.dtype) || indices.dim() > 1)
            throw new SharpLensException($"An index slice needs a 1-D integer (or boolean mask) tensor; got {indices.dtype} of shape {TensorExtensions.ShapeText(indices.shape)}.");
        using var flat = indices.to_type(ScalarType.Int64).flatten().cpu();
        return new(SliceMode.Array, list: flat.data<long>().ToArray());
    }

    /// <summary>
    /// Parses Python slice text: <c>-1</c> (an int), <c>a:b</c> or <c>a:b:c</c> with any part omitted (<c>:5</c>,
    /// <c>-3:</c>, <c>::2</c>), or a comma-separated index list <c>0,3,-1</c>. Empty text or <c>:</c> is everything.
    /// </summary>
    public static Slice Parse(string text)
    {
        string t = text.Trim();
        const string allowed = "expected an int (-1), a Python slice start:stop[:step] (e.g. -4:, 1:5, ::2) or an index list (0,3,-1)";
        long Num(string part) => long.TryParse(part.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v
            : throw new SharpLensException($"Slice '{text}': '{part.Trim()}' is not an integer; {allowed}.");
        if (t.Length == 0 || t == ":") return All;
        if (t.Contains(':'))
        {
            var parts = t.Split(':');
            if (parts.Length > 3) throw new SharpLensException($"Slice '{text}' has {parts.Length - 1} colons; {allowed}.");
            long? Part(int i) => i < parts.Length && parts[i].Trim().Length > 0 ? Num(parts[i]) : null;
            return Range(Part(0), Part(1), Part(2));
        }
        if (t.Contains(',')) return FromList(t.Split(',').Select(Num).ToArray());
        return At(Num(t));
    }

    /// <summary>An int drops the axis: <c>t[i]</c>.</summary>
    public static implicit operator Slice(int index) => At(index);

    /// <summary>An int drops the axis: <c>t[i]</c>.</summary>
    public static implicit operator Slice(long index) => At(index);

    /// <summary>A C# index: <c>^k</c> is Python's <c>-k</c> (and drops the axis). <c>^0</c> is past the end, always out of range.</summary>
    public static implicit operator Slice(Index index) => index.IsFromEnd
        ? (index.Value == 0 ? At(long.MaxValue) : At(-index.Value))
        : At(index.Value);

    /// <summary>A C# range keeps the axis: <c>a..b</c> is <c>a:b</c>, <c>^k</c> is <c>-k</c>, <c>..</c> is <c>:</c>.</summary>
    public static implicit operator Slice(System.Range range)
    {
        // ^0 as a stop is Python's None (to the end); as a start it is the length, i.e. an empty slice.
        long? start = range.Start.IsFromEnd ? (range.Start.Value == 0 ? long.MaxValue : -range.Start.Value) : range.Start.Value;
        long? stop = range.End.IsFromEnd ? (range.End.Value == 0 ? null : -range.End.Value) : range.End.Value;
        return Range(start == 0 ? null : start, stop);
    }

    /// <summary>TL's <c>Slice.unwrap</c>: an int becomes a one-element list so the axis is kept; other modes are unchanged.</summary>
    public static Slice Unwrap(Slice slice) => slice.Mode == SliceMode.Int ? FromList(slice._index) : slice;

    /// <summary>
    /// Applies the slice to axis <paramref name="dim"/> of <paramref name="tensor"/> (negative dims count from the end).
    /// Int and slice modes return views; array mode and negative steps (which torch itself rejects; here they select
    /// like numpy) return a copy. The result is a new tensor the caller owns.
    /// </summary>
    public Tensor Apply(Tensor tensor, long dim = 0)
    {
        long ndim = tensor.dim();
        long d = dim < 0 ? dim + ndim : dim;
        if (d < 0 || d >= ndim) throw new SharpLensException($"Cannot slice dim {dim} of a {ndim}-D tensor; dim must be in [{-ndim}, {ndim - 1}].");
        long len = tensor.shape[d];
        switch (Mode)
        {
            case SliceMode.Identity:
                return tensor.alias();
            case SliceMode.Int:
                return tensor.select(d, Resolve(_index, len, d));
            case SliceMode.Slice when StepValue > 0:
                var (start, count) = Bounds(len);
                return tensor.slice(d, start, start + count * StepValue, StepValue);  // end may pass len by < step; torch clamps it
            default:
                // Negative steps (torch has none) and index lists both become index_select, which copies.
                using (var idx = TorchSharp.torch.tensor(Mode == SliceMode.Array ? _list!.Select(i => Resolve(i, len, d)).ToArray() : IndicesOf(len), ScalarType.Int64, tensor.device))
                    return tensor.index_select(d, idx);
        }
    }

    /// <summary>
    /// TL's <c>Slice.indices(max_ctx)</c>: the indices this slice selects on an axis of length <paramref name="maxLen"/>.
    /// Like TL, int mode returns the int itself unresolved (e.g. <c>[-1]</c>); slice, list and identity modes return
    /// resolved non-negative indices (a list entry outside the axis is an error, as numpy's is).
    /// </summary>
    public long[] Indices(long maxLen)
    {
        if (maxLen < 0) throw new SharpLensException($"Axis length must be non-negative; got {maxLen}.");
        return Mode switch
        {
            SliceMode.Int => [_index],
            SliceMode.Array => _list!.Select(i => Resolve(i, maxLen, 0)).ToArray(),
            _ => IndicesOf(maxLen),
        };
    }

    /// <summary>TL's <c>Slice.indices()</c> without a length: only int mode can answer (<c>[i]</c>), as in TL.</summary>
    public long[] Indices() => Mode == SliceMode.Int
        ? [_index]
        : throw new SharpLensException($"Indices() without an axis length works only for an int slice; this is a {Mode} slice. Pass the axis length.");

    private long[] IndicesOf(long len)
    {
        if (Mode == SliceMode.Identity) return Enumerable.Range(0, checked((int)len)).Select(i => (long)i).ToArray();
        var (start, count) = Bounds(len);
        var r = new long[count];
        for (long i = 0; i < count; i++) r[i] = start + i * StepValue;
        return r;
    }

    /// <summary>Python's <c>slice.indices(len)</c>: resolved start and element count for slice mode.</summary>
    private (long start, long count) Bounds(long len)
    {
        long step = StepValue;
        long lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1;
        long Adjust(long? v, long dflt)
        {
            if (v is null) return dflt;
            long x = v.Value;
            if (x < 0) { x += len; return x < lo ? lo : x; }
            return x > hi ? hi : x;
        }
        long start = Adjust(_start, step > 0 ? 0 : len - 1);
        long stop = Adjust(_stop, step > 0 ? len : -1);
        long count = step > 0
            ? (stop > start ? (stop - start + step - 1) / step : 0)
            : (start > stop ? (start - stop - step - 1) / -step : 0);
        return (start, count);
    }

    private static long Resolve(long i, long len, long dim)
    {
        long r = i < 0 ? i + len : i;
        if (r < 0 || r >= len) throw new SharpLensException($"Index {i} is out of range for dim {dim} of size {len}; allowed is [{-len}, {len - 1}].");
        return r;
    }

    /// <summary>TL's repr, e.g. <c>Slice: slice(1, 5, None) Mode: slice </c>, <c>Slice: -1 Mode: int </c>, <c>Slice: [1 4 5] Mode: array </c>.</summary>
    public override string ToString() => $"Slice: {PythonValue()} Mode: {Mode switch { SliceMode.Int => "int", SliceMode.Slice => "slice", SliceMode.Array => "array", _ => "identity" }} ";

    /// <summary>The slice value as Python prints it: <c>3</c>, <c>slice(1, None, 2)</c>, <c>[1 4 5]</c> (numpy), <c>slice(None, None, None)</c>.</summary>
    public string PythonValue()
    {
        static string Py(long? v) => v?.ToString(CultureInfo.InvariantCulture) ?? "None";
        return Mode switch
        {
            SliceMode.Int => Py(_index),
            SliceMode.Slice => $"slice({Py(_start)}, {Py(_stop)}, {Py(_stepRaw)})",
            SliceMode.Array => "[" + string.Join(" ", _list!.Select(i => i.ToString(CultureInfo.InvariantCulture))) + "]",
            _ => "slice(None, None, None)",
        };
    }

    /// <summary>Value equality (same mode and parameters).</summary>
    public bool Equals(Slice other) => Mode == other.Mode && _index == other._index && _start == other._start && _stop == other._stop
        && _stepRaw == other._stepRaw && (_list ?? []).SequenceEqual(other._list ?? []);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Slice s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Mode, _index, _start, _stop, _stepRaw, _list?.Length ?? 0);

    /// <summary>Value equality.</summary>
    public static bool operator ==(Slice a, Slice b) => a.Equals(b);

    /// <summary>Value inequality.</summary>
    public static bool operator !=(Slice a, Slice b) => !a.Equals(b);
}
