namespace SharpLens.Tokenization;

/// <summary>Shared id checks and display helpers.</summary>
internal static class TokenIds
{
    public static void CheckInVocab(ITokenizer tokenizer, long id)
    {
        if (id < 0 || id >= tokenizer.VocabSize)
            throw new SharpLensException(
                $"token id {id} is outside the vocabulary of {tokenizer.Name}: ids must be in [0, {tokenizer.VocabSize}) (vocab size {tokenizer.VocabSize}).");
    }
}

/// <summary>
/// GPT-2's byte-level alphabet: each byte is shown as a printable character (space → 'Ġ', newline → 'Ċ', ...),
/// so a vocabulary of strings can hold arbitrary bytes.
/// </summary>
internal static class ByteLevel
{
    /// <summary>Character → byte, for the 256 characters of the alphabet.</summary>
    public static readonly IReadOnlyDictionary<char, byte> CharToByte = Build();

    /// <summary>Byte → character of the alphabet.</summary>
    private static readonly char[] s_byteToChar = CharToByte.OrderBy(kv => kv.Value).Select(kv => kv.Key).ToArray();

    /// <summary>Bytes written in the alphabet, as a byte-level vocabulary stores them (space → 'Ġ').</summary>
    public static string Render(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = s_byteToChar[bytes[i]];
        return new string(chars);
    }

    private static Dictionary<char, byte> Build()
    {
        // Printable Latin-1 bytes keep their own character; the other 68 bytes take 256, 257, ... in byte order.
        var map = new Dictionary<char, byte>(256);
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[(char)(printable ? b : next++)] = (byte)b;
        }
        return map;
    }

    /// <summary>
    /// The bytes a vocabulary string stands for. As in Hugging Face's ByteLevel decoder, a string with a character
    /// outside the alphabet (an added token such as "&lt;pad&gt;" written literally) stands for its own UTF-8.
    /// </summary>
    public static void AppendBytes(string token, List<byte> into)
    {
        int start = into.Count;
        foreach (char c in token)
        {
            if (!CharToByte.TryGetValue(c, out byte b))
            {
                into.RemoveRange(start, into.Count - start);
                into.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
                return;
            }
            into.Add(b);
        }
    }
}
