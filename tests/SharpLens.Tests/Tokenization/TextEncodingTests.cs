using SharpLens.Tokenization;
using TorchSharp;

namespace SharpLens.Tests.Tokenization;

/// <summary>TransformerLens semantics of to_tokens / padding / masks / to_str_tokens / get_token_position, and their errors.</summary>
public sealed class TextEncodingTests
{
    private static readonly Gpt2Tokenizer Tok = Gpt2Tokenizer.Default;
    private const long E = 50256;   // <|endoftext|>: BOS and PAD for GPT-2

    private static long[][] Rows(torch.Tensor t) =>
        Enumerable.Range(0, (int)t.shape[0]).Select(i => t[i].data<long>().ToArray()).ToArray();

    // "Hello, world!" = [15496, 11, 995, 0]; " Mary" = [5335]
    private static readonly string[] TwoPrompts = ["Hello, world!", " Mary"];

    [Fact]
    public void RightPaddingPadsAfterTextAndMasksTrailingPads()
    {
        using var batch = TextEncoding.ToTokens(Tok, TwoPrompts);
        Assert.Equal([[E, 15496, 11, 995, 0], [E, 5335, E, E, E]], Rows(batch.Tokens));
        Assert.NotNull(batch.AttentionMask);
        Assert.Equal([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], Rows(batch.AttentionMask!));
        Assert.Equal([5, 2], batch.Lengths);
    }

    [Fact]
    public void LeftPaddingPadsBeforeBosAndKeepsBosAttended()
    {
        using var batch = TextEncoding.ToTokens(Tok, TwoPrompts, paddingSide: PaddingSide.Left);
        Assert.Equal([[E, 15496, 11, 995, 0], [E, E, E, E, 5335]], Rows(batch.Tokens));
        // BOS == PAD: TransformerLens keeps the last leading "pad" (the BOS) attended.
        Assert.Equal([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]], Rows(batch.AttentionMask!));
    }

    [Fact]
    public void LeftPaddingWithoutBosMasksAllLeadingPads()
    {
        using var batch = TextEncoding.ToTokens(Tok, TwoPrompts, prependBos: false, paddingSide: PaddingSide.Left);
        Assert.Equal([[15496, 11, 995, 0], [E, E, E, 5335]], Rows(batch.Tokens));
        Assert.Equal([[1, 1, 1, 1], [0, 0, 0, 1]], Rows(batch.AttentionMask!));
    }

    [Fact]
    public void AttentionMaskReproducesTransformerLensQuirks()
    {
        // Right padding masks every trailing pad id, so a prompt ending in <|endoftext|> loses it, and an empty
        // prompt loses even its BOS (TransformerLens's get_attention_mask does the same).
        using var batch = TextEncoding.ToTokens(Tok, ["Hi<|endoftext|>", "", "a b c d"]);
        Assert.Equal([[E, 17250, E, E, E], [E, E, E, E, E], [E, 64, 275, 269, 288]], Rows(batch.Tokens));
        Assert.Equal([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], Rows(batch.AttentionMask!));

        using var tokens = torch.tensor(new long[] { E, E, 40, E, 40, 41 }, [2, 3]);
        using var left = TextEncoding.GetAttentionMask(Tok, tokens, prependBos: true, PaddingSide.Left);
        Assert.Equal([[0, 1, 1], [1, 1, 1]], Rows(left));
        using var leftNoBos = TextEncoding.GetAttentionMask(Tok, tokens, prependBos: false, PaddingSide.Left);
        Assert.Equal([[0, 0, 1], [0, 1, 1]], Rows(leftNoBos));   // without BOS a leading 50256 is just padding
    }

    [Fact]
    public void EqualLengthsNeedNoMask()
    {
        using var batch = TextEncoding.ToTokens(Tok, [" Mary", " John"], paddingSide: PaddingSide.Left);
        Assert.Equal([[E, 5335], [E, 1757]], Rows(batch.Tokens));
        Assert.Null(batch.AttentionMask);
    }

    [Fact]
    public void SingleStringGivesOneRow()
    {
        using var batch = TextEncoding.ToTokens(Tok, "Hello, world!", prependBos: false);
        Assert.Equal(new long[] { 1, 4 }, batch.Tokens.shape);
        Assert.Equal([[15496, 11, 995, 0]], Rows(batch.Tokens));
    }

    [Fact]
    public void TruncationKeepsFirstNCtxTokensIncludingBos()
    {
        using var batch = TextEncoding.ToTokens(Tok, TwoPrompts, nCtx: 3);
        Assert.Equal([[E, 15496, 11], [E, 5335, E]], Rows(batch.Tokens));
        Assert.Equal([E, 15496, 11], TextEncoding.ToTokenIds(Tok, "Hello, world!", nCtx: 3).Select(i => (long)i));
        Assert.Equal(["<|endoftext|>", "Hello"], TextEncoding.ToStrTokens(Tok, "Hello, world!", nCtx: 2));
    }

    [Fact]
    public void TooLongWithoutTruncationFailsNamingPromptLengthAndNCtx()
    {
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.ToTokens(Tok, TwoPrompts, nCtx: 4, truncate: false));
        Assert.Contains("prompt 0", e.Message);
        Assert.Contains("'Hello, world!'", e.Message);
        Assert.Contains("5 tokens", e.Message);
        Assert.Contains("n_ctx = 4", e.Message);
        // Exactly n_ctx tokens is fine.
        using var ok = TextEncoding.ToTokens(Tok, TwoPrompts, nCtx: 5, truncate: false);
        Assert.Equal(new long[] { 2, 5 }, ok.Tokens.shape);
    }

    [Fact]
    public void EmptyPromptListFails()
    {
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.ToTokens(Tok, Array.Empty<string>()));
        Assert.Contains("empty list", e.Message);
    }

    [Fact]
    public void ToSingleTokenRejectsMultiTokenStringsShowingTheirTokens()
    {
        Assert.Equal(5335, TextEncoding.ToSingleToken(Tok, " Mary"));
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.ToSingleToken(Tok, "Hello, world!"));
        Assert.Equal("'Hello, world!' is not a single token: it tokenizes to ['Hello', ',', ' world', '!'] (ids 15496, 11, 995, 0).", e.Message);
        var empty = Assert.Throws<SharpLensException>(() => TextEncoding.ToSingleToken(Tok, ""));
        Assert.Contains("no tokens", empty.Message);
    }

    [Fact]
    public void ExcerptQuotesShortTextWholeAndCutsLongTextAt80Characters()
    {
        Assert.Equal("'it\\'s'", TextEncoding.Excerpt("it's"));
        Assert.Equal(TextEncoding.Quote(new string('a', 80)), TextEncoding.Excerpt(new string('a', 80)));
        string longText = string.Concat(Enumerable.Repeat("When Mary and John went to the store, ", 60));
        Assert.Equal($"'{longText[..80]}…' ({longText.Length} characters)", TextEncoding.Excerpt(longText));
        // A surrogate pair at the cut is dropped whole, not split.
        string emoji = new string('x', 79) + "😀" + new string('y', 10);
        Assert.Equal($"'{new string('x', 79)}…' ({emoji.Length} characters)", TextEncoding.Excerpt(emoji));
    }

    [Fact]
    public void ErrorsAboutLongPromptsQuoteOnlyTheirStart()
    {
        string longText = string.Concat(Enumerable.Repeat("When Mary and John went to the store, John gave a drink to Mary. ", 50));
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.ToTokens(Tok, [longText], nCtx: 64, truncate: false));
        Assert.Contains("more than n_ctx = 64", e.Message);
        Assert.Contains($"({longText.Length} characters)", e.Message);
        Assert.True(e.Message.Length < 300, e.Message);
        var single = Assert.Throws<SharpLensException>(() => TextEncoding.ToSingleToken(Tok, longText));
        Assert.StartsWith("'When Mary and John went to the store", single.Message);
        Assert.Contains($"it tokenizes to {Tok.Encode(longText).Count} tokens, starting ['When', ' Mary',", single.Message);
        Assert.True(single.Message.Length < 400, single.Message);
    }

    [Fact]
    public void OutOfVocabularyIdsFailNamingIdAndVocabSize()
    {
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.TokensToString(Tok, [15496, 50257]));
        Assert.Contains("50257", e.Message);
        Assert.Contains("[0, 50257)", e.Message);
        var neg = Assert.Throws<SharpLensException>(() => TextEncoding.TokensToString(Tok, new List<int> { -1 }));
        Assert.Contains("token id -1", neg.Message);
        Assert.Throws<SharpLensException>(() => TextEncoding.ToStrTokens(Tok, [60000]));
        using var t = torch.tensor(new long[] { 1L << 40 });
        Assert.Throws<SharpLensException>(() => TextEncoding.TokensToString(Tok, t));
    }

    [Fact]
    public void TokensToStringDecodesListsAndTensors()
    {
        Assert.Equal("Hello, world!", TextEncoding.TokensToString(Tok, [15496, 11, 995, 0]));
        using var batch = TextEncoding.ToTokens(Tok, TwoPrompts);
        Assert.Equal(["<|endoftext|>Hello, world!", "<|endoftext|> Mary<|endoftext|><|endoftext|><|endoftext|>"],
            TextEncoding.TokensToStrings(Tok, batch.Tokens));
        Assert.Equal("<|endoftext|> Mary", TextEncoding.TokensToString(Tok, batch.Tokens[1][..2]));
        Assert.Throws<SharpLensException>(() => TextEncoding.TokensToString(Tok, batch.Tokens));
    }

    [Fact]
    public void StrTokensFromIdsAndTensors()
    {
        Assert.Equal([" Mary", " and", " John"], TextEncoding.ToStrTokens(Tok, [5335, 290, 1757]));
        using var t = torch.tensor(new long[] { 5335, 290, 1757 }, [1, 3]);
        Assert.Equal([" Mary", " and", " John"], TextEncoding.ToStrTokens(Tok, t));
        var lists = TextEncoding.ToStrTokens(Tok, ["a b", " Mary"], prependBos: false);
        Assert.Equal([["a", " b"], [" Mary"]], lists);
        using var two = torch.zeros(2, 3, dtype: torch.int64);
        Assert.Throws<SharpLensException>(() => TextEncoding.ToStrTokens(Tok, two));
    }

    [Fact]
    public void GetTokenPositionFindsFirstAndLast()
    {
        const string prompt = "When John and Mary went to the shops, John gave the bag to";
        Assert.Equal(2, TextEncoding.GetTokenPosition(Tok, " John", prompt));
        Assert.Equal(10, TextEncoding.GetTokenPosition(Tok, " John", prompt, TokenPositionMode.Last));
        Assert.Equal(9, TextEncoding.GetTokenPosition(Tok, 1757, prompt, TokenPositionMode.Last, prependBos: false));
        Assert.Equal(4, TextEncoding.GetTokenPosition(Tok, 5335, prompt));

        int[] ids = [.. TextEncoding.ToTokenIds(Tok, prompt)];
        Assert.Equal(2, TextEncoding.GetTokenPosition(Tok, 1757, ids));
        Assert.Equal(10, TextEncoding.GetTokenPosition(Tok, " John", ids, TokenPositionMode.Last));
        using var batch = TextEncoding.ToTokens(Tok, prompt);
        Assert.Equal(10, TextEncoding.GetTokenPosition(Tok, " John", batch.Tokens, TokenPositionMode.Last));
        Assert.Equal(0, TextEncoding.GetTokenPosition(Tok, 50256, batch.Tokens[0]));
    }

    [Fact]
    public void GetTokenPositionFailsWhenAbsentOrAmbiguousShape()
    {
        var e = Assert.Throws<SharpLensException>(() => TextEncoding.GetTokenPosition(Tok, " Amy", "When John and Mary went"));
        Assert.Contains("does not occur", e.Message);
        Assert.Contains("' Amy'", e.Message);
        Assert.Throws<SharpLensException>(() => TextEncoding.GetTokenPosition(Tok, " Mary Ann", "Mary Ann"));
        using var two = torch.zeros(2, 3, dtype: torch.int64);
        Assert.Throws<SharpLensException>(() => TextEncoding.GetTokenPosition(Tok, 0, two));
    }

    [Fact]
    public void QuoteEscapesLikePythonRepr()
    {
        Assert.Equal("' Mary'", TextEncoding.Quote(" Mary"));
        Assert.Equal(@"'a\nb\tc\'d\\'", TextEncoding.Quote("a\nb\tc'd\\"));
        Assert.Equal(@"'\x00'", TextEncoding.Quote("\0"));
    }
}
