using SharpLens.Tokenization;

namespace SharpLens.Tests.Tokenization;

/// <summary>NFC without ICU (the process runs with InvariantGlobalization, where string.Normalize leaves these unchanged).</summary>
public sealed class NfcTests
{
    [Theory]
    [InlineData("e\u0301", "\u00e9")]                        // decomposed é composes
    [InlineData("caf\u00e9", "caf\u00e9")]                   // already composed stays
    [InlineData("A\u030A", "\u00C5")]                        // A + ring above
    [InlineData("\u212B", "\u00C5")]                         // ANGSTROM SIGN is a singleton: becomes Å
    [InlineData("a\u0302\u0323", "\u1EAD")]                  // marks in non-canonical order are reordered, then composed
    [InlineData("a\u0323\u0302", "\u1EAD")]
    [InlineData("e\u0301\u0301", "\u00e9\u0301")]            // the second acute is blocked by the first
    [InlineData("\u0958", "\u0915\u093C")]                   // composition exclusion: DEVANAGARI QA stays decomposed
    [InlineData("\u1100\u1161\u11A8", "\uAC01")]             // Hangul jamo L V T compose to one syllable
    [InlineData("\uAC00\u11A8", "\uAC01")]                   // LV syllable + T
    [InlineData("x\U0001D15E", "x\U0001D157\U0001D165")]     // MUSICAL SYMBOL HALF NOTE (astral, excluded) decomposes
    [InlineData("plain ASCII", "plain ASCII")]
    public void NormalizesToNfc(string input, string expected)
    {
        Assert.Equal(expected, Nfc.Normalize(input));
        Assert.Equal(expected, Nfc.Normalize(input.AsSpan()));
    }

    [Fact]
    public void InvariantGlobalizationWouldNotNormalize()
    {
        // Why Nfc exists: under InvariantGlobalization the runtime's normalizer leaves non-ASCII text as it is.
        Assert.Equal("e\u0301", "e\u0301".Normalize(System.Text.NormalizationForm.FormC));
    }
}
