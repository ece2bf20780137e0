using System.Text.Json.Nodes;

namespace SharpLens.Loading;

/// <summary>config.json reads that several families share beyond <see cref="HfConfig"/>'s typed fields.</summary>
public static class HfConfigExtensions
{
    /// <summary>A token id field; a list (several EOS ids, as Gemma 3 ships) gives its first entry.</summary>
    public static int? TokenId(this HfConfig c, string key) => c.Json[key] is JsonArray a
        ? a.Count == 0 ? null : a[0] is JsonValue v && v.TryGetValue(out int i) ? i : throw c.Error($"field '{key}' must hold integers, got {a.ToJsonString()}")
        : c.OptInt(key);

    /// <summary>An optional list of strings (null when absent or null).</summary>
    public static IReadOnlyList<string>? OptStringList(this HfConfig c, string key) => c.Json[key] switch
    {
        null => null,
        JsonArray a when a.All(x => x is JsonValue v && v.TryGetValue(out string? _)) => a.Select(x => x!.GetValue<string>()).ToList(),
        var other => throw c.Error($"field '{key}' must be a list of strings, got {other.ToJsonString()}"),
    };

    /// <summary>
    /// d_head: <c>head_dim</c> when the config sets it (it need not be hidden_size / heads), else
    /// hidden_size / num_attention_heads, which must then divide exactly.
    /// </summary>
    public static int HeadDim(this HfConfig c, int dModel, int nHeads)
    {
        if (c.OptInt("head_dim") is { } dh) return dh;
        if (nHeads <= 0) throw c.Error($"num_attention_heads must be positive, got {nHeads}");
        if (dModel % nHeads != 0)
            throw c.Error($"hidden_size {dModel} is not divisible by num_attention_heads {nHeads}, and there is no head_dim field");
        return dModel / nHeads;
    }

    /// <summary>The <c>rope_scaling</c> type (<c>rope_type</c>, or the older <c>type</c>); null when absent or <c>default</c>.</summary>
    public static string? RopeScalingType(this HfConfig c)
    {
        if (c.Json["rope_scaling"] is not JsonObject rs) return null;
        string? type = (rs["rope_type"] ?? rs["type"]) is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        return type is null or "default" ? null : type;
    }
}
