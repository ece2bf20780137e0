using System.Text.Json;

namespace SharpLens.Tokenization;

/// <summary>
/// What <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> in a tokenizer's folder say (the second
/// overrides the first, as transformers does): special-token strings, whether BOS is added, added tokens.
/// A key that is present with <c>null</c> (Qwen2's <c>"bos_token": null</c>) counts as set to "none".
/// </summary>
internal sealed class TokenizerConfigFiles
{
    /// <summary>Special-token strings; null when not configured, "" never.</summary>
    public string? Bos { get; private set; }
    public string? Eos { get; private set; }
    public string? Pad { get; private set; }
    public string? Unk { get; private set; }
    /// <summary>True for keys the files mention (also with null), so "no BOS" is distinguishable from "not said".</summary>
    public HashSet<string> Mentioned { get; } = [];
    /// <summary><c>add_bos_token</c>, when given.</summary>
    public bool? AddBosToken { get; private set; }
    /// <summary><c>tokenizer_class</c>, when given (e.g. <c>Qwen2Tokenizer</c>).</summary>
    public string? TokenizerClass { get; private set; }
    /// <summary><c>added_tokens_decoder</c>: id → content.</summary>
    public List<(int Id, string Content)> AddedDecoder { get; } = [];
    /// <summary>Whether any of the two files exists.</summary>
    public bool Any { get; private set; }

    public static TokenizerConfigFiles Read(string folder)
    {
        var c = new TokenizerConfigFiles();
        foreach (var file in new[] { "tokenizer_config.json", "special_tokens_map.json" })
        {
            string path = Path.Combine(folder, file);
            if (!File.Exists(path)) continue;
            c.Any = true;
            using var doc = Json.Read(path);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new SharpLensException($"{path}: must be a JSON object.");
            c.Bos = c.Token(r, "bos_token", c.Bos);
            c.Eos = c.Token(r, "eos_token", c.Eos);
            c.Pad = c.Token(r, "pad_token", c.Pad);
            c.Unk = c.Token(r, "unk_token", c.Unk);
            if (r.TryGetProperty("add_bos_token", out var ab) && ab.ValueKind is JsonValueKind.True or JsonValueKind.False)
                c.AddBosToken = ab.GetBoolean();
            if (Json.Str(r, "tokenizer_class") is { } cls) c.TokenizerClass = cls;
            if (r.TryGetProperty("added_tokens_decoder", out var ad) && ad.ValueKind == JsonValueKind.Object)
                foreach (var p in ad.EnumerateObject())
                {
                    if (!int.TryParse(p.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                        throw new SharpLensException($"{path}: added_tokens_decoder key {TextEncoding.Excerpt(p.Name, 40)} is not a token id (a non-negative integer).");
                    if (Json.Str(p.Value, "content") is { } content) c.AddedDecoder.Add((id, content));
                }
        }
        return c;
    }

    // A special token is written either as "text" or as {"content": "text", ...}; null means "none".
    private string? Token(JsonElement root, string key, string? current)
    {
        if (!root.TryGetProperty(key, out var v)) return current;
        Mentioned.Add(key);
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => Json.Str(v, "content"),
            _ => null,
        };
    }
}
