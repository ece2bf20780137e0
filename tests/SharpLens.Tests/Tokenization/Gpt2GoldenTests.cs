using System.Text.Json;
using SharpLens.Tokenization;
using TorchSharp;

namespace SharpLens.Tests.Tokenization;

/// <summary>The built-in GPT-2 tokenizer against the golden ids of fixtures/tokenizer (TransformerLens / GPT-2 BPE).</summary>
public sealed class Gpt2GoldenTests
{
    internal static string FixturePath(params string[] parts) =>
        Path.Combine([AppContext.BaseDirectory, "fixtures", "tokenizer", .. parts]);

    private static readonly JsonElement[] s_cases =
        JsonDocument.Parse(File.ReadAllText(FixturePath("gpt2_cases.json"))).RootElement.EnumerateArray().ToArray();

    public static IEnumerable<object[]> CaseIndices => Enumerable.Range(0, s_cases.Length).Select(i => new object[] { i });

    private static readonly Gpt2Tokenizer Tok = Gpt2Tokenizer.Default;

    [Fact]
    public void FixtureHasAllCases() => Assert.Equal(65, s_cases.Length);

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void EncodesGoldenCase(int index)
    {
        var c = s_cases[index];
        string text = c.GetProperty("text").GetString()!;
        int[] expected = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

        Assert.Equal(expected, Tok.Encode(text));
        Assert.Equal(expected, TextEncoding.ToTokenIds(Tok, text, prependBos: false));
        Assert.Equal([50256, .. expected], TextEncoding.ToTokenIds(Tok, text, prependBos: true));
        // Byte-level BPE is lossless: to_string(to_tokens(text)) gives the text back.
        Assert.Equal(text, TextEncoding.TokensToString(Tok, expected));
        // String tokens joined give the text whenever every token is whole UTF-8.
        var strs = TextEncoding.ToStrTokens(Tok, text, prependBos: false);
        Assert.Equal(expected.Length, strs.Count);
        if (!strs.Any(s => s.Contains('\uFFFD'))) Assert.Equal(text, string.Concat(strs));
    }

    [Fact]
    public void IoiPromptsMatchTransformerLensTokens()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(FixturePath("gpt2_ioi.json")));
        var root = doc.RootElement;
        var prompts = root.GetProperty("prompts").EnumerateArray().Select(e => e.GetString()!).ToList();
        var expected = root.GetProperty("tokens").EnumerateArray()
            .Select(r => r.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
        var expectedStr = root.GetProperty("str_tokens").EnumerateArray()
            .Select(r => r.EnumerateArray().Select(e => e.GetString()!).ToArray()).ToArray();
        Assert.Equal(8, prompts.Count);

        using var batch = TextEncoding.ToTokens(Tok, prompts, prependBos: true);
        Assert.Equal(new long[] { 8, 15 }, batch.Tokens.shape);
        Assert.Equal(torch.int64, batch.Tokens.dtype);
        Assert.Null(batch.AttentionMask);   // all prompts are 15 tokens: nothing padded
        Assert.All(batch.Lengths, l => Assert.Equal(root.GetProperty("prompt_len_with_bos").GetInt32(), l));
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(expected[i], batch.Tokens[i].data<long>().ToArray());
            Assert.Equal(expectedStr[i], TextEncoding.ToStrTokens(Tok, prompts[i], prependBos: true));
            Assert.Equal(expectedStr[i], TextEncoding.ToStrTokens(Tok, batch.Tokens[i]));
        }
    }

    [Fact]
    public void IoiNamesAreSingleTokens()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(FixturePath("gpt2_ioi.json")));
        var root = doc.RootElement;
        var answers = root.GetProperty("answers").EnumerateArray().SelectMany(a => a.EnumerateArray().Select(e => e.GetString()!)).ToList();
        var ids = root.GetProperty("answer_tokens").EnumerateArray().SelectMany(a => a.EnumerateArray().Select(e => e.GetInt32())).ToList();
        var names = root.GetProperty("names").EnumerateArray().SelectMany(a => a.EnumerateArray().Select(e => e.GetString()!)).ToList();
        Assert.Equal(8, names.Distinct().Count());
        for (int i = 0; i < answers.Count; i++)
        {
            Assert.Equal(ids[i], TextEncoding.ToSingleToken(Tok, answers[i]));
            Assert.Equal(answers[i], TextEncoding.ToSingleStrToken(Tok, ids[i]));
        }
        Assert.All(names, n => Assert.Contains(TextEncoding.ToSingleToken(Tok, n), ids));
    }

    [Fact]
    public void SpecialIdsAreEndOfText()
    {
        Assert.Equal(50257, Tok.VocabSize);
        Assert.Equal(50256, Tok.BosTokenId);
        Assert.Equal(50256, Tok.EosTokenId);
        Assert.Equal(50256, Tok.PadTokenId);
        Assert.Equal("<|endoftext|>", Tok.DecodeToken(50256));
        Assert.Same(Gpt2Tokenizer.Default, Tok);
    }

    [Fact]
    public void PartialUtf8TokensShowReplacementCharacter()
    {
        // "é" written as e + U+0301: the combining mark's two bytes are two tokens, each an incomplete character.
        var strs = TextEncoding.ToStrTokens(Tok, "e\u0301 combining acute", prependBos: false);
        Assert.Equal(["e", "\uFFFD", "\uFFFD", " combining", " acute"], strs);
        Assert.Equal("e\u0301", TextEncoding.TokensToString(Tok, [68, 136, 223]));
    }
}
