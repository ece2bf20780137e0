using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    private const string FusedWeight = "W_QKV", FusedBias = "b_QKV";

    /// <summary>
    /// The parameters as a <see cref="WeightsCache"/> file stores them: TransformerLens names and order, except that each
    /// layer's q/k/v weights and biases are one fused [d_model, (heads + 2·kv)·d_head] matrix <c>blocks.L.attn.W_QKV</c>
    /// and one vector <c>blocks.L.attn.b_QKV</c> (what the forward pass multiplies with), so that loading the file
    /// back makes W_Q/W_K/W_V views of it instead of copying them into a fused matrix again. Layers whose projection is
    /// not fused get new fused tensors in the caller's dispose scope.
    /// </summary>
    internal List<KeyValuePair<string, Tensor>> CacheLayout()
    {
        var fusedNames = new Dictionary<string, (int Layer, bool Weight)>(StringComparer.Ordinal);
        for (int l = 0; l < Config.NLayers; l++)
            foreach (var n in new[] { "W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V" })
                fusedNames[$"blocks.{l}.attn.{(n.EndsWith('Q') ? n : ParameterLayout.KeyValueName(Config, n))}"] = (l, n[0] == 'W');
        var fused = _qkvProjections.Select(q => q.FusedWeights()).ToList(); // new tensors (caller's scope) unless the layer is fused
        var list = new List<KeyValuePair<string, Tensor>>();
        foreach (var name in _paramOrder)
        {
            if (!fusedNames.TryGetValue(name, out var f)) list.Add(new(name, _params[name]));
            else if (name.EndsWith(".W_Q", StringComparison.Ordinal)) list.Add(new($"blocks.{f.Layer}.attn.{FusedWeight}", fused[f.Layer].W));
            else if (name.EndsWith(".b_Q", StringComparison.Ordinal)) list.Add(new($"blocks.{f.Layer}.attn.{FusedBias}", fused[f.Layer].B));
        }
        return list;
    }

    /// <summary>
    /// The TransformerLens-named state dict of a <see cref="CacheLayout"/> file: every tensor a view of the file's mapping;
    /// q/k/v split from the fused matrix as views. The caller's dispose scope owns the results.
    /// </summary>
    internal static Dictionary<string, Tensor> FromCacheLayout(HookedTransformerConfig cfg, SafetensorsFile file)
    {
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead;
        long[] widths = [h * dh, kv * dh, kv * dh], heads = [h, kv, kv];
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var name in file.Names)
        {
            bool weight = name.EndsWith(".attn." + FusedWeight, StringComparison.Ordinal), bias = name.EndsWith(".attn." + FusedBias, StringComparison.Ordinal);
            if (!weight && !bias)
            {
                sd[name] = file.Read(name);
                continue;
            }
            string prefix = name[..(name.LastIndexOf('.') + 1)];
            string[] names = weight ? ["W_Q", ParameterLayout.KeyValueName(cfg, "W_K"), ParameterLayout.KeyValueName(cfg, "W_V")]
                : ["b_Q", ParameterLayout.KeyValueName(cfg, "b_K"), ParameterLayout.KeyValueName(cfg, "b_V")];
            using var fused = file.Read(name);
            long expected = widths.Sum();
            if (fused.shape.Length != (weight ? 2 : 1) || fused.shape[^1] != expected || (weight && fused.shape[0] != d))
                throw new SharpLensException($"{file.Path}: '{name}' has shape {TensorExtensions.ShapeText(fused.shape)}, " +
                    $"expected {(weight ? $"[{d}, {expected}]" : $"[{expected}]")} for this config.");
            long off = 0;
            for (int i = 0; i < 3; i++)
            {
                sd[prefix + names[i]] = weight
                    ? fused.narrow(1, off, widths[i]).view(d, heads[i], dh).permute(1, 0, 2)
                    : fused.narrow(0, off, widths[i]).view(heads[i], dh);
                off += widths[i];
            }
        }
        return sd;
    }
}
