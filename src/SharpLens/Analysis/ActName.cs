using System.Globalization;
using System.Text.RegularExpressions;

namespace SharpLens;

/// <summary>
/// TransformerLens's <c>utils.get_act_name</c>: turns shorthand into a hook name, e.g. <c>("pattern", 0)</c> or
/// <c>"pattern0"</c> → <c>blocks.0.attn.hook_pattern</c>, <c>"scale4ln1"</c> → <c>blocks.4.ln1.hook_scale</c>,
/// <c>"embed"</c> → <c>hook_embed</c>, <c>"scale"</c> → <c>ln_final.hook_scale</c>.
/// </summary>
/// <remarks>
/// Every input that TL maps to a real hook name gives the same name here. Where TL silently returns a name no model
/// has (e.g. <c>"k"</c> without a layer → <c>attn.hook_k</c>), this throws a <see cref="SharpLensException"/> saying
/// why, with the closest valid names. Beyond TL: names with an underscore followed by a layer (<c>"resid_pre5"</c>,
/// which TL turns into the meaningless <c>hook_resid_pre5</c>) parse as name + layer; layer type <c>"ln_final"</c>
/// without a layer gives <c>ln_final.hook_scale</c> (TL doubles the prefix); and with <c>nLayers</c> negative layers count
/// from the end as in TL's <c>cache["resid_post", -1]</c>. As in TL, a layer written into the name (<c>"k6"</c>)
/// overrides the <c>layer</c> and <c>layerType</c> arguments, and full names (containing '.' or starting with
/// <c>hook_</c>, with no layer or layer type given) pass through unchecked apart from the layer range.
/// </remarks>
public static class ActName
{
    // TL: re.match(r"([a-z]+)(\d+)([a-z]?.*)", name); "[a-z]?.*" is just ".*".
    private static readonly Regex TlShort = new(@"^([a-z]+)(\d+)(.*)", RegexOptions.CultureInvariant);
    // SharpLens extension, tried only when TL's pattern fails: "resid_pre5", "attn_out0".
    private static readonly Regex UnderscoreShort = new(@"^([a-z_]*[a-z])(\d+)(.*)", RegexOptions.CultureInvariant);
    private static readonly Regex BlockPrefix = new(@"^blocks\.(\d+)\.", RegexOptions.CultureInvariant);

    private static readonly Dictionary<string, string> LayerTypeAlias = new()
    {
        ["a"] = "attn", ["m"] = "mlp", ["b"] = "", ["block"] = "", ["blocks"] = "", ["attention"] = "attn",
    };

    private static readonly Dictionary<string, string> NameAlias = new()
    {
        ["attn"] = "pattern", ["attn_logits"] = "attn_scores", ["key"] = "k", ["query"] = "q", ["value"] = "v",
        ["mlp_pre"] = "pre", ["mlp_mid"] = "mid", ["mlp_post"] = "post",
    };

    // Names TL forces into attn / mlp whatever layer type is given.
    private static readonly string[] AttnNames = ["k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores"];
    private static readonly string[] MlpNames = ["pre", "post", "mid", "pre_linear"];
    private static readonly string[] LnNames = ["scale", "normalized"];
    // Hooks that exist for a short name (used to reject what TL would turn into a non-existent hook).
    private static readonly string[] BlockNames = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_in", "q_input", "k_input", "v_input", "mlp_in"];
    private static readonly string[] MlpExtraNames = ["expert_weights", "expert_indices"];  // MoE models
    private static readonly string[] GlobalNames = ["embed", "pos_embed"];
    private static readonly string[] UnembedNames = ["in", "out"];
    private static readonly string[] LayerTypes = ["a", "attn", "attention", "m", "mlp", "b", "block", "blocks", "ln1", "ln2", "ln_final", "unembed"];

    private static IEnumerable<string> AllShortNames =>
        GlobalNames.Concat(BlockNames).Concat(AttnNames).Concat(MlpNames).Concat(MlpExtraNames).Concat(LnNames).Concat(NameAlias.Keys);

    /// <summary>
    /// TL's <c>get_act_name(name, layer, layer_type)</c>. Layers must be non-negative here (use the overload with
    /// <c>nLayers</c> to count from the end).
    /// </summary>
    public static string Get(string name, int? layer = null, string? layerType = null) => Get(name, layer, layerType, null);

    /// <summary>
    /// <see cref="Get(string, int?, string?)"/> for a model with <paramref name="nLayers"/> layers (null = unknown):
    /// a negative layer counts from the end (<c>-1</c> = last, as TL's <c>cache["resid_post", -1]</c>) and a layer
    /// outside <c>[-nLayers, nLayers - 1]</c> is an error.
    /// </summary>
    public static string Get(string name, int? layer, string? layerType, int? nLayers)
    {
        if (string.IsNullOrEmpty(name)) throw new SharpLensException("Activation name is empty. Give a hook name such as 'blocks.0.hook_resid_pre' or a short name such as 'resid_pre'.");
        if (nLayers is < 0) throw new SharpLensException($"nLayers must be non-negative; got {nLayers}.");
        string input = name;

        if ((name.Contains('.') || name.StartsWith("hook_", StringComparison.Ordinal)) && layer is null && layerType is null)
        {
            var bm = BlockPrefix.Match(name);
            if (bm.Success && nLayers is { } n) CheckLayer(ParseLayer(bm.Groups[1].Value, input), n, input);
            return name;
        }

        var m = TlShort.Match(name);
        if (!m.Success) m = UnderscoreShort.Match(name);
        if (m.Success)
        {
            name = m.Groups[1].Value;
            layer = ParseLayer(m.Groups[2].Value, input);
            layerType = m.Groups[3].Value;
        }

        if (layer is { } l)
        {
            if (nLayers is { } n) layer = CheckLayer(l, n, input);
            else if (l < 0) throw new SharpLensException($"Layer {l} is negative; to count from the end pass nLayers (ActName.Get(\"{input}\", {l}, {Quote(layerType)}, nLayers)).");
        }

        if (NameAlias.TryGetValue(name, out var alias)) name = alias;

        string? type = layerType;
        if (AttnNames.Contains(name)) type = "attn";
        else if (MlpNames.Contains(name)) type = "mlp";
        else if (type is not null && LayerTypeAlias.TryGetValue(type, out var t)) type = t;

        string full = (layer is null ? "" : $"blocks.{layer.Value.ToString(CultureInfo.InvariantCulture)}.")
            + (string.IsNullOrEmpty(type) ? "" : type + ".") + "hook_" + name;
        if (LnNames.Contains(name) && layer is null && type != "ln_final") full = "ln_final." + full;

        string? problem = Problem(name, layer, type ?? "");
        if (problem is not null) throw new SharpLensException($"Activation '{input}' (layer {(layer?.ToString(CultureInfo.InvariantCulture) ?? "none")}, layer type {Quote(layerType)}) would be '{full}', which is no TransformerLens hook: {problem}");
        return full;
    }

    /// <summary>Why (name, layer, type) is not a hook, or null when it is one.</summary>
    private static string? Problem(string name, int? layer, string type)
    {
        bool perLayer = BlockNames.Contains(name) || AttnNames.Contains(name) || MlpNames.Contains(name) || MlpExtraNames.Contains(name);
        if (!perLayer && !GlobalNames.Contains(name) && !LnNames.Contains(name) && !(UnembedNames.Contains(name) && type == "unembed"))
            return $"unknown activation name '{name}'." + NameSuggestions.DidYouMean(name, AllShortNames) + " Full hook names (containing '.') are used as given.";
        if (type != "" && !LayerTypeAlias.ContainsValue(type) && !LayerTypes.Contains(type))
            return $"unknown layer type '{type}'; allowed: {string.Join(", ", LayerTypes.Select(x => $"'{x}'"))}." + NameSuggestions.DidYouMean(type, LayerTypes);
        if (layer is null)
        {
            if (GlobalNames.Contains(name) && type == "") return null;
            if (LnNames.Contains(name) && type is "" or "ln_final") return null;
            if (UnembedNames.Contains(name) && type == "unembed") return null;
            if (LnNames.Contains(name)) return $"without a layer '{name}' means ln_final; for a block's norm give a layer and layer type 'ln1' or 'ln2'.";
            if (perLayer) return $"'{name}' exists in every block; give a layer, e.g. ActName.Get(\"{name}\", 0).";
            return $"'{name}' takes no layer type here.";
        }
        bool ok = type switch
        {
            "" => BlockNames.Contains(name),
            "attn" => AttnNames.Contains(name),
            "mlp" => MlpNames.Contains(name) || MlpExtraNames.Contains(name),
            "ln1" or "ln2" => LnNames.Contains(name),
            _ => false,
        };
        if (ok) return null;
        if (GlobalNames.Contains(name)) return $"'{name}' is not per-layer; call ActName.Get(\"{name}\") without a layer.";
        if (LnNames.Contains(name)) return $"a block's '{name}' needs layer type 'ln1' or 'ln2' (ln_final has no layer).";
        if (type is "ln_final" or "unembed") return $"layer type '{type}' takes no layer.";
        if (BlockNames.Contains(name)) return $"'{name}' belongs to the block itself; leave the layer type out (or use 'b').";
        return $"'{name}' is not an activation of '{type}'.";
    }

    private static int ParseLayer(string digits, string input) =>
        int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var v)
            ? v : throw new SharpLensException($"Layer '{digits}' in '{input}' is too large.");

    private static int CheckLayer(int layer, int nLayers, string input)
    {
        int resolved = layer < 0 ? layer + nLayers : layer;
        if (resolved < 0 || resolved >= nLayers)
            throw new SharpLensException($"Layer {layer} in '{input}' is out of range: the model has {nLayers} layers, so the layer must be in [{-nLayers}, {nLayers - 1}].");
        return resolved;
    }

    private static string Quote(string? s) => s is null ? "null" : $"\"{s}\"";
}
