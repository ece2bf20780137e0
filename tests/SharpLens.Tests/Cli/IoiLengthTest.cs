using SharpLens.Cli.Dla;
using SharpLens.Tokenization;

namespace SharpLens.Tests.Cli;

public sealed class IoiLengthTests
{
    /// <summary>One token per character, except whole names, so the IOI prompts get different lengths.</summary>
    private sealed class CharTokenizer : ITokenizer
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

    [Fact]
    public void UnequalIoiPromptLengthsNameThePromptAndItsTokens()
    {
        using var model = Golden.Model();
        model.Tokenizer = new CharTokenizer();
        var e = Assert.Throws<SharpLensException>(() => DlaInput.Ioi(model));
        Assert.Contains("same token length", e.Message);
        Assert.Contains("When Tom and James went to the park, James gave the ball to", e.Message);
        Assert.Contains("'W', 'h', 'e', 'n'", e.Message);
    }
}
