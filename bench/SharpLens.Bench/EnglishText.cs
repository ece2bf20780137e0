using System.Text;

namespace SharpLens.Bench;

/// <summary>
/// English prose for the tokenizer benchmark, embedded so the bench needs no data files: sentences written for this
/// purpose (names, numbers, punctuation, code-ish words, contractions), shuffled with a fixed seed into paragraphs.
/// Repeating sentences favours the tokenizer's word cache somewhat, as real text does too.
/// </summary>
internal static class EnglishText
{
    private static readonly string[] Sentences =
    [
        "When Mary and John went to the store, John gave a drink to Mary.",
        "The committee met on Tuesday, 14 March 2023, to discuss the budget for the next fiscal year.",
        "Researchers found that the model's attention heads copy names from earlier in the sentence.",
        "She couldn't believe it: the train had left at 6:45, exactly three minutes before she arrived.",
        "In 1969, astronauts walked on the Moon while millions watched the grainy broadcast at home.",
        "A residual stream is the sum of every layer's output, plus the token and position embeddings.",
        "\"Don't forget the umbrella,\" said Grandma, pointing at the grey clouds gathering over the hills.",
        "Prices rose by 4.7% in October, the largest monthly increase since the spring of 2011.",
        "The recipe calls for two cups of flour, a pinch of salt, and three tablespoons of butter.",
        "After the storm, volunteers cleared fallen branches from the roads and checked on elderly neighbours.",
        "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
        "He typed `git commit -m \"fix tokenizer\"` and pushed the branch before lunch.",
        "The library's new edition includes maps, photographs, and an index of more than 12,000 names.",
        "Whales communicate over long distances using low-frequency songs that travel through the ocean.",
        "If the function returns null, the caller should log a warning and retry after 500 milliseconds.",
        "Our hotel overlooked the harbour, where fishing boats unloaded their catch every morning.",
        "Shakespeare wrote thirty-seven plays, though scholars still debate the authorship of a few.",
        "The quick brown fox jumps over the lazy dog, and the dog doesn't seem to mind at all.",
        "Interest in machine learning has grown rapidly; conferences now receive tens of thousands of papers.",
        "Please send the signed forms to the Office of Admissions, 221 Baker Street, by Friday noon.",
        "The orchestra tuned their instruments while the audience quietly found their seats.",
        "Mount Everest, at 8,849 metres, is the highest mountain above sea level on Earth.",
        "They argued for hours about whether the sandwich was better with mustard or mayonnaise.",
        "Each layer normalises its input, applies attention, and then passes the result through an MLP.",
        "The city council voted 7-2 to extend the bicycle lanes along the river by another four kilometres.",
        "Children laughed as the puppy chased its tail around the garden until it fell over, dizzy.",
        "According to the report, renewable sources supplied 38 percent of the country's electricity last year.",
        "Why do cats knock things off tables? Nobody knows for sure, but they seem to enjoy it.",
        "The ancient manuscript, written on vellum, had survived fires, floods and two world wars.",
        "Tom's favourite book is 'The Hobbit', which he has read at least nine times since childhood.",
    ];

    /// <summary>About <paramref name="chars"/> characters in paragraphs of roughly 1–2 kB (a prompt's size).</summary>
    public static List<string> Paragraphs(int chars)
    {
        var rng = new Random(42);
        var paragraphs = new List<string>();
        var sb = new StringBuilder();
        int total = 0;
        while (total < chars)
        {
            sb.Append(Sentences[rng.Next(Sentences.Length)]).Append(' ');
            if (sb.Length >= 1000 + rng.Next(1000))
            {
                total += sb.Length;
                paragraphs.Add(sb.ToString().TrimEnd());
                sb.Clear();
            }
        }
        return paragraphs;
    }
}
