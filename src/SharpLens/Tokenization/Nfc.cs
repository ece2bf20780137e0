using System.Globalization;
using System.Text;

namespace SharpLens.Tokenization;

/// <summary>
/// Unicode NFC (canonical decomposition, canonical ordering, canonical composition) from tables generated out of
/// the Unicode data (<see cref="NfcTables"/>). SharpLens runs with InvariantGlobalization, where
/// <c>string.Normalize</c> returns non-ASCII text unchanged, so tokenizers whose normalizer is NFC (NeoX, Qwen2)
/// need this to match Hugging Face.
/// </summary>
public static class Nfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Lazy<Data> s_data = new(Data.Parse, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The NFC form of <paramref name="text"/> (the same string when it is already NFC and below U+0300).</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return IsStable(text) ? text : Compute(text);
    }

    /// <summary>The NFC form of <paramref name="text"/>.</summary>
    public static string Normalize(ReadOnlySpan<char> text) => IsStable(text) ? text.ToString() : Compute(text);

    // Nothing below U+0300 decomposes or combines in a way NFC changes, so most text needs no work.
    private static bool IsStable(ReadOnlySpan<char> text) => !text.ContainsAnyInRange('\u0300', '\uffff');

    private static string Compute(ReadOnlySpan<char> text)
    {
        var data = s_data.Value;
        var cps = new List<int>(text.Length);
        foreach (var rune in text.EnumerateRunes()) Decompose(rune.Value, cps, data);
        // Canonical ordering: a stable sort of each run of non-starters by combining class.
        for (int i = 1; i < cps.Count; i++)
        {
            int c = cps[i], k = data.Ccc(c);
            if (k == 0) continue;
            int j = i;
            while (j > 0 && data.Ccc(cps[j - 1]) > k) { cps[j] = cps[j - 1]; j--; }
            cps[j] = c;
        }
        var result = Compose(cps, data);
        var sb = new StringBuilder(result.Count);
        foreach (int cp in result) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    private static void Decompose(int cp, List<int> into, Data data)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            into.Add(LBase + s / NCount);
            into.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) into.Add(TBase + s % TCount);
            return;
        }
        if (data.Decomposition.TryGetValue(cp, out var parts))
            foreach (int p in parts) Decompose(p, into, data);
        else into.Add(cp);
    }

    private static List<int> Compose(List<int> cps, Data data)
    {
        var result = new List<int>(cps.Count);
        int starter = -1, lastCcc = 0;
        foreach (int c in cps)
        {
            int ccc = data.Ccc(c);
            // c may join the last starter when nothing between blocks it: it is adjacent, or every mark between has a
            // lower combining class (the marks are in canonical order, so the last one has the highest).
            if (starter >= 0 && (result.Count - 1 == starter || lastCcc != 0 && lastCcc < ccc)
                && TryCompose(result[starter], c, data) is int composite)
            {
                result[starter] = composite;
                continue;
            }
            if (ccc == 0) starter = result.Count;
            lastCcc = ccc;
            result.Add(c);
        }
        return result;
    }

    private static int? TryCompose(int a, int b, Data data)
    {
        if (a is >= LBase and < LBase + LCount && b is >= VBase and < VBase + VCount)
            return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
        if (a is >= SBase and < SBase + SCount && (a - SBase) % TCount == 0 && b is > TBase and < TBase + TCount)
            return a + (b - TBase);
        return data.Composition.TryGetValue(((long)a << 21) | (uint)b, out int c) ? c : null;
    }

    private sealed class Data
    {
        public required Dictionary<int, byte> Classes { get; init; }
        public required Dictionary<int, int[]> Decomposition { get; init; }
        public required Dictionary<long, int> Composition { get; init; }

        public int Ccc(int cp) => cp < 0x300 ? 0 : Classes.GetValueOrDefault(cp);

        public static Data Parse()
        {
            var classes = new Dictionary<int, byte>();
            foreach (var item in Items(NfcTables.CombiningClasses))
            {
                int dash = item.IndexOf('-'), colon = item.IndexOf(':');
                int first = Hex(item[..dash]), last = Hex(item[(dash + 1)..colon]);
                byte k = byte.Parse(item[(colon + 1)..], CultureInfo.InvariantCulture);
                for (int cp = first; cp <= last; cp++) classes[cp] = k;
            }
            var decomposition = new Dictionary<int, int[]>();
            var composition = new Dictionary<long, int>();
            foreach (var item in Items(NfcTables.Decompositions))
            {
                int sep = item.IndexOfAny(['=', '+']);
                int cp = Hex(item[..sep]);
                int[] parts = item[(sep + 1)..].Split('.').Select(Hex).ToArray();
                decomposition[cp] = parts;
                if (item[sep] == '+') composition[((long)parts[0] << 21) | (uint)parts[1]] = cp;
            }
            return new Data { Classes = classes, Decomposition = decomposition, Composition = composition };
        }

        private static IEnumerable<string> Items(string table) =>
            table.Split([' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);

        private static int Hex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }
}
