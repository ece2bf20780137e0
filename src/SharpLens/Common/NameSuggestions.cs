namespace SharpLens;

/// <summary>Finds the valid names closest to a misspelt one, for error messages.</summary>
public static class NameSuggestions
{
    /// <summary>The <paramref name="count"/> candidates closest to <paramref name="name"/> (edit distance, case-insensitive), closest first.</summary>
    public static IReadOnlyList<string> Closest(string name, IEnumerable<string> candidates, int count = 3) =>
        candidates.Distinct()
            .Select(c => (c, d: Distance(name.ToLowerInvariant(), c.ToLowerInvariant())))
            .OrderBy(x => x.d).ThenBy(x => x.c, StringComparer.Ordinal)
            .Take(count).Select(x => x.c).ToList();

    /// <summary>"Did you mean 'a', 'b'?" text for an error message, or an empty string when there are no candidates.</summary>
    public static string DidYouMean(string name, IEnumerable<string> candidates, int count = 3)
    {
        var best = Closest(name, candidates, count);
        return best.Count == 0 ? "" : " Did you mean " + string.Join(", ", best.Select(b => $"'{b}'")) + "?";
    }

    /// <summary>Levenshtein distance.</summary>
    public static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
