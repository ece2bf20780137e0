namespace SharpLens.Analysis;

/// <summary>One prompt of a logit-difference experiment.</summary>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Correct">The correct next token (e.g. the indirect object, " Mary").</param>
/// <param name="Incorrect">The incorrect next token (e.g. the subject, " John").</param>
public sealed record PromptPair(string Prompt, string Correct, string Incorrect);

/// <summary>The seed notebook's indirect-object-identification prompts, built exactly as the notebook builds them.</summary>
public static class IoiDataset
{
    /// <summary>The four sentence templates; <c>{0}</c> is the subject who gives.</summary>
    public static IReadOnlyList<string> PromptFormats { get; } =
    [
        "When John and Mary went to the shops,{0} gave the bag to",
        "When Tom and James went to the park,{0} gave the ball to",
        "When Dan and Sid went to the shops,{0} gave an apple to",
        "After Martin and Amy went to the park,{0} gave a drink to",
    ];

    /// <summary>The name pairs of each template.</summary>
    public static IReadOnlyList<(string, string)> Names { get; } =
        [(" Mary", " John"), (" Tom", " James"), (" Dan", " Sid"), (" Martin", " Amy")];

    /// <summary>
    /// The 8 prompts in the notebook's order: for each template, both orders of its names; the answer is the name
    /// that does not give (correct) versus the one that does (incorrect).
    /// </summary>
    public static IReadOnlyList<PromptPair> Prompts()
    {
        var list = new List<PromptPair>();
        for (int i = 0; i < PromptFormats.Count; i++)
        {
            var (a, b) = Names[i];
            (string, string)[] orders = [(a, b), (b, a)];
            foreach (var (correct, incorrect) in orders)
                list.Add(new PromptPair(string.Format(System.Globalization.CultureInfo.InvariantCulture, PromptFormats[i], incorrect), correct, incorrect));
        }
        return list;
    }
}
