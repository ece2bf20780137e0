using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>
/// A selection along one axis with Python semantics (TransformerLens's <c>utils.Slice</c>): everything, a single
/// index (negative counts from the end; the axis is dropped), a start/stop/step range, or a list of indices.
/// Converts implicitly from <c>int</c> and from C# ranges (<c>^1</c> = Python's <c>-1</c>).
/// </summary>
public readonly struct Slice
{
    private readonly int _kind; // 0 all, 1 int, 2 range, 3 list
    private readonly long _index;
    private readonly long? _start, _stop;
    private readonly long _step;
    private readonly long[]? _list;

    private Slice(int kind, long index = 0, long? start = null, long? stop = null, long step = 1, long[]? list = null)
    {
        _kind = kind; _index = index; _start = start; _stop = stop; _step = step; _list = list;
    }

    /// <summary>Selects the whole axis (Python's <c>None</c> / <c>:</c>).</summary>
    public static Slice All => default;

    /// <summary>One index; negative counts from the end. Drops the axis.</summary>
    public static Slice Index(long index) => new(1, index);

    /// <summary>Python's <c>start:stop:step</c>; nulls mean the ends; negatives count from the end.</summary>
    public static Slice Range(long? start, long? stop, long step = 1) =>
        step == 0 ? throw new SharpLensException("Slice step cannot be zero.") : new(2, start: start, stop: stop, step: step);

    /// <summary>An explicit list of indices (negatives allowed). Keeps the axis.</summary>
    public static Slice FromList(params long[] indices) => new(3, list: indices.ToArray());

    /// <summary>An index as a slice.</summary>
    public static implicit operator Slice(int index) => Index(index);

    /// <summary>A C# range (<c>1..^2</c>) as a slice.</summary>
    public static implicit operator Slice(System.Range r) => Range(
        r.Start.IsFromEnd ? (r.Start.Value == 0 ? null : -r.Start.Value) : r.Start.Value,
        r.End.IsFromEnd ? (r.End.Value == 0 ? null : -r.End.Value) : r.End.Value);

    /// <summary>True for a single-index slice (which drops the axis).</summary>
    public bool IsIndex => _kind == 1;

    /// <summary>The indices selected from an axis of length <paramref name="length"/>, in order.</summary>
    public long[] Indices(long length)
    {
        long Norm(long i) => i < 0 ? i + length : i;
        switch (_kind)
        {
            case 0: return Enumerable.Range(0, (int)length).Select(i => (long)i).ToArray();
            case 1:
            {
                long i = Norm(_index);
                if (i < 0 || i >= length) throw new SharpLensException($"Slice index {_index} is out of range for an axis of length {length}.");
                return [i];
            }
            case 3:
                return _list!.Select(i =>
                {
                    long n = Norm(i);
                    return n < 0 || n >= length ? throw new SharpLensException($"Slice index {i} is out of range for an axis of length {length}.") : n;
                }).ToArray();
            default:
            {
                // Python's slice.indices
                long Clamp(long? v, long dflt, long lo, long hi) => v is null ? dflt : Math.Clamp(v.Value < 0 ? v.Value + length : v.Value, lo, hi);
                var list = new List<long>();
                if (_step > 0)
                    for (long i = Clamp(_start, 0, 0, length), e = Clamp(_stop, length, 0, length); i < e; i += _step) list.Add(i);
                else
                    for (long i = Clamp(_start, length - 1, -1, length - 1), e = Clamp(_stop, -1, -1, length - 1); i > e; i += _step) list.Add(i);
                return list.ToArray();
            }
        }
    }

    /// <summary>Applies the slice to axis <paramref name="dim"/> of <paramref name="t"/> (negative dims count from the end).</summary>
    public Tensor Apply(Tensor t, int dim = 0)
    {
        int d = dim < 0 ? (int)t.dim() + dim : dim;
        if (d < 0 || d >= t.dim()) throw new SharpLensException($"Slice axis {dim} does not exist in a tensor of shape [{string.Join(", ", t.shape)}].");
        long len = t.shape[d];
        switch (_kind)
        {
            case 0: return t.alias();
            case 1: return t.select(d, Indices(len)[0]);
            case 2 when _step == 1:
            {
                var idx = Indices(len);
                return idx.Length == 0 ? t.narrow(d, 0, 0) : t.narrow(d, idx[0], idx.Length);
            }
            default: return t.index_select(d, tensor(Indices(len)));
        }
    }

    /// <inheritdoc/>
    public override string ToString() => _kind switch
    {
        0 => "Slice(None)",
        1 => $"Slice({_index})",
        3 => $"Slice([{string.Join(", ", _list!)}])",
        _ => $"Slice({_start?.ToString() ?? ""}:{_stop?.ToString() ?? ""}{(_step == 1 ? "" : ":" + _step)})",
    };
}
