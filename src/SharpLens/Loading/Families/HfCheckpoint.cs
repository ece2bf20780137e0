using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// A Hugging Face checkpoint as a converter reads it: tensors by name under an optional prefix, each checked against
/// the shape config.json implies, with every name used recorded so that leftovers (a checkpoint of another
/// architecture or size) are reported instead of silently ignored.
/// </summary>
internal sealed class HfCheckpoint
{
    private readonly IReadOnlyDictionary<string, Tensor> _hf;
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    private readonly string _family;

    /// <summary>Wraps <paramref name="hf"/>; <paramref name="prefix"/> is used when the checkpoint has <paramref name="probe"/> under it.</summary>
    /// <param name="hf">Checkpoint tensors by name.</param>
    /// <param name="family">Family name for messages (<c>GPT-NeoX</c>).</param>
    /// <param name="prefix">Prefix of the base model's weights in a causal-LM checkpoint (<c>gpt_neox.</c>).</param>
    /// <param name="probe">A name that always exists (without prefix), used to tell whether the prefix is there.</param>
    public HfCheckpoint(IReadOnlyDictionary<string, Tensor> hf, string family, string prefix, string probe)
    {
        _hf = hf;
        _family = family;
        Prefix = hf.ContainsKey(prefix + probe) ? prefix : "";
    }

    /// <summary>The prefix in use (empty for a checkpoint of the bare base model).</summary>
    public string Prefix { get; }

    /// <summary>True when the checkpoint has <paramref name="name"/> (under the prefix unless <paramref name="root"/>).</summary>
    public bool Has(string name, bool root = false) => _hf.ContainsKey(root ? name : Prefix + name);

    /// <summary>The tensor <paramref name="name"/> (under the prefix unless <paramref name="root"/>), which must have <paramref name="shape"/>.</summary>
    public Tensor Get(string name, long[] shape, bool root = false)
    {
        string key = root ? name : Prefix + name;
        if (!_hf.TryGetValue(key, out var t))
            throw new SharpLensException($"{_family} checkpoint is missing parameter '{key}'." + NameSuggestions.DidYouMean(key, _hf.Keys));
        _used.Add(key);
        if (!t.shape.SequenceEqual(shape))
            throw new SharpLensException($"{_family} checkpoint parameter '{key}' has shape {TensorExtensions.ShapeText(t.shape)}, " +
                $"expected {TensorExtensions.ShapeText(shape)} from config.json.");
        return t;
    }

    /// <summary>Like <see cref="Get"/> when the checkpoint has the tensor, else null (optional biases).</summary>
    public Tensor? GetOptional(string name, long[] shape, bool root = false) => Has(name, root) ? Get(name, shape, root) : null;

    /// <summary>Throws when the checkpoint holds parameters the conversion did not use (other than <paramref name="ignore"/>).</summary>
    public void RejectUnused(int nLayers, Func<string, bool> ignore)
    {
        var unexpected = _hf.Keys.Where(k => !_used.Contains(k) && !ignore(k)).Order(StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new SharpLensException($"{_family} checkpoint has {unexpected.Count} unexpected parameter(s) for a {nLayers}-layer model " +
                "as config.json describes it: " + string.Join(", ", unexpected.Take(8)) + (unexpected.Count > 8 ? ", ..." : "") + ".");
    }

    /// <summary>nn.Linear [n_heads·d_head, d_model] → TransformerLens's [n_heads, d_model, d_head] (a view).</summary>
    public static Tensor HeadsIn(Tensor w, long heads, long dHead) => w.view(heads, dHead, -1).permute(0, 2, 1);

    /// <summary>nn.Linear [d_model, n_heads·d_head] (the output projection) → [n_heads, d_head, d_model] (a view).</summary>
    public static Tensor HeadsOut(Tensor w, long heads, long dHead) => w.view(-1, heads, dHead).permute(1, 2, 0);
}
