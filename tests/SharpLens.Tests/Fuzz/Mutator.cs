using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// A small seeded mutator for damaged-input tests: byte-level damage (truncate, flip, insert, delete, invalid UTF-8)
/// and, for JSON, structural damage (a value of the wrong type, huge or negative numbers, deep nesting, a removed or
/// duplicated key, invalid UTF-8 inside a string). Everything derives from one <see cref="Random"/> seed, so a failing
/// case is reproduced by its seed and iteration, which <see cref="Fuzzer"/> prints.
/// </summary>
internal sealed class Mutator(int seed)
{
    private readonly Random _rng = new(seed);

    public Random Rng => _rng;

    /// <summary>One to three byte-level mutations of <paramref name="valid"/>, biased towards <paramref name="hot"/> bytes (e.g. a header).</summary>
    public byte[] Bytes(byte[] valid, out string what, int hot = int.MaxValue)
    {
        var b = valid.ToList();
        var steps = new List<string>();
        int n = 1 + _rng.Next(3);
        for (int k = 0; k < n; k++)
        {
            int limit = Math.Max(1, Math.Min(b.Count, _rng.Next(4) == 0 ? int.MaxValue : hot));
            int at = _rng.Next(Math.Max(1, Math.Min(limit, b.Count)));
            switch (_rng.Next(7))
            {
                case 0: // truncate
                    b.RemoveRange(Math.Min(at, b.Count), b.Count - Math.Min(at, b.Count)); steps.Add($"truncate@{at}"); break;
                case 1 when b.Count > 0: // flip bits of one byte
                    b[at] ^= (byte)(1 + _rng.Next(255)); steps.Add($"flip@{at}"); break;
                case 2: // insert random bytes
                    var ins = new byte[1 + _rng.Next(8)]; _rng.NextBytes(ins);
                    b.InsertRange(Math.Min(at, b.Count), ins); steps.Add($"insert{ins.Length}@{at}"); break;
                case 3 when b.Count > 0: // delete a range
                    int len = Math.Min(1 + _rng.Next(16), b.Count - at); b.RemoveRange(at, len); steps.Add($"delete{len}@{at}"); break;
                case 4 when b.Count > 0: // a byte that is never valid UTF-8, or a lone continuation / lead byte
                    b[at] = (byte)(new[] { 0xFF, 0xFE, 0xC0, 0x80, 0xE2 })[_rng.Next(5)]; steps.Add($"badutf8@{at}"); break;
                case 5 when b.Count > 0: // an extreme byte (0 or 0xFF runs make huge lengths/offsets)
                    int run = Math.Min(1 + _rng.Next(8), b.Count - at);
                    byte v = _rng.Next(2) == 0 ? (byte)0 : (byte)0xFF;
                    for (int i = 0; i < run; i++) b[at + i] = v;
                    steps.Add($"fill{run}x{v:x2}@{at}"); break;
                default: // duplicate a range in place
                    if (b.Count == 0) break;
                    int dl = Math.Min(1 + _rng.Next(32), b.Count - at);
                    b.InsertRange(at, b.GetRange(at, dl)); steps.Add($"dup{dl}@{at}"); break;
            }
        }
        what = string.Join(",", steps);
        return [.. b];
    }

    /// <summary>Values no reader expects where a field normally is.</summary>
    private JsonNode? WeirdValue()
    {
        switch (_rng.Next(16))
        {
            case 0: return null;
            case 1: return JsonValue.Create("x");
            case 2: return JsonValue.Create(true);
            case 3: return new JsonArray();
            case 4: return new JsonObject();
            case 5: return JsonValue.Create(-1);
            case 6: return JsonValue.Create(0);
            case 7: return JsonValue.Create(long.MaxValue);
            case 8: return JsonValue.Create(1e300);
            case 9: return JsonNode.Parse("123456789012345678901234567890");
            case 10: return JsonValue.Create(2147483648L);
            case 11: return JsonValue.Create(0.5);
            case 12: return JsonValue.Create(-9223372036854775808L);
            case 13: return JsonValue.Create(new string('a', 5000));
            case 14: return new JsonArray(JsonValue.Create(-5), JsonValue.Create("y"), null);
            default: return JsonValue.Create(65536);
        }
    }

    /// <summary>
    /// A structural mutation of a JSON document: a random walk from the root picks a node (top-level fields are as
    /// likely as deep ones) whose value becomes one of <see cref="WeirdValue"/>, is removed, or is nested deeply.
    /// Some mutations are textual: a duplicated key, invalid UTF-8 inside a string, deep nesting beyond the parser limit.
    /// </summary>
    public byte[] Json(byte[] valid, out string what)
    {
        var root = JsonNode.Parse(valid, documentOptions: new JsonDocumentOptions { MaxDepth = 256 });
        int kind = _rng.Next(10);
        if (kind == 0) return TextDuplicateKey(valid, out what);
        if (kind == 1) return TextBadUtf8InString(valid, out what);
        if (root is null) { what = "null root"; return valid; }
        var steps = new List<string>();
        int n = 1 + _rng.Next(2);
        for (int k = 0; k < n; k++)
        {
            var (parent, key, index) = Pick(root);
            if (parent is null) { root = WeirdValue() ?? new JsonArray(); steps.Add("root"); continue; }
            string at = key ?? $"[{index}]";
            switch (_rng.Next(5))
            {
                case 0 when key is not null: ((JsonObject)parent).Remove(key); steps.Add($"remove {at}"); break;
                case 1: Set(parent, key, index, Nest(_rng.Next(2) == 0 ? 40 : 2000)); steps.Add($"nest {at}"); break;
                default: Set(parent, key, index, WeirdValue()); steps.Add($"weird {at}"); break;
            }
        }
        what = string.Join(",", steps);
        return Encoding.UTF8.GetBytes(root.ToJsonString(new JsonSerializerOptions { MaxDepth = 4096 }));
    }

    private static JsonNode Nest(int depth)
    {
        JsonNode n = JsonValue.Create(1);
        for (int i = 0; i < depth; i++) n = i % 2 == 0 ? new JsonArray(n) : new JsonObject { ["k"] = n };
        return n;
    }

    private (JsonNode? Parent, string? Key, int Index) Pick(JsonNode root)
    {
        JsonNode? parent = null; string? key = null; int index = -1;
        var node = root;
        while (true)
        {
            if (parent is not null && _rng.Next(3) == 0) return (parent, key, index);
            switch (node)
            {
                case JsonObject o when o.Count > 0:
                    var kv = o.ElementAt(_rng.Next(o.Count));
                    (parent, key, index) = (o, kv.Key, -1);
                    if (kv.Value is null) return (parent, key, index);
                    node = kv.Value; break;
                case JsonArray a when a.Count > 0:
                    int i = _rng.Next(a.Count);
                    (parent, key, index) = (a, null, i);
                    if (a[i] is null) return (parent, key, index);
                    node = a[i]!; break;
                default: return (parent, key, index);
            }
        }
    }

    private static void Set(JsonNode parent, string? key, int index, JsonNode? value)
    {
        if (parent is JsonObject o) o[key!] = value;
        else ((JsonArray)parent)[index] = value;
    }

    /// <summary>Repeats one <c>"key": value</c> pair right after itself (a duplicate key in the same object).</summary>
    private byte[] TextDuplicateKey(byte[] valid, out string what)
    {
        string s = Encoding.UTF8.GetString(valid);
        var keys = System.Text.RegularExpressions.Regex.Matches(s, "\"[^\"\\\\]*\"\\s*:\\s*(\"[^\"\\\\]*\"|-?[0-9.eE+]+|true|false|null)");
        if (keys.Count == 0) { what = "no key"; return valid; }
        var m = keys[_rng.Next(keys.Count)];
        what = $"dupkey@{m.Index}";
        return Encoding.UTF8.GetBytes(s.Insert(m.Index + m.Length, ", " + m.Value));
    }

    /// <summary>Puts a byte that is not UTF-8, or an escaped unpaired surrogate, inside a string (key or value), where the parser does not look.</summary>
    private byte[] TextBadUtf8InString(byte[] valid, out string what)
    {
        var quotes = Enumerable.Range(0, valid.Length).Where(i => valid[i] == (byte)'"').ToList();
        if (quotes.Count == 0) { what = "no string"; return valid; }
        int q = quotes[_rng.Next(quotes.Count)];
        if (_rng.Next(3) == 0)
        {
            // Valid UTF-8, valid JSON syntax, but an escaped unpaired surrogate: only reading the string fails.
            what = $"lone-surrogate-escape@{q}";
            return [.. valid[..(q + 1)], .. "\\ud800"u8, .. valid[(q + 1)..]];
        }
        what = $"badutf8-in-string@{q}";
        return [.. valid[..(q + 1)], 0xFF, .. valid[(q + 1)..]];
    }
}
