using System.Globalization;
using System.Text.Json.Nodes;

namespace SharpLens.Sae;

/// <summary>How an SAE turns pre-activations into feature activations (SAELens's <c>architecture</c>).</summary>
public enum SaeArchitecture
{
    /// <summary><c>standard</c>: ReLU.</summary>
    Standard,
    /// <summary><c>topk</c>: the k largest pre-activations (then ReLU), the rest 0.</summary>
    TopK,
    /// <summary><c>jumprelu</c>: ReLU where the pre-activation exceeds a per-feature threshold.</summary>
    JumpReLU,
    /// <summary><c>gated</c>: a gate decides which features fire, a magnitude path how strongly.</summary>
    Gated,
}

/// <summary>
/// An SAE's configuration in SAELens 6.x terms (<c>cfg.json</c>). Older configs (no <c>sae_lens_version</c>, or
/// one below 6.0) are converted the way SAELens's <c>handle_pre_6_0_config</c> does.
/// </summary>
public sealed record SaeConfig
{
    /// <summary>SAELens's architecture names, in <see cref="SaeArchitecture"/> order.</summary>
    public static readonly IReadOnlyList<string> ArchitectureNames = ["standard", "topk", "jumprelu", "gated"];

    /// <summary>Input normalisation modes SAELens knows.</summary>
    public static readonly IReadOnlyList<string> NormalizationModes = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];

    /// <summary>The architecture.</summary>
    public required SaeArchitecture Architecture { get; init; }
    /// <summary>Input width (for <c>hook_z</c> SAEs n_heads·d_head).</summary>
    public required int DIn { get; init; }
    /// <summary>Number of features.</summary>
    public required int DSae { get; init; }
    /// <summary>The model hook the SAE reads and replaces (<c>metadata.hook_name</c>).</summary>
    public required string HookName { get; init; }
    /// <summary>Subtract <c>b_dec</c> from the input before encoding.</summary>
    public bool ApplyBDecToInput { get; init; } = true;
    /// <summary>
    /// <c>none</c>, <c>layer_norm</c>, <c>constant_norm_rescale</c> or <c>expected_average_only_in</c> (no runtime
    /// effect: only SAELens's <c>from_pretrained</c> folds a known factor into the weights).
    /// </summary>
    public string NormalizeActivations { get; init; } = "none";
    /// <summary>Flatten <c>[..., head, d_head]</c> to <c>[..., d_in]</c> on the way in and back on the way out (<c>reshape_activations = "hook_z"</c>).</summary>
    public bool ReshapeHookZ { get; init; }
    /// <summary>TopK's k.</summary>
    public int K { get; init; }
    /// <summary>TopK: scale pre-activations by the decoder row norms before choosing (and divide them out when decoding).</summary>
    public bool RescaleActsByDecoderNorm { get; init; }
    /// <summary>The model the SAE was trained on (<c>metadata.model_name</c>), if recorded.</summary>
    public string? ModelName { get; init; }
    /// <summary>The config as read (after the pre-6.0 conversion), for keys this record does not model.</summary>
    public JsonObject Raw { get; init; } = [];

    /// <summary>Parses a <c>cfg.json</c>; <paramref name="hookOverride"/> replaces the recorded hook name.</summary>
    public static SaeConfig FromJson(JsonObject cfg, string source, string? hookOverride = null)
    {
        cfg = (JsonObject)cfg.DeepClone();
        var meta = cfg["metadata"] as JsonObject;
        string? version = Str(cfg, "sae_lens_version") ?? (meta is null ? null : Str(meta, "sae_lens_version"));
        if (version is null || MajorVersion(version) < 6) cfg = UpgradePre6(cfg);
        meta = cfg["metadata"] as JsonObject ?? [];

        string arch = Text(cfg, "architecture", source) ?? "standard";
        int archIndex = ArchitectureNames.ToList().IndexOf(arch);
        if (archIndex < 0)
            throw new SharpLensException($"{source}: unknown SAE architecture '{arch}'. Supported: {string.Join(", ", ArchitectureNames)}." +
                NameSuggestions.DidYouMean(arch, ArchitectureNames));
        string norm = Text(cfg, "normalize_activations", source) ?? "none";
        if (!NormalizationModes.Contains(norm))
            throw new SharpLensException($"{source}: unknown normalize_activations '{norm}'. Supported: {string.Join(", ", NormalizationModes)}." +
                NameSuggestions.DidYouMean(norm, NormalizationModes));
        string reshape = Text(cfg, "reshape_activations", source) ?? "none";
        if (reshape is not ("none" or "hook_z"))
            throw new SharpLensException($"{source}: unknown reshape_activations '{reshape}'. Supported: none, hook_z.");
        string? hook = hookOverride ?? Text(meta, "hook_name", source) ?? Text(cfg, "hook_name", source);
        if (string.IsNullOrEmpty(hook))
            throw new SharpLensException($"{source}: the config names no hook (metadata.hook_name); pass the hook explicitly (--sae-hook).");
        var c = new SaeConfig
        {
            Architecture = (SaeArchitecture)archIndex,
            DIn = Int(cfg, "d_in", source),
            DSae = Int(cfg, "d_sae", source),
            HookName = hook,
            ApplyBDecToInput = Bool(cfg, "apply_b_dec_to_input") ?? true,
            NormalizeActivations = norm,
            ReshapeHookZ = reshape == "hook_z",
            K = cfg["k"] is null ? 0 : Int(cfg, "k", source),
            RescaleActsByDecoderNorm = Bool(cfg, "rescale_acts_by_decoder_norm") ?? false,
            ModelName = Str(meta, "model_name") ?? Str(cfg, "model_name"),
            Raw = cfg,
        };
        if (c.DIn <= 0 || c.DSae <= 0) throw new SharpLensException($"{source}: d_in and d_sae must be positive, got {c.DIn} and {c.DSae}.");
        if (c.Architecture == SaeArchitecture.TopK && (c.K <= 0 || c.K > c.DSae))
            throw new SharpLensException($"{source}: a topk SAE needs 1 <= k <= d_sae = {c.DSae}, got k = {c.K}.");
        return c;
    }

    private static int MajorVersion(string v) =>
        int.TryParse(v.Split('.', '-')[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int m) ? m : 0;

    /// <summary>SAELens's <c>handle_pre_6_0_config</c>: old key names, defaults, hook name into metadata.</summary>
    private static JsonObject UpgradePre6(JsonObject old)
    {
        var cfg = new JsonObject();
        foreach (var (k, v) in old)
        {
            string key = k switch { "hook_point" => "hook_name", "hook_point_head_index" => "hook_head_index", "activation_fn_str" => "activation_fn", _ => k };
            cfg[key] = v?.DeepClone();
        }
        cfg.TryAdd("apply_b_dec_to_input", true);
        cfg.TryAdd("architecture", "standard");
        string hook = Str(cfg, "hook_name") ?? "";
        cfg.TryAdd("reshape_activations", hook.Contains("hook_z", StringComparison.Ordinal) ? "hook_z" : "none");
        if (cfg["normalize_activations"] is JsonValue nv && nv.TryGetValue(out bool b))
            cfg["normalize_activations"] = b ? "expected_average_only_in" : "none";
        if (cfg["normalize_activations"] is null) cfg["normalize_activations"] = "none";
        // Before 6.0 a TopK SAE was a "standard" one with activation_fn "topk" and activation_fn_kwargs.k.
        if (Str(cfg, "activation_fn") == "topk" && Str(cfg, "architecture") == "standard") cfg["architecture"] = "topk";
        if (Str(cfg, "architecture") == "topk" && cfg["activation_fn_kwargs"] is JsonObject kw && kw["k"] is not null)
            cfg["k"] = kw["k"]!.DeepClone();
        var meta = cfg["metadata"] as JsonObject ?? [];
        foreach (var key in new[] { "hook_name", "hook_head_index", "model_name", "prepend_bos", "context_size", "dataset_path", "neuronpedia_id" })
            if (cfg[key] is not null && meta[key] is null) meta[key] = cfg[key]!.DeepClone();
        cfg["metadata"] = meta;
        return cfg;
    }

    private static string? Str(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    /// <summary>A string field that is absent (null) or a string; any other JSON type is an error, not a default.</summary>
    private static string? Text(JsonObject o, string key, string source) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        var other => throw new SharpLensException($"{source}: '{key}' must be a string, got {other.ToJsonString()}."),
    };

    private static bool? Bool(JsonObject o, string key) =>
        o[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;

    private static int Int(JsonObject o, string key, string source)
    {
        if (o[key] is JsonValue v)
        {
            if (v.TryGetValue(out int i)) return i;
            if (v.TryGetValue(out double d) && d == Math.Floor(d)) return (int)d;
        }
        throw new SharpLensException($"{source}: '{key}' must be an integer, got {o[key]?.ToJsonString() ?? "nothing"}.");
    }
}
