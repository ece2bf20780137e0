using System.Text.RegularExpressions;

namespace SharpLens;

/// <summary>
/// Full hook names from TransformerLens's short forms (<c>utils.get_act_name</c>): <c>("resid_post", 3)</c> →
/// <c>blocks.3.hook_resid_post</c>, <c>"pattern0"</c> → <c>blocks.0.attn.hook_pattern</c>,
/// <c>("scale", 2, "ln2")</c> → <c>blocks.2.ln2.hook_scale</c>. Negative layers count from the end when the number
/// of layers is known (TransformerLens's <c>cache["resid_post", -1]</c>).
/// </summary>
public static partial class ActName
{
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal)
    {
        ["attn"] = "pattern", ["attn_logits"] = "attn_scores", ["key"] = "k", ["query"] = "q", ["value"] = "v",
        ["mlp_pre"] = "pre", ["mlp_mid"] = "mid", ["mlp_post"] = "post",
    };

    private static readonly Dictionary<string, string> LayerTypeAliases = new(StringComparer.Ordinal)
    {
        ["a"] = "attn", ["m"] = "mlp", ["b"] = "", ["block"] = "", ["blocks"] = "", ["attention"] = "attn",
    };

    private static readonly string[] AttnNames = ["q", "k", "v", "z", "pattern", "attn_scores", "result", "rot_q", "rot_k"];
    private static readonly string[] MlpNames = ["pre", "post", "mid", "pre_linear"];
    private static readonly string[] BlockNames = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_in", "mlp_in", "q_input", "k_input", "v_input"];
    private static readonly string[] GlobalNames = ["embed", "pos_embed", "tokens"];
    private static readonly string[] LnNames = ["scale", "normalized"];

    /// <summary>Every short activation name this class understands.</summary>
    public static IReadOnlyList<string> KnownNames { get; } =
        AttnNames.Concat(MlpNames).Concat(BlockNames).Concat(GlobalNames).Concat(LnNames).Concat(Aliases.Keys).ToList();

    [GeneratedRegex(@"^([a-z_]+?)(\d+)([a-z0-9_]*)$")]
    private static partial Regex ShortForm();

    /// <summary>
    /// TransformerLens's <c>get_act_name(name, layer, layer_type)</c>. Names containing a dot are full names and
    /// returned as is. <paramref name="nLayers"/> enables negative layers and range checks.
    /// </summary>
    public static string Get(string name, int? layer = null, string? layerType = null, int? nLayers = null)
    {
        if (name.Contains('.') || (name.StartsWith("hook_", StringComparison.Ordinal) && layer is null)) return name;
        if (layer is null && ShortForm().Match(name) is { Success: true } m && (KnownNames.Contains(m.Groups[1].Value)))
        {
            // "pattern0", "scale4ln1", "resid_pre5"
            name = m.Groups[1].Value;
            layer = int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            if (m.Groups[3].Value.Length > 0) layerType = m.Groups[3].Value;
        }
        name = Aliases.GetValueOrDefault(name, name);
        if (!KnownNames.Contains(name))
            throw new SharpLensException($"Unknown activation name '{name}'. Known short names: {string.Join(", ", KnownNames)}." +
                NameSuggestions.DidYouMean(name, KnownNames));
        if (GlobalNames.Contains(name))
            return $"hook_{name}";
        if (layer is null)
            throw new SharpLensException($"Activation '{name}' belongs to a layer: give a layer index, e.g. ('{name}', 0).");
        int l = layer.Value;
        if (nLayers is { } n)
        {
            if (l < 0) l += n;
            if (l < 0 || l >= n)
                throw new SharpLensException($"Layer {layer} is out of range for '{name}': the model has {n} layers (allowed {-n}..{n - 1}).");
        }
        else if (l < 0)
            throw new SharpLensException($"Negative layer {l} needs the number of layers; index a cache (cache[\"{name}\", {l}]) instead.");

        string? lt = layerType is null ? null : LayerTypeAliases.GetValueOrDefault(layerType, layerType);
        if (LnNames.Contains(name))
        {
            if (lt is "ln_final") return $"ln_final.hook_{name}";
            if (lt is not ("ln1" or "ln2"))
                throw new SharpLensException($"'{name}' needs a layer type: 'ln1', 'ln2' or 'ln_final' (e.g. ('scale', {l}, 'ln1')).");
            return $"blocks.{l}.{lt}.hook_{name}";
        }
        if (AttnNames.Contains(name)) return $"blocks.{l}.attn.hook_{name}";
        if (MlpNames.Contains(name)) return $"blocks.{l}.mlp.hook_{name}";
        return $"blocks.{l}.hook_{name}";
    }
}
