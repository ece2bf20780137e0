namespace SharpLens.Tokenization;

/// <summary>
/// A text tokenizer as TransformerLens sees it: text to ids without any special token added, ids back to text,
/// and the special ids it uses for BOS, EOS and padding.
/// </summary>
public interface ITokenizer
{
    /// <summary>Short name for messages, e.g. <c>gpt2</c> or the folder the tokenizer was loaded from.</summary>
    string Name { get; }

    /// <summary>Number of ids: one more than the largest id (TransformerLens's <c>d_vocab</c> inference).</summary>
    int VocabSize { get; }

    /// <summary>Id TransformerLens prepends when <c>prepend_bos</c> is on (falls back to EOS, as TransformerLens does); null when there is none.</summary>
    int? BosTokenId { get; }

    /// <summary>End-of-text id (<c>&lt;|endoftext|&gt;</c> when the tokenizer names none); null when there is none.</summary>
    int? EosTokenId { get; }

    /// <summary>Id used to pad batches (falls back to EOS, as TransformerLens does); null when there is none.</summary>
    int? PadTokenId { get; }

    /// <summary>Token ids of <paramref name="text"/>. Adds no BOS/EOS; special tokens written in the text (e.g. <c>&lt;|endoftext|&gt;</c>) map to their ids.</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>The text of a sequence of ids (bytes joined first, then decoded; invalid UTF-8 becomes U+FFFD). Ids must be in range.</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>
    /// Whether the tokenizer itself puts BOS in front of a text (Hugging Face <c>add_special_tokens=True</c>; true for
    /// Llama 2, Mistral, Llama 3, false for GPT-2, NeoX, Qwen2). TransformerLens ignores this and uses the model's
    /// <c>default_prepend_bos</c>; it decides only what a bare tokenizer does.
    /// </summary>
    bool PrependsBos { get; }

    /// <summary>The vocabulary entry of an id (Hugging Face <c>convert_ids_to_tokens</c>): <c>▁Hello</c>, <c>ĠHello</c>, <c>&lt;0xF0&gt;</c>, <c>&lt;s&gt;</c>.</summary>
    string IdToToken(int id);

    /// <summary>One id decoded on its own: TransformerLens's string token (a partial UTF-8 character shows as U+FFFD).</summary>
    string DecodeToken(int id);
}
