using SharpLens.Cli.Dla;

namespace SharpLens.Tests.Cli;

public sealed class IoiLengthTests
{
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
