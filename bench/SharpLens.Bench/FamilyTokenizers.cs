using System.Text.Json.Nodes;
using SharpLens.Tokenization;

namespace SharpLens.Bench;

/// <summary>
/// Tokens/s of each family tokenizer (Llama 2, Mistral, NeoX, Qwen2, Llama 3) on the bench's English paragraphs,
/// loaded from the test fixtures (tests/SharpLens.Tests/fixtures/tokenizers, found from the repository root).
/// </summary>
internal static class FamilyTokenizers
{
    private static readonly (string Family, string Path)[] s_sources =
    [
        ("llama2", "llama2"), ("mistral", "mistral/tokenizer.model.v1"), ("neox", "neox/20B_tokenizer.json"),
        ("qwen2", "qwen2"), ("llama3", "llama3"),
    ];

    /// <summary>The fixtures folder, or null when the bench runs outside a checkout.</summary>
    public static string? FindFixtures()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "SharpLens.Tests", "fixtures", "tokenizers");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>{family: {tokens, median_ms, tokens_per_s}}, each family encoding every paragraph once per run.</summary>
    public static JsonObject Run(IReadOnlyList<string> paragraphs, int runs, string fixtures, Action<string> log)
    {
        var result = new JsonObject();
        foreach (var (family, rel) in s_sources)
        {
            log($"tokenizer {family} ...");
            var tok = TokenizerLoader.FromPath(Path.Combine(fixtures, rel));
            long n = paragraphs.Sum(p => (long)tok.Encode(p).Count);   // also the warm-up (fills the word caches)
            var t = Measure.Time(0, runs, () => { foreach (var p in paragraphs) tok.Encode(p); });
            result[family] = new JsonObject
            {
                ["tokens"] = n, ["median_ms"] = Math.Round(t.MedianMs, 3), ["tokens_per_s"] = Math.Round(n / (t.MedianMs / 1000)),
            };
        }
        return result;
    }
}
