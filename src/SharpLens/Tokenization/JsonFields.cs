using System.Text.Json;

namespace SharpLens.Tokenization;

/// <summary>Small JSON helpers shared by the tokenizer readers.</summary>
internal static class Json
{
    public static JsonDocument Read(string path)
    {
        if (!File.Exists(path)) throw new SharpLensException($"tokenizer file not found: {path}");
        return JsonInput.ParseFile(path);
    }

    public static string? Str(JsonElement e, string key) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static bool Bool(JsonElement e, string key, bool missing = false) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean() : missing;
}
