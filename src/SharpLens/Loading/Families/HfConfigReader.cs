using System.Text.Json.Nodes;

namespace SharpLens.Loading;

/// <summary>
/// Typed reads of a Hugging Face <c>config.json</c> for a family's config mapping: every missing or mistyped field
/// fails with the field name, the model and what was expected; optional fields fall back to the Hugging Face
/// config-class default (a key present with <c>null</c> counts as absent, as in the HF classes).
/// </summary>
internal sealed class HfConfigReader(JsonObject hf, string modelName, string family)
{
    /// <summary>The raw JSON object.</summary>
    public JsonObject Json => hf;

    /// <summary>True when the field is present and not null.</summary>
    public bool Has(string key) => hf[key] is not null;

    /// <summary>A required integer field.</summary>
    public int Int(string key) => OptInt(key) ?? throw Error($"field '{key}' is missing; {family} configs need it.");

    /// <summary>An optional integer field.</summary>
    public int? OptInt(string key) => hf[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonValue v when v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) <= int.MaxValue => (int)d,
        var other => throw Error($"field '{key}' must be an integer, got {other.ToJsonString()}."),
    };

    /// <summary>An optional number field, or <paramref name="fallback"/>.</summary>
    public double Double(string key, double fallback) => hf[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out double d) => d,
        var other => throw Error($"field '{key}' must be a number, got {other.ToJsonString()}."),
    };

    /// <summary>An optional boolean field, or <paramref name="fallback"/>.</summary>
    public bool Bool(string key, bool fallback) => hf[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out bool b) => b,
        var other => throw Error($"field '{key}' must be true or false, got {other.ToJsonString()}."),
    };

    /// <summary>An optional string field, or <paramref name="fallback"/>.</summary>
    public string String(string key, string fallback) => hf[key] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue(out string? s) => s,
        var other => throw Error($"field '{key}' must be a string, got {other.ToJsonString()}."),
    };

    /// <summary>d_model / n_heads, which must divide evenly.</summary>
    public int HeadDim(string modelKey, int dModel, string headsKey, int nHeads) =>
        nHeads > 0 && dModel % nHeads == 0 ? dModel / nHeads
            : throw Error($"{modelKey} {dModel} is not divisible by {headsKey} {nHeads}.");

    /// <summary>An error about this config.json.</summary>
    public SharpLensException Error(string message) => new($"config.json of '{modelName}' ({family}): {message}");
}
