using System.Collections;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cache;

/// <summary>
/// Activations of one forward pass by TransformerLens hook name (TransformerLens's <c>ActivationCache</c>), in the
/// order they were produced. The cache owns its tensors: disposing it frees them, so a cache of GPT-2 activations
/// does not outlive its use. Tensors returned by the indexers stay owned by the cache.
/// </summary>
public sealed partial class ActivationCache : IDisposable, IEnumerable<KeyValuePair<string, Tensor>>
{
    private readonly List<string> _keys = [];
    private readonly Dictionary<string, Tensor> _store = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>Creates an empty cache for <paramref name="model"/>; usually made by <see cref="HookedTransformer.RunWithCache(Tensor, Func{string, bool}?, bool, Tensor?, bool, Func{Tensor, Tensor}?)"/>.</summary>
    public ActivationCache(HookedTransformer model, bool hasBatchDim = true)
    {
        Model = model;
        HasBatchDim = hasBatchDim;
    }

    /// <summary>The model that produced the activations (its weights are used by the analysis methods).</summary>
    public HookedTransformer Model { get; }

    /// <summary>Whether tensors have a leading batch axis.</summary>
    public bool HasBatchDim { get; private set; }

    /// <summary>Hook names in the order the activations were produced.</summary>
    public IReadOnlyList<string> Keys => _keys;

    /// <summary>Number of cached activations.</summary>
    public int Count => _keys.Count;

    /// <summary>Whether <paramref name="name"/> (a full hook name) is cached.</summary>
    public bool ContainsKey(string name) => _store.ContainsKey(name);

    /// <summary>The activation under a full hook name, or false.</summary>
    public bool TryGetValue(string name, out Tensor tensor) => _store.TryGetValue(name, out tensor!);

    /// <summary>Stores a copy-free alias of <paramref name="activation"/> under <paramref name="name"/>, owned by the cache.</summary>
    public void Store(string name, Tensor activation)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var owned = activation.detach().DetachFromDisposeScope();
        if (_store.TryGetValue(name, out var old)) old.Dispose();
        else _keys.Add(name);
        _store[name] = owned;
    }

    /// <summary>
    /// Stores <paramref name="value"/> under <paramref name="name"/>, or adds it to what is stored there: a gradient
    /// of an activation used several times arrives once per use, and the cache keeps the total.
    /// </summary>
    internal void StoreOrAdd(string name, Tensor value)
    {
        if (_store.TryGetValue(name, out var old))
        {
            _store[name] = (old + value).detach().DetachFromDisposeScope();
            old.Dispose();
        }
        else Store(name, value.clone());
    }

    /// <summary>Removes and frees one activation; false when it was not cached.</summary>
    public bool Remove(string name)
    {
        if (!_store.Remove(name, out var t)) return false;
        t.Dispose();
        _keys.Remove(name);
        return true;
    }

    /// <summary>
    /// Drops the batch axis of every activation (TransformerLens's <c>remove_batch_dim</c>); the batch must be 1.
    /// Returns this cache.
    /// </summary>
    public ActivationCache RemoveBatchDim()
    {
        if (!HasBatchDim) return this;
        foreach (var k in _keys)
            if (_store[k].shape[0] != 1)
                throw new SharpLensException($"RemoveBatchDim needs batch size 1, but '{k}' has shape [{string.Join(", ", _store[k].shape)}].");
        foreach (var k in _keys)
        {
            var old = _store[k];
            _store[k] = old.squeeze(0).DetachFromDisposeScope();
            old.Dispose();
        }
        HasBatchDim = false;
        return this;
    }

    /// <summary>Moves every activation to <paramref name="device"/> (e.g. "cpu", "cuda:0"). Returns this cache.</summary>
    public ActivationCache To(string device)
    {
        var dev = torch.device(device);
        foreach (var k in _keys)
        {
            var old = _store[k];
            if (old.device.ToString() == dev.ToString()) continue;
            _store[k] = old.to(dev).DetachFromDisposeScope();
            old.Dispose();
        }
        return this;
    }

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, Tensor>> GetEnumerator() =>
        _keys.Select(k => new KeyValuePair<string, Tensor>(k, _store[k])).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Frees every cached tensor.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _store.Values) t.Dispose();
        _store.Clear();
        _keys.Clear();
    }

    /// <inheritdoc/>
    public override string ToString() => $"ActivationCache with keys [{string.Join(", ", _keys.Take(6))}{(_keys.Count > 6 ? ", ..." : "")}]";
}
