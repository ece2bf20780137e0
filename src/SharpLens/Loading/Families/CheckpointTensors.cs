using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// A checkpoint's tensors as a converter reads them: a missing name fails with the closest names, a wrong shape names
/// the tensor and what config.json implies, and <see cref="ThrowOnUnused"/> reports tensors the converter never read.
/// </summary>
public sealed class CheckpointTensors(IReadOnlyDictionary<string, Tensor> tensors, string family)
{
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    /// <summary>Whether the checkpoint has <paramref name="name"/>.</summary>
    public bool Has(string name) => tensors.ContainsKey(name);

    /// <summary>The tensor <paramref name="name"/>, which must have <paramref name="shape"/>.</summary>
    public Tensor Get(string name, params long[] shape)
    {
        if (!tensors.TryGetValue(name, out var t))
            throw new SharpLensException($"{family} checkpoint is missing tensor '{name}'." + LayerHint(name) +
                NameSuggestions.DidYouMean(name, tensors.Keys) + " Is config.json the one that belongs to these weights?");
        _used.Add(name);
        // An integer or bool weight would reach a native matmul, whose dtype error aborts the whole process.
        if (!t.is_floating_point())
            throw new SharpLensException($"{family} checkpoint tensor '{name}' has dtype {t.dtype}; weights must be floating point " +
                "(float32, float16, bfloat16 or float64).");
        if (!t.shape.SequenceEqual(shape))
            throw new SharpLensException($"{family} checkpoint tensor '{name}' has shape {TensorExtensions.ShapeText(t.shape)}, " +
                $"expected {TensorExtensions.ShapeText(shape)} from config.json.");
        return t;
    }

    /// <summary>
    /// When the missing name is a layer's tensor and the checkpoint's layers stop earlier, says so: the usual cause is a
    /// config.json with more layers than the weights.
    /// </summary>
    private string LayerHint(string name)
    {
        var m = LayerIndex.Match(name);
        if (!m.Success) return "";
        int wanted = int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        int layers = tensors.Keys.Select(k => LayerIndex.Match(k)).Where(x => x.Success)
            .Select(x => int.Parse(x.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) + 1).DefaultIfEmpty(0).Max();
        return wanted >= layers ? $" The checkpoint has {layers} layer(s); config.json asks for at least {wanted + 1}." : "";
    }

    private static readonly System.Text.RegularExpressions.Regex LayerIndex = new(@"(?:^|\.)(?:h|layers|blocks|layer)\.(\d{1,8})\.",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>Marks a tensor as deliberately ignored (e.g. a tied head).</summary>
    public void Ignore(string name) => _used.Add(name);

    /// <summary>Fails when a tensor was neither read nor ignored nor matched by <paramref name="isBuffer"/>.</summary>
    public void ThrowOnUnused(string what, Func<string, bool>? isBuffer = null)
    {
        var unexpected = tensors.Keys.Where(k => !_used.Contains(k) && !(isBuffer?.Invoke(k) ?? false)).ToList();
        if (unexpected.Count > 0)
            throw new SharpLensException($"{family} checkpoint has {unexpected.Count} unexpected tensor(s) for {what}: " +
                string.Join(", ", unexpected.Take(8)) + (unexpected.Count > 8 ? ", ..." : "") +
                ". Is config.json (layers, architecture) the one that belongs to these weights?");
    }

    /// <summary>An nn.Linear input projection [n_heads·d_head, d_model] → TransformerLens's [n_heads, d_model, d_head] (a view).</summary>
    public static Tensor HeadsIn(Tensor w, long heads, long dHead) => w.view(heads, dHead, -1).permute(0, 2, 1);

    /// <summary>An nn.Linear output projection [d_model, n_heads·d_head] → TransformerLens's [n_heads, d_head, d_model] (a view).</summary>
    public static Tensor HeadsOut(Tensor w, long heads, long dHead) => w.view(-1, heads, dHead).permute(1, 2, 0);
}
