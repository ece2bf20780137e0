using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Tokenization;

namespace SharpLens.Tests.Tokenization;

/// <summary>
/// Loading tokenizer.json and vocab.json + merges.txt, on fixtures/tokenizer/mini-bpe: GPT-2 cut to its first 2000
/// merges (ids unchanged, &lt;|endoftext|&gt; = 2256), so it must agree with GPT-2 on text made of low-id tokens.
/// </summary>
public sealed class BpeTokenizerFileTests : IDisposable
{
    private const int Eot = 2256;
    private static readonly string VocabMerges = Gpt2GoldenTests.FixturePath("mini-bpe", "vocab-merges");
    private static readonly string TokenizerJson = Gpt2GoldenTests.FixturePath("mini-bpe", "tokenizer-json");

    private readonly string _temp = Directory.CreateTempSubdirectory("sharplens-tok-").FullName;
    public void Dispose() => Directory.Delete(_temp, recursive: true);

    // Texts whose GPT-2 tokens all have ids below 2256 (checked in the test).
    private static readonly string[] LowIdTexts =
    [
        "We will see what they do in the new year.",
        "It is not a good idea to go there at night.",
        "I'm sure they've said we'll do it.",
        " John", " the", "A<|endoftext|>B", "<|endoftext|>",
    ];

    // Expected ids of the cut vocabulary where it differs from GPT-2, checked with an independent Python BPE.
    public static IEnumerable<object[]> MiniOnlyCases =>
    [
        ["Hello, world!", new[] { 39, 695, 78, 11, 995, 0 }],
        ["caf\u00e9", new[] { 66, 1878, 127, 102 }],
        [" Mary", new[] { 337, 560 }],
        ["100 people, 20 days and 3 years", new[] { 16, 405, 661, 11, 1160, 1528, 290, 513, 812 }],
    ];

    private static ITokenizer Load(string folder) => TokenizerLoader.FromFolder(folder) ?? throw new InvalidOperationException("no tokenizer");

    [Theory]
    [InlineData("vocab-merges")]
    [InlineData("tokenizer-json")]
    public void AgreesWithGpt2OnLowIdText(string variant)
    {
        var mini = Load(Gpt2GoldenTests.FixturePath("mini-bpe", variant));
        foreach (var text in LowIdTexts)
        {
            var gpt2 = Gpt2Tokenizer.Default.Encode(text);
            Assert.All(gpt2, id => Assert.True(id < Eot || id == 50256, $"{text}: GPT-2 id {id} is not in the cut vocabulary"));
            Assert.Equal(gpt2.Select(id => id == 50256 ? Eot : id), mini.Encode(text));
            Assert.Equal(text, mini.Decode(mini.Encode(text)));
        }
    }

    [Theory]
    [InlineData("vocab-merges")]
    [InlineData("tokenizer-json")]
    public void StringTokensMatchGpt2ForEverySharedId(string variant)
    {
        var mini = Load(Gpt2GoldenTests.FixturePath("mini-bpe", variant));
        // Covers all 256 byte tokens, including the ones that are half a UTF-8 character (shown as U+FFFD).
        for (int id = 0; id < Eot; id++)
            Assert.Equal(Gpt2Tokenizer.Default.DecodeToken(id), mini.DecodeToken(id));
        Assert.Equal("<|endoftext|>", mini.DecodeToken(Eot));
    }

    [Theory]
    [MemberData(nameof(MiniOnlyCases))]
    public void EncodesWithTheCutMerges(string text, int[] expected)
    {
        Assert.Equal(expected, Load(VocabMerges).Encode(text));
        Assert.Equal(expected, Load(TokenizerJson).Encode(text));
        Assert.Equal(text, Load(VocabMerges).Decode(expected));
    }

    [Fact]
    public void VocabMergesWithoutConfigFallsBackToEndOfText()
    {
        var t = Load(VocabMerges);
        Assert.IsType<BpeTokenizerFile>(t);
        Assert.Equal("vocab-merges", t.Name);
        Assert.Equal(2257, t.VocabSize);
        Assert.Equal(Eot, t.EosTokenId);
        Assert.Equal(Eot, t.BosTokenId);
        Assert.Equal(Eot, t.PadTokenId);
    }

    [Fact]
    public void TokenizerJsonReadsSpecialTokensFromConfig()
    {
        var t = Load(TokenizerJson);
        Assert.Equal(2258, t.VocabSize);
        Assert.Equal(Eot, t.BosTokenId);
        Assert.Equal(Eot, t.EosTokenId);
        Assert.Equal(2257, t.PadTokenId);
        Assert.Equal([1757, 2257, 262], t.Encode(" John<|pad|> the"));   // added tokens are matched inside text

        // A distinct pad id: padding uses it, the BOS is an ordinary token for the mask.
        using var batch = TextEncoding.ToTokens(t, [" John the", " the"], paddingSide: PaddingSide.Left);
        Assert.Equal(new long[] { Eot, 1757, 262 }, batch.Tokens[0].data<long>().ToArray());
        Assert.Equal(new long[] { 2257, Eot, 262 }, batch.Tokens[1].data<long>().ToArray());
        Assert.Equal(new long[] { 0, 1, 1 }, batch.AttentionMask![1].data<long>().ToArray());
    }

    [Fact]
    public void TokenizerJsonAcceptsStringMerges()
    {
        // Older tokenizer.json files write merges as "a b" instead of ["a", "b"].
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerJson, "tokenizer.json")))!;
        var merges = root["model"]!["merges"]!.AsArray();
        var asStrings = new JsonArray(merges.Select(m => (JsonNode)JsonValue.Create($"{m![0]} {m[1]}")!).ToArray());
        root["model"]!["merges"] = asStrings;
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), root.ToJsonString());

        var t = Load(_temp);
        Assert.Equal([39, 695, 78, 11, 995, 0], t.Encode("Hello, world!"));
        Assert.Equal(Eot, t.PadTokenId);   // no tokenizer_config.json here: PAD falls back to EOS
    }

    [Fact]
    public void FolderWithoutTokenizerFilesGivesNull()
    {
        Assert.Null(TokenizerLoader.FromFolder(_temp));
        File.WriteAllText(Path.Combine(_temp, "vocab.json"), "{}");   // merges.txt still missing
        Assert.Null(TokenizerLoader.FromFolder(_temp));
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.ForModel(_temp));
        Assert.Contains("no tokenizer file: looked for tokenizer.json, then tokenizer.model, then vocab.json + merges.txt (found: vocab.json)", e.Message);
        Assert.Throws<SharpLensException>(() => TokenizerLoader.FromFolder(Path.Combine(_temp, "missing")));
    }

    [Fact]
    public void ForModelKnowsGpt2NamesAndSuggests()
    {
        Assert.Same(Gpt2Tokenizer.Default, TokenizerLoader.ForModel("gpt2-xl"));
        Assert.Same(Gpt2Tokenizer.Default, TokenizerLoader.ForModel("DistilGPT2"));
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.ForModel("gpt2-smal"));
        Assert.Contains("Did you mean 'gpt2-small'", e.Message);
    }

    [Theory]
    [InlineData("""{"type": "WordPiece", "vocab": {}}""", "model.type 'WordPiece' is not supported")]
    [InlineData("""{"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}""", "byte_fallback")]
    public void UnsupportedModelsFailClearly(string model, string expected)
    {
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), "{\"model\": " + model + """, "pre_tokenizer": {"type": "ByteLevel"}}""");
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromFolder(_temp));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void UnsupportedPreTokenizerFailsClearly()
    {
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"),
            """{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}}""");
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromFolder(_temp));
        Assert.Contains("pre_tokenizer", e.Message);
        Assert.Contains("Metaspace", e.Message);
    }

    [Fact]
    public void SplitRegexPreTokenizerIsUsed()
    {
        // Sequence[Split(regex), ByteLevel(use_regex false)] (Llama 3 / Qwen style): here the regex splits every
        // character, so "ab" stays two tokens although the merge "a b" exists.
        var tj = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["vocab"] = new JsonObject { ["a"] = 0, ["b"] = 1, ["ab"] = 2 },
                ["merges"] = new JsonArray("a b"),
            },
            ["pre_tokenizer"] = JsonNode.Parse("""
                {"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": false},
                  {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}
                """),
        };
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), tj.ToJsonString());
        Assert.Equal([0, 1], Load(_temp).Encode("ab"));

        tj["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false}""");
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), tj.ToJsonString());
        Assert.Equal([2], Load(_temp).Encode("ab"));
    }

    private static JsonObject TinyBpe() => new()
    {
        ["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["vocab"] = new JsonObject { ["a"] = 0, ["b"] = 1, ["ab"] = 2 },
            ["merges"] = new JsonArray("a b"),
        },
        ["pre_tokenizer"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": false}"""),
    };

    [Fact]
    public void AddedTokenWithAVocabularyTextAndAHigherIdLoads()
    {
        // Found by fuzzing: the vocabulary size was taken from the vocabulary alone, so an added token re-using the
        // text "ab" under id 7 indexed past the id table (IndexOutOfRangeException).
        var tj = TinyBpe();
        tj["added_tokens"] = JsonNode.Parse("""[{"id": 7, "content": "ab", "special": true}]""");
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), tj.ToJsonString());
        var t = Load(_temp);
        Assert.Equal("ab", t.Decode([7]));
        Assert.Equal([7], t.Encode("ab"));   // added tokens are matched before BPE, as in Hugging Face
    }

    [Fact]
    public void NegativeAddedTokensDecoderIdIsAClearError()
    {
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), TinyBpe().ToJsonString());
        File.WriteAllText(Path.Combine(_temp, "tokenizer_config.json"), """{"added_tokens_decoder": {"-3": {"content": "<x>"}}}""");
        var e = Assert.Throws<SharpLensException>(() => Load(_temp));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("key '-3' is not a token id", e.Message);
    }
}
