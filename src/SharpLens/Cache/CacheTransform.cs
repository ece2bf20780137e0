using SharpLens.Analysis;
using static TorchSharp.torch;

namespace SharpLens.Cache;

/// <summary>
/// What a cache does to an activation before keeping it: TransformerLens's <c>pos_slice</c> and a storage dtype. Shared
/// by the in-memory cache and the streaming file export, so both hold exactly the same tensors.
/// </summary>
internal sealed class CacheTransform
{
    private readonly Slice _pos;
    private readonly bool _slicing;
    private readonly long _posLength;
    private readonly ScalarType? _dtype;

    private CacheTransform(Slice pos, long posLength, ScalarType? dtype)
    {
        _pos = pos;
        _slicing = pos.Mode != SliceMode.Identity;
        _posLength = posLength;
        _dtype = dtype;
    }

    /// <summary>Checks <paramref name="posSlice"/> against <paramref name="posLength"/> positions and the dtype.</summary>
    public static CacheTransform Create(Slice posSlice, ScalarType? cacheDtype, long posLength)
    {
        if (cacheDtype is { } d && d is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new SharpLensException($"cacheDtype {d} is not a floating dtype; allowed: Float32, BFloat16, Float16, Float64.");
        var pos = Slice.Unwrap(posSlice); // TL: an int keeps the axis
        try { _ = pos.Indices(posLength); }
        catch (SharpLensException e)
        {
            throw new SharpLensException($"posSlice {posSlice.PythonValue()} does not fit a sequence of {posLength} positions " +
                $"(allowed indices are [{-posLength}, {posLength - 1}]): {e.Message}", e);
        }
        return new CacheTransform(pos, posLength, cacheDtype);
    }

    /// <summary>
    /// The position axis of an activation of rank <paramref name="rank"/> (batch axis included): axis 1, except the query
    /// axis 2 of attention scores and patterns [batch, head, query, key]; null for a tensor without one. TransformerLens counts from the end instead
    /// (-3 for q/k/v/z/result, else -2), which picks the head axis of <c>hook_rot_q</c>, <c>hook_q_input</c> and
    /// <c>hook_attn_in</c>; SharpLens slices their positions.
    /// </summary>
    public static int? PosAxis(string name, long rank)
    {
        int axis = name.EndsWith("hook_pattern", StringComparison.Ordinal) || name.EndsWith("hook_attn_scores", StringComparison.Ordinal)
            || name.EndsWith("hook_pattern_grad", StringComparison.Ordinal) || name.EndsWith("hook_attn_scores_grad", StringComparison.Ordinal) ? 2 : 1;
        // Activations with positions are [batch, pos, ...] with at least one more axis; rank-2 tensors (the per-head q/k
        // norm hooks flatten batch·pos·heads into axis 0) have no position axis to slice.
        return rank > axis + 1 ? axis : null;
    }

    /// <summary>The tensor to keep for <paramref name="activation"/> (a new tensor in the current dispose scope).</summary>
    public Tensor Apply(string name, Tensor activation)
    {
        var t = activation;
        if (_slicing && PosAxis(name, t.dim()) is int axis && t.shape[axis] == _posLength)
        {
            t = _pos.Apply(t, axis);
            // A view would keep the whole activation alive: copy what is kept.
            if (_pos.Mode == SliceMode.Slice && t.numel() < activation.numel()) t = t.clone();
        }
        if (_dtype is { } d && t.dtype != d) t = t.to_type(d);
        return t;
    }

    /// <summary>The shape <see cref="Apply"/> gives an activation of shape <paramref name="shape"/>.</summary>
    public long[] Shape(string name, long[] shape)
    {
        var r = (long[])shape.Clone();
        if (_slicing && PosAxis(name, r.Length) is int axis && r[axis] == _posLength) r[axis] = _pos.Indices(_posLength).Length;
        return r;
    }

    /// <summary>The dtype <see cref="Apply"/> gives an activation of dtype <paramref name="dtype"/>.</summary>
    public ScalarType Dtype(ScalarType dtype) => _dtype ?? dtype;
}
