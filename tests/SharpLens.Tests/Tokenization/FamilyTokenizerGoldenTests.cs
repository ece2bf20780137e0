using System.Collections.Concurrent;
using System.Text.Json;
using SharpLens.Tokenization;

namespace SharpLens.Tests.Tokenization;

/// <summary>
/// The tokenizers of Llama 2, Mistral, GPT-NeoX/Pythia, Qwen2 and Llama 3 against fixtures/tokenizers (references:
/// sentencepiece, Hugging Face tokenizers, tiktoken; 106 cases each): ids without special tokens, ids with the
/// tokenizer's own BOS, vocabulary pieces and decoded text.
/// </summary>
public sealed class FamilyTokenizerGoldenTests
{
    internal static string FixturePath(params string[] parts) =>
        Path.Combine([AppContext.BaseDirectory, "fixtures", "tokenizers", .. parts]);

    /// <summary>Where each family's tokenizer is loaded from: a folder, or one file when the name is not the usual one.</summary>
    internal static string SourceOf(string family) => family switch
    {
        "mistral" => FixturePath("mistral", "tokenizer.model.v1"),
        "neox" => FixturePath("neox", "20B_tokenizer.json"),
        _ => FixturePath(family),
    };

    private static readonly ConcurrentDictionary<string, ITokenizer> s_tokenizers = new();

    internal static ITokenizer Load(string family) => s_tokenizers.GetOrAdd(family, f => TokenizerLoader.FromPath(SourceOf(f)));

    internal static JsonElement[] Cases(string family) =>
        JsonDocument.Parse(File.ReadAllText(FixturePath($"{family}_cases.json"))).RootElement.EnumerateArray().ToArray();

    public static TheoryData<string> Families => new() { "llama2", "mistral", "neox", "qwen2", "llama3" };

    [Theory]
    [MemberData(nameof(Families))]
    public void EveryGoldenCaseMatches(string family)
    {
        var tok = Load(family);
        var cases = Cases(family);
        Assert.Equal(106, cases.Length);
        var failures = new List<string>();
        foreach (var c in cases)
        {
            string text = c.GetProperty("text").GetString()!;
            int[] ids = Ints(c.GetProperty("ids"));
            string[] strTokens = c.GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()!).ToArray();
            string decoded = c.GetProperty("decoded").GetString()!;

            var got = tok.Encode(text).ToArray();
            if (!got.SequenceEqual(ids)) failures.Add($"ids of {TextEncoding.Quote(text)}: expected [{string.Join(", ", ids)}], got [{string.Join(", ", got)}]");
            // The tokenizer's own special tokens: [BOS] + ids for Llama 2, Mistral, Llama 3; nothing for NeoX, Qwen2.
            int[] withSpecial = c.TryGetProperty("ids_with_special", out var ws) ? Ints(ws) : ids;
            int[] gotWithSpecial = TextEncoding.ToTokenIds(tok, text, prependBos: tok.PrependsBos).ToArray();
            if (!gotWithSpecial.SequenceEqual(withSpecial)) failures.Add($"ids_with_special of {TextEncoding.Quote(text)}: got [{string.Join(", ", gotWithSpecial)}]");
            var pieces = ids.Select(tok.IdToToken).ToArray();
            if (!pieces.SequenceEqual(strTokens)) failures.Add($"str_tokens of {TextEncoding.Quote(text)}: got [{string.Join(", ", pieces)}]");
            string back = tok.Decode(ids);
            if (back != decoded) failures.Add($"decoded of {TextEncoding.Quote(text)}: expected {TextEncoding.Quote(decoded)}, got {TextEncoding.Quote(back)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(20)));
    }

    [Theory]
    [InlineData("llama2", true, 1, 2)]
    [InlineData("mistral", true, 1, 2)]
    [InlineData("llama3", true, 128000, 128001)]
    [InlineData("neox", false, 0, 0)]
    [InlineData("qwen2", false, 151645, 151645)]   // bos_token null: BOS falls back to EOS (<|im_end|> in this config), as TransformerLens sets it
    public void SpecialIdsAndVocabSizeAreTheFamilys(string family, bool prependsBos, int bos, int eos)
    {
        var tok = Load(family);
        Assert.Equal(prependsBos, tok.PrependsBos);
        Assert.Equal(bos, tok.BosTokenId);
        Assert.Equal(eos, tok.EosTokenId);
        int expectedSize = family switch { "llama2" or "mistral" => 32000, "llama3" => 128256, "neox" => 50277, _ => 151646 };
        Assert.Equal(expectedSize, tok.VocabSize);
    }

    [Fact]
    public void Llama3SpecialTokensHaveMetasNames()
    {
        var tok = Load("llama3");
        Assert.Equal("<|begin_of_text|>", tok.IdToToken(128000));
        Assert.Equal("<|eot_id|>", tok.IdToToken(128009));
        Assert.Equal("<|reserved_special_token_2|>", tok.IdToToken(128012));
        Assert.Equal("<|reserved_special_token_245|>", tok.IdToToken(128255));
        Assert.Equal([128006, 882, 128007], tok.Encode("<|start_header_id|>user<|end_header_id|>"));
    }

    [Fact]
    public void SentencePieceDecodesBrokenByteRunsAndSpecialsLikeHuggingFace()
    {
        var tok = Load("llama2");
        // <0xF0><0x9F> is half an emoji: one U+FFFD per byte, as the ByteFallback decoder gives.
        Assert.Equal("\uFFFD\uFFFD", tok.Decode([243, 162]));
        // BOS keeps its text; the dummy-prefix space goes only at the very start.
        Assert.Equal("<s> Hello", tok.Decode([1, 15043]));
        // TransformerLens's to_str_tokens decodes each id alone, so "▁Hello" shows without its space.
        Assert.Equal(["<s>", "Hello"], TextEncoding.ToStrTokens(tok, "Hello"));
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("mistral")]
    public void SentencePieceEmptyTextAndLongRunsMatchSentencepiece(string family)
    {
        // Where Microsoft.ML.Tokenizers' LlamaTokenizer differs from sentencepiece (measured in the golden README).
        var tok = Load(family);
        Assert.Equal([1], TextEncoding.ToTokenIds(tok, "", prependBos: true));
        var run = Cases(family).Single(c => c.GetProperty("text").GetString()!.StartsWith("ababab", StringComparison.Ordinal));
        Assert.Equal(Ints(run.GetProperty("ids")), tok.Encode(run.GetProperty("text").GetString()!));
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
