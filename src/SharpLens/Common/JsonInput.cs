using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpLens;

/// <summary>
/// Strict reading of JSON files that users hand to SharpLens (config.json, tokenizer files, prompt files, safetensors
/// headers ...): the text must be valid UTF-8 (checked up front, because System.Text.Json only notices a bad byte inside
/// a string when that string is read), a key may appear only once per object (Python's json keeps the last one
/// silently, which hides a broken file), nesting is limited to 64 levels, and a failure to read the file is reported.
/// Every problem becomes a <see cref="SharpLensException"/> whose message starts with the file and says what is wrong.
/// <see cref="OptionalString"/> names the field and the type found (config.json fields: <c>HfConfig</c>).
/// </summary>
public static class JsonInput
{
    /// <summary>The parser options used for user files: no duplicate keys, at most 64 levels, no comments.</summary>
    public static JsonDocumentOptions DocumentOptions { get; } = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>Makes the exception for a message (a subclass such as SafetensorsFormatException for weight files).</summary>
    public delegate SharpLensException ErrorFactory(string message, Exception? inner);

    private static readonly ErrorFactory DefaultError = (m, e) => e is null ? new SharpLensException(m) : new SharpLensException(m, e);

    /// <summary>The bytes of <paramref name="path"/>; a missing or unreadable file is a <see cref="SharpLensException"/>.</summary>
    public static byte[] ReadFile(string path)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SharpLensException(e is FileNotFoundException or DirectoryNotFoundException
                ? $"{path}: file not found." : $"{path}: cannot be read: {e.Message}", e);
        }
    }

    /// <summary>Reads and parses the JSON file <paramref name="path"/> (see the class remarks for what is checked).</summary>
    public static JsonDocument ParseFile(string path) => Parse(path, ReadFile(path));

    /// <summary>Reads the JSON file <paramref name="path"/> as a mutable node tree (null for a file holding <c>null</c>).</summary>
    public static JsonNode? ParseFileNode(string path)
    {
        using var doc = ParseFile(path);
        return doc.RootElement.ValueKind == JsonValueKind.Null ? null
            : doc.RootElement.ValueKind switch
            {
                JsonValueKind.Object => JsonObject.Create(doc.RootElement.Clone()),
                JsonValueKind.Array => JsonArray.Create(doc.RootElement.Clone()),
                _ => JsonValue.Create(doc.RootElement.Clone()),
            };
    }

    /// <summary>
    /// Parses <paramref name="utf8"/>, which came from <paramref name="source"/> (a file path, or "path: header" — the
    /// start of every message). A UTF-8 byte-order mark is skipped.
    /// </summary>
    public static JsonDocument Parse(string source, ReadOnlyMemory<byte> utf8, ErrorFactory? error = null)
    {
        error ??= DefaultError;
        if (utf8.Span.StartsWith("\xEF\xBB\xBF"u8)) utf8 = utf8[3..];
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
        {
            var (offset, line) = FirstInvalidUtf8(utf8.Span);
            throw error($"{source}: invalid UTF-8 at byte {offset} (line {line}); JSON text must be UTF-8. The file is damaged or in another encoding.", null);
        }
        JsonDocument doc;
        try { doc = JsonDocument.Parse(utf8, DocumentOptions); }
        catch (JsonException e)
        {
            string where = e.LineNumber is long l ? $" at line {l + 1}, column {e.BytePositionInLine + 1}" : "";
            throw error($"{source}: not valid JSON{where}: {OneLine(e.Message)}", e);
        }
        catch (InvalidOperationException e) // the duplicate-key check unescapes keys: an unpaired surrogate escape in one
        {
            throw error($"{source}: a key holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF without its partner), " +
                "which is not valid Unicode. The file is damaged.", e);
        }
        // An escaped unpaired surrogate ("\uD800") parses, but reading that string later throws InvalidOperationException
        // wherever it happens to be read: check every string now (only when such an escape may be present).
        if (MayHoldSurrogateEscape(utf8.Span))
        {
            try { ReadAllStrings(doc.RootElement); }
            catch (InvalidOperationException e)
            {
                doc.Dispose();
                throw error($"{source}: a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF without its partner), " +
                    "which is not valid Unicode. The file is damaged.", e);
            }
        }
        return doc;
    }

    private static bool MayHoldSurrogateEscape(ReadOnlySpan<byte> s)
    {
        for (int i = s.IndexOf("\\u"u8); i >= 0 && i + 3 < s.Length; )
        {
            if (s[i + 2] is (byte)'d' or (byte)'D' && s[i + 3] is (byte)'8' or (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F') return true;
            int next = s[(i + 2)..].IndexOf("\\u"u8);
            i = next < 0 ? -1 : i + 2 + next;
        }
        return false;
    }

    private static void ReadAllStrings(JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String: _ = e.GetString(); break;
            case JsonValueKind.Array: foreach (var x in e.EnumerateArray()) ReadAllStrings(x); break;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject()) { _ = p.Name; ReadAllStrings(p.Value); }
                break;
        }
    }

    /// <summary>The parser quotes the offending text, which may span lines; error messages stay on one line.</summary>
    private static string OneLine(string s) => s.ReplaceLineEndings("\\n");

    private static (int Offset, int Line) FirstInvalidUtf8(ReadOnlySpan<byte> s)
    {
        int i = 0, line = 1;
        while (i < s.Length)
        {
            if (Rune.DecodeFromUtf8(s[i..], out var r, out int n) != System.Buffers.OperationStatus.Done) return (i, line);
            if (r.Value == '\n') line++;
            i += n;
        }
        return (i, line);
    }

    /// <summary>A short description of a JSON value for messages: its kind and, when small, its text.</summary>
    public static string Describe(JsonNode? v)
    {
        if (v is null) return "null";
        string text = v.ToJsonString();
        string kind = v.GetValueKind() switch
        {
            JsonValueKind.String => "string", JsonValueKind.Number => "number", JsonValueKind.Object => "object",
            JsonValueKind.Array => "array", JsonValueKind.True or JsonValueKind.False => "boolean", var k => k.ToString().ToLowerInvariant(),
        };
        return text.Length <= 40 ? $"{kind} {text}" : kind;
    }

    private static SharpLensException WrongType(string where, string key, string expected, JsonNode? v) =>
        new($"{where}: field '{key}' must be {expected}, got {Describe(v)}.");

    /// <summary>An optional string field: null when absent or JSON null.</summary>
    public static string? OptionalString(JsonObject o, string key, string where)
    {
        var v = o[key];
        if (v is null) return null;
        return v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String ? jv.GetValue<string>() : throw WrongType(where, key, "a string", v);
    }
}
