using System.Text.Json.Nodes;

namespace SharpLens.Loading;

/// <summary>
/// Typed reads of a Hugging Face <c>config.json</c> with errors that name the file's model and the field, shared by
/// every family's config mapping.
/// </summary>
public sealed class HfConfig(JsonObject json, string modelName)
{
    /// <summary>The parsed config.json.</summary>
    public JsonObject Json { get; } = json;

    /// <summary>The model the config belongs to (for messages).</summary>
    public string ModelName { get; } = modelName;

    /// <summary>Whether the field is present and not null.</summary>
    public bool Has(string key) => Json[key] is JsonValue;

    /// <summary>A required integer field.</summary>
    public int Int(string key) => OptInt(key) ?? throw Error($"field '{key}' is missing; this architecture needs it");

    /// <summary>An optional integer field (null when absent or null).</summary>
    public int? OptInt(string key) => Json[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out int i) => i,
        JsonValue v when v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue => (int)d,
        var other => throw Error($"field '{key}' must be an integer, got {other.ToJsonString()}"),
    };

    /// <summary>An optional number field.</summary>
    public double? OptDouble(string key) => Json[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out double d) => d,
        var other => throw Error($"field '{key}' must be a number, got {other.ToJsonString()}"),
    };

    /// <summary>An optional boolean field.</summary>
    public bool? OptBool(string key) => Json[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out bool b) => b,
        var other => throw Error($"field '{key}' must be true or false, got {other.ToJsonString()}"),
    };

    /// <summary>An optional string field.</summary>
    public string? OptString(string key) => Json[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        var other => throw Error($"field '{key}' must be a string, got {other.ToJsonString()}"),
    };

    /// <summary>d_model / n_heads from two integer fields, which must divide evenly.</summary>
    public int HeadDim(string dModelKey, string headsKey)
    {
        int d = Int(dModelKey), h = Int(headsKey);
        return h > 0 && d % h == 0 ? d / h : throw Error($"{dModelKey} {d} is not divisible by {headsKey} {h}");
    }

    /// <summary>An error about this config.json.</summary>
    public SharpLensException Error(string message) => new($"config.json of '{ModelName}': {message}.");
}
