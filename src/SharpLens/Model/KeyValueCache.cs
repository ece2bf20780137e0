using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>Keys and values of one attention layer from earlier forward passes, for fast generation.</summary>
public sealed class KeyValueCacheEntry : IDisposable
{
    private Tensor? _k, _v;

    /// <summary>Number of cached positions.</summary>
    public long Length => _k?.shape[1] ?? 0;

    /// <summary>Appends this step's keys and values ([batch, pos, head, d_head]) and returns all of them.</summary>
    public (Tensor K, Tensor V) Append(Tensor k, Tensor v)
    {
        var newK = _k is null ? k.clone() : cat([_k, k], 1);
        var newV = _v is null ? v.clone() : cat([_v, v], 1);
        _k?.Dispose(); _v?.Dispose();
        _k = newK.DetachFromDisposeScope(); _v = newV.DetachFromDisposeScope();
        return (_k.alias(), _v.alias());
    }

    /// <summary>Frees the cached tensors.</summary>
    public void Dispose()
    {
        _k?.Dispose(); _v?.Dispose(); _k = _v = null;
    }
}

/// <summary>
/// Keys and values of every layer plus the attention mask seen so far (TransformerLens's
/// <c>HookedTransformerKeyValueCache</c>). Pass the same cache to consecutive forward calls.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private Tensor? _mask;

    /// <summary>Creates an empty cache for a model with <paramref name="nLayers"/> layers.</summary>
    public KeyValueCache(int nLayers) => Layers = Enumerable.Range(0, nLayers).Select(_ => new KeyValueCacheEntry()).ToArray();

    /// <summary>One entry per layer.</summary>
    public IReadOnlyList<KeyValueCacheEntry> Layers { get; }

    /// <summary>Number of cached positions.</summary>
    public long Length => Layers.Count == 0 ? 0 : Layers[0].Length;

    /// <summary>The attention mask of all cached positions plus <paramref name="newMask"/>; stored for the next step.</summary>
    internal Tensor ExtendMask(Tensor newMask)
    {
        var all = _mask is null ? newMask.clone() : cat([_mask, newMask], 1);
        _mask?.Dispose();
        _mask = all.DetachFromDisposeScope();
        return _mask.alias();
    }

    /// <summary>Frees every cached tensor.</summary>
    public void Dispose()
    {
        foreach (var l in Layers) l.Dispose();
        _mask?.Dispose(); _mask = null;
    }
}
