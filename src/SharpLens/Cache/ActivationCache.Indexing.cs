using static TorchSharp.torch;

namespace SharpLens.Cache;

public sealed partial class ActivationCache
{
    /// <summary>An activation by full hook name (<c>blocks.0.attn.hook_pattern</c>).</summary>
    public Tensor this[string name] => Get(name);

    private Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_store.TryGetValue(name, out var t)) return t;
        throw new SharpLensException($"Activation '{name}' is not in the cache." + NameSuggestions.DidYouMean(name, _keys) +
            (_keys.Count == 0 ? " The cache is empty." : $" The cache holds {_keys.Count} activations; check the names filter of RunWithCache."));
    }
}
