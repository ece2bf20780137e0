using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Tokenization;

namespace SharpLens.Tests.Tokenization;

/// <summary>How <see cref="TokenizerLoader"/> picks a tokenizer from a folder or file, and how it fails.</summary>
public sealed class TokenizerLoaderTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("sharplens-tokload-").FullName;
    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static string Fixture(params string[] parts) => FamilyTokenizerGoldenTests.FixturePath(parts);

    [Fact]
    public void PicksTheFormatByFileAndContent()
    {
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerLoader.FromPath(Fixture("llama2")));
        Assert.IsType<TiktokenTokenizerFile>(TokenizerLoader.FromPath(Fixture("llama3")));
        Assert.IsType<BpeTokenizerFile>(TokenizerLoader.FromPath(Fixture("qwen2")));
        // A SentencePiece file under another name is still told apart from tiktoken ranks by its content.
        File.Copy(Fixture("mistral", "tokenizer.model.v1"), Path.Combine(_temp, "tokenizer.model"));
        Assert.IsType<SentencePieceBpeTokenizer>(TokenizerLoader.FromPath(_temp));
        // tokenizer.json wins over tokenizer.model, as in Hugging Face.
        File.Copy(Fixture("neox", "20B_tokenizer.json"), Path.Combine(_temp, "tokenizer.json"));
        Assert.Equal(50277, TokenizerLoader.FromPath(_temp).VocabSize);
    }

    [Fact]
    public void FolderWithoutTokenizerListsWhatItLookedFor()
    {
        File.WriteAllText(Path.Combine(_temp, "config.json"), "{}");
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(_temp));
        Assert.Contains("looked for tokenizer.json, then tokenizer.model, then vocab.json + merges.txt", e.Message);
        Assert.Contains("found: config.json", e.Message);
    }

    [Theory]
    [InlineData("""{"model": {"type": "BPE", "vocab": ["a"], "merges": []}}""", "field model.vocab")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}""", "field model.vocab: the id of a must be")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": "a b"}}""", "field model.merges must be a list")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}""", "field model.merges: a merge must be")]
    [InlineData("""{"added_tokens": [{"content": "x"}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""", "field added_tokens: an entry has no non-negative integer \"id\"")]
    [InlineData("""{"model": 3}""", "field \"model\" is missing or not an object")]
    [InlineData("""{"model": {"type": "BPE", """, "tokenizer.json: not valid JSON")]
    public void CorruptTokenizerJsonNamesTheField(string json, string expected)
    {
        string path = Path.Combine(_temp, "tokenizer.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(_temp));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void UnknownModelTypeInTokenizerJsonIsNamed()
    {
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), """{"model": {"type": "Unigram", "vocab": []}}""");
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(_temp));
        Assert.Contains("model.type 'Unigram' is not supported; supported: BPE", e.Message);
    }

    [Fact]
    public void CorruptTokenizerModelFilesFailClearly()
    {
        string path = Path.Combine(_temp, "tokenizer.model");
        File.WriteAllBytes(path, [0x0A, 0x50, 0x01]);   // a piece field longer than the file
        Assert.Contains("not a SentencePiece model", Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(path)).Message);
        File.WriteAllText(path, "IQ== 0\nIg== 1\n");   // tiktoken ranks, but not Llama 3's
        Assert.Contains("only Llama 3's (128,000 ranks) is known", Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(path)).Message);
        File.WriteAllText(path, "IQ== 0\nIg== 5\n");
        Assert.Contains("line 2 has rank 5", Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(path)).Message);
        File.WriteAllText(path, "hello world");
        Assert.Contains("neither a SentencePiece model", Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(path)).Message);
    }

    [Fact]
    public void TokenizerWithMoreIdsThanTheModelsVocabularyIsRefused()
    {
        // The tiny GPT-2 test model has d_vocab 1000; Llama 2's tokenizer has 32000 ids.
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(_temp, f));
        File.Copy(Fixture("llama2", "tokenizer.model"), Path.Combine(_temp, "tokenizer.model"));
        var e = Assert.Throws<SharpLensException>(() => HookedTransformer.FromFolder(_temp, ProcessingOptions.None, "tiny"));
        Assert.Contains("has 32000 ids but model 'tiny' has d_vocab = 1000", e.Message);
    }

    [Fact]
    public void FromFolderGivesTheModelTheFolderTokenizer()
    {
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(_temp, f));
        // A vocabulary within d_vocab: the mini GPT-2 BPE cut to ids < 1000 is not at hand, so write a tiny byte-level one.
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"),
            """{"model": {"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2}, "merges": ["h i"]}, "pre_tokenizer": {"type": "ByteLevel"}}""");
        using var model = HookedTransformer.FromFolder(_temp, ProcessingOptions.None, "tiny");
        Assert.NotNull(model.Tokenizer);
        using var batch = model.ToTokens("hi", prependBos: false);
        Assert.Equal([2L], batch.Tokens.data<long>().ToArray());
    }
}

/// <summary>tokenizer.json in the Llama formats: ignore_merges byte-level BPE (Llama 3), byte_fallback BPE (Llama 2).</summary>
public sealed class LlamaTokenizerJsonTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("sharplens-tokjson-").FullName;
    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void Llama3TokenizerJsonWithIgnoreMergesMatchesTheTiktokenGolden()
    {
        // Hugging Face's Llama 3 tokenizer.json, rebuilt from the tiktoken ranks: byte-level vocabulary (id = rank),
        // the 256 specials as added tokens, Split(regex) + ByteLevel, ignore_merges, BOS by the post-processor.
        var ranks = File.ReadLines(FamilyTokenizerGoldenTests.FixturePath("llama3", "tokenizer.model"))
            .Select(l => l.Split(' ')).Select(p => (Bytes: Convert.FromBase64String(p[0]), Rank: int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture)));
        var vocab = new System.Text.Json.Nodes.JsonObject();
        foreach (var (bytes, rank) in ranks) vocab[ByteLevelText(bytes)] = rank;
        var specials = TiktokenTokenizerFile.Llama3SpecialTokens();
        var added = new System.Text.Json.Nodes.JsonArray(specials.Select((s, i) => (System.Text.Json.Nodes.JsonNode)new System.Text.Json.Nodes.JsonObject
            { ["id"] = 128000 + i, ["content"] = s, ["special"] = true, ["normalized"] = false }).ToArray());
        var tj = new System.Text.Json.Nodes.JsonObject
        {
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse($$"""
                {"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": {{System.Text.Json.JsonSerializer.Serialize(TiktokenTokenizerFile.Llama3Pattern)}}}, "behavior": "Isolated", "invert": false},
                  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}
                """),
            ["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse("""
                {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}
                """),
            ["decoder"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type": "ByteLevel"}"""),
            ["model"] = new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "BPE", ["ignore_merges"] = true, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = new System.Text.Json.Nodes.JsonArray(),
            },
        };
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), tj.ToJsonString());
        var tok = TokenizerLoader.FromPath(_temp);
        Assert.IsType<TiktokenTokenizerFile>(tok);
        Assert.True(tok.PrependsBos);
        Assert.Equal(128000, tok.BosTokenId);
        Assert.Equal(128256, tok.VocabSize);
        foreach (var c in FamilyTokenizerGoldenTests.Cases("llama3"))
        {
            string text = c.GetProperty("text").GetString()!;
            Assert.Equal(c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), tok.Encode(text));
            Assert.Equal(c.GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()!), tok.Encode(text).Select(tok.IdToToken));
        }
    }

    [Fact]
    public void Llama2TokenizerJsonWithByteFallbackUsesTheSentencePieceModelBesideIt()
    {
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"), """{"model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []}}""");
        var e = Assert.Throws<SharpLensException>(() => TokenizerLoader.FromPath(_temp));
        Assert.Contains("read from the tokenizer.model beside it, and there is none", e.Message);
        File.Copy(FamilyTokenizerGoldenTests.FixturePath("llama2", "tokenizer.model"), Path.Combine(_temp, "tokenizer.model"));
        var tok = TokenizerLoader.FromPath(_temp);
        Assert.IsType<SentencePieceBpeTokenizer>(tok);
        Assert.Equal([15043], tok.Encode("Hello"));
    }

    private static string ByteLevelText(byte[] bytes)
    {
        // GPT-2's byte alphabet: printable Latin-1 bytes are themselves, the other 68 take U+0100.. in byte order.
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF ? (char)b : (char)next++;
        return new string(bytes.Select(b => map[b]).ToArray());
    }
}
