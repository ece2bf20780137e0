using static TorchSharp.torch;

namespace SharpLens.Cache;

public sealed partial class ActivationCache
{
    /// <summary>
    /// An activation by full hook name (<c>blocks.0.attn.hook_pattern</c>) or TransformerLens short form
    /// (<c>pattern0</c>, <c>resid_pre5</c>, <c>embed</c>).
    /// </summary>
    public Tensor this[string name] =>
        Get(_store.ContainsKey(name) || name.Contains('.') ? name : ActName.Get(name, null, null, Model.Config.NLayers));

    /// <summary>
    /// TransformerLens's <c>cache[name, layer, layer_type]</c>: e.g. <c>cache["resid_post", -1]</c> (negative layers count
    /// from the end), <c>cache["q", 3, "attn"]</c>, <c>cache["scale", 2, "ln1"]</c>.
    /// </summary>
    public Tensor this[string name, int layer, string? layerType = null] =>
        Get(ActName.Get(name, layer, layerType, Model.Config.NLayers));

    private Tensor Get(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_store.TryGetValue(name, out var t)) return t;
        throw new SharpLensException($"Activation '{name}' is not in the cache." + NameSuggestions.DidYouMean(name, _keys) +
            (_keys.Count == 0 ? " The cache is empty." : $" The cache holds {_keys.Count} activations; check the names filter of RunWithCache."));
    }
}
