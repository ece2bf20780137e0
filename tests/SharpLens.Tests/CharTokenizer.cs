using SharpLens.Tokenization;

namespace SharpLens.Tests;

/// <summary>
/// A tokenizer for the tiny test models (vocabulary 1000): one token per character (id = char % 900), except a text
/// that is exactly one of a few IOI names (ids 900+), so IOI prompts get different lengths; BOS/EOS/pad 999.
/// </summary>
internal sealed class CharTokenizer : ITokenizer
{
    private static readonly string[] Names = [" Mary", " John", " Tom", " James", " Dan", " Sid", " Martin", " Amy"];
    public string Name => "chars";
    public int VocabSize => 1000;
    public int? BosTokenId => 999;
    public int? EosTokenId => 999;
    public int? PadTokenId => 999;
    public bool PrependsBos => false;
    public string IdToToken(int id) => DecodeToken(id);
    public IReadOnlyList<int> Encode(string text) =>
        Array.IndexOf(Names, text) is var i and >= 0 ? [900 + i] : text.Select(c => c % 900).ToList();
    public string Decode(IEnumerable<int> ids) => string.Concat(ids.Select(DecodeToken));
    public string DecodeToken(int id) => id >= 900 && id < 900 + Names.Length ? Names[id - 900] : ((char)id).ToString();
}
