using System.Text;
using TorchSharp;

namespace SharpLens.Tokenization;

/// <summary>
/// TransformerLens's text ↔ token functions (<c>to_tokens</c>, <c>to_str_tokens</c>, <c>to_single_token</c>,
/// <c>to_string</c>, <c>get_token_position</c>, <c>utils.get_attention_mask</c>) with the tokenizer passed explicitly.
/// BOS is prepended as an id (TransformerLens prepends the BOS text; for byte-level BPE that is the same).
/// </summary>
public static class TextEncoding
{
    /// <summary>
    /// Ids of one prompt: BOS (when <paramref name="prependBos"/>) then the text's tokens. With <paramref name="nCtx"/>
    /// set, a longer prompt keeps its first <paramref name="nCtx"/> ids (BOS counts) when <paramref name="truncate"/>,
    /// and is an error otherwise.
    /// </summary>
    public static IReadOnlyList<int> ToTokenIds(ITokenizer tokenizer, string text, bool prependBos = true, int? nCtx = null, bool truncate = true)
        => EncodeRow(tokenizer, text, prependBos, nCtx, truncate, index: null);

    /// <summary>TransformerLens <c>to_tokens(text)</c>: a [1, pos] batch.</summary>
    public static TokenBatch ToTokens(ITokenizer tokenizer, string text, bool prependBos = true,
        PaddingSide paddingSide = PaddingSide.Right, int? nCtx = null, bool truncate = true)
        => ToTokens(tokenizer, [text], prependBos, paddingSide, nCtx, truncate);

    /// <summary>
    /// TransformerLens <c>to_tokens(texts)</c>: [batch, pos] int64 ids, shorter prompts padded with the pad id on
    /// <paramref name="paddingSide"/> (left padding goes before the BOS). Truncation as in <see cref="ToTokenIds"/>.
    /// <see cref="TokenBatch.AttentionMask"/> is set when something was padded.
    /// </summary>
    public static TokenBatch ToTokens(ITokenizer tokenizer, IReadOnlyList<string> texts, bool prependBos = true,
        PaddingSide paddingSide = PaddingSide.Right, int? nCtx = null, bool truncate = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (texts.Count == 0) throw new SharpLensException("to_tokens needs at least one prompt; got an empty list.");
        var rows = new int[texts.Count][];
        for (int i = 0; i < rows.Length; i++)
            rows[i] = EncodeRow(tokenizer, texts[i], prependBos, nCtx, truncate, texts.Count == 1 ? null : i);
        int b = rows.Length, p = rows.Max(r => r.Length);
        bool padded = rows.Any(r => r.Length != p);
        long pad = padded ? tokenizer.PadTokenId ?? throw new SharpLensException(
            $"{tokenizer.Name} has no pad token, so prompts of different lengths cannot be batched; tokenize them one at a time.") : 0;

        var flat = new long[b * p];
        for (int i = 0; i < b; i++)
        {
            var row = rows[i];
            int start = paddingSide == PaddingSide.Left ? p - row.Length : 0;
            var dest = flat.AsSpan(i * p, p);
            dest.Fill(pad);
            for (int j = 0; j < row.Length; j++) dest[start + j] = row[j];
        }
        var tokens = torch.tensor(flat, [b, p], torch.int64);
        var mask = padded
            ? torch.tensor(ComputeAttentionMask(flat, b, p, pad, tokenizer.BosTokenId, prependBos, paddingSide), [b, p], torch.int64)
            : null;
        return new TokenBatch(tokens, mask, rows.Select(r => r.Length).ToArray(), paddingSide);
    }

    /// <summary>
    /// TransformerLens <c>utils.get_attention_mask</c> for [batch, pos] tokens: 1 everywhere except the pad ids at the
    /// padded end (trailing pads for right padding, leading pads for left). When <paramref name="prependBos"/> and
    /// BOS == PAD (GPT-2), the last leading "pad" under left padding is the BOS and stays 1. Like TransformerLens, a
    /// real pad id at that end (e.g. a prompt ending in &lt;|endoftext|&gt;) is masked too.
    /// </summary>
    public static torch.Tensor GetAttentionMask(ITokenizer tokenizer, torch.Tensor tokens, bool prependBos, PaddingSide paddingSide)
    {
        if (tokens.dim() != 2) throw new SharpLensException($"get_attention_mask takes [batch, pos] tokens, got shape {TensorExtensions.ShapeText(tokens.shape)}.");
        long pad = tokenizer.PadTokenId ?? throw new SharpLensException($"{tokenizer.Name} has no pad token, so there is no padding to mask.");
        int b = (int)tokens.shape[0], p = (int)tokens.shape[1];
        using var scope = torch.NewDisposeScope();
        long[] flat = tokens.to_type(torch.int64).cpu().contiguous().data<long>().ToArray();
        return torch.tensor(ComputeAttentionMask(flat, b, p, pad, tokenizer.BosTokenId, prependBos, paddingSide), [b, p], torch.int64)
            .to(tokens.device).MoveToOuterDisposeScope();
    }

    internal static long[] ComputeAttentionMask(long[] tokens, int b, int p, long pad, long? bos, bool prependBos, PaddingSide side)
    {
        var mask = new long[b * p];
        Array.Fill(mask, 1L);
        for (int i = 0; i < b; i++)
        {
            var t = tokens.AsSpan(i * p, p);
            var m = mask.AsSpan(i * p, p);
            if (side == PaddingSide.Right)
            {
                int lastReal = t.LastIndexOfAnyExcept(pad);   // -1 when the row is all pad
                m[(lastReal + 1)..].Clear();
            }
            else
            {
                int firstReal = t.IndexOfAnyExcept(pad);
                int leading = firstReal < 0 ? p : firstReal;
                m[..leading].Clear();
                if (prependBos && bos == pad && p > 0)
                    m[leading > 0 ? leading - 1 : p - 1] = 1;   // index -1 wraps to the end, as in PyTorch
            }
        }
        return mask;
    }

    /// <summary>TransformerLens <c>to_str_tokens(text)</c>: each token of the prompt decoded on its own.</summary>
    public static IReadOnlyList<string> ToStrTokens(ITokenizer tokenizer, string text, bool prependBos = true, int? nCtx = null)
        => ToStrTokens(tokenizer, EncodeRow(tokenizer, text, prependBos, nCtx, truncate: true, index: null));

    /// <summary>TransformerLens <c>to_str_tokens(list_of_texts)</c>: string tokens of each prompt (no padding).</summary>
    public static IReadOnlyList<IReadOnlyList<string>> ToStrTokens(ITokenizer tokenizer, IReadOnlyList<string> texts, bool prependBos = true, int? nCtx = null)
        => texts.Select(t => ToStrTokens(tokenizer, t, prependBos, nCtx)).ToList();

    /// <summary>TransformerLens <c>to_str_tokens(tokens)</c>: each id decoded on its own. Ids must be in the vocabulary.</summary>
    public static IReadOnlyList<string> ToStrTokens(ITokenizer tokenizer, IEnumerable<int> ids)
    {
        var result = new List<string>();
        foreach (int id in ids)
        {
            TokenIds.CheckInVocab(tokenizer, id);
            result.Add(tokenizer.DecodeToken(id));
        }
        return result;
    }

    /// <summary>Same as the <see cref="IEnumerable{T}"/> overload (an array would otherwise also match the tensor overload).</summary>
    public static IReadOnlyList<string> ToStrTokens(ITokenizer tokenizer, int[] ids) => ToStrTokens(tokenizer, (IEnumerable<int>)ids);

    /// <summary>TransformerLens <c>to_str_tokens(tensor)</c>: tokens of shape [pos] or [1, pos] (trivial axes are squeezed).</summary>
    public static IReadOnlyList<string> ToStrTokens(ITokenizer tokenizer, torch.Tensor tokens)
    {
        long[] ids = Squeezed(tokens, "to_str_tokens");
        return ids.Select(id => { TokenIds.CheckInVocab(tokenizer, id); return tokenizer.DecodeToken((int)id); }).ToList();
    }

    /// <summary>
    /// TransformerLens <c>to_single_token</c>: the id of a string that is exactly one token (no BOS);
    /// fails showing how the string tokenizes otherwise.
    /// </summary>
    public static int ToSingleToken(ITokenizer tokenizer, string text)
    {
        var ids = tokenizer.Encode(text);
        if (ids.Count == 1) return ids[0];
        // A long text (a whole prompt given as an answer) is shown by its first tokens only.
        const int shown = 12;
        string list = string.Join(", ", ids.Take(shown).Select(id => Quote(tokenizer.DecodeToken(id)))), idList = string.Join(", ", ids.Take(shown));
        string how = ids.Count == 0 ? "no tokens"
            : ids.Count <= shown ? $"[{list}] (ids {idList})"
            : $"{ids.Count} tokens, starting [{list}, …] (ids {idList}, …)";
        throw new SharpLensException($"{Excerpt(text)} is not a single token: it tokenizes to {how}.");
    }

    /// <summary>TransformerLens <c>to_single_str_token</c>: the string of one id.</summary>
    public static string ToSingleStrToken(ITokenizer tokenizer, int id)
    {
        TokenIds.CheckInVocab(tokenizer, id);
        return tokenizer.DecodeToken(id);
    }

    /// <summary>TransformerLens <c>to_string</c> of a sequence of ids (no cleanup of spaces). Ids must be in the vocabulary.</summary>
    public static string TokensToString(ITokenizer tokenizer, IEnumerable<int> ids)
    {
        var list = ids as IReadOnlyList<int> ?? ids.ToList();
        foreach (int id in list) TokenIds.CheckInVocab(tokenizer, id);
        return tokenizer.Decode(list);
    }

    /// <summary>Same as the <see cref="IEnumerable{T}"/> overload (an array would otherwise also match the tensor overload).</summary>
    public static string TokensToString(ITokenizer tokenizer, int[] ids) => TokensToString(tokenizer, (IEnumerable<int>)ids);

    /// <summary>TransformerLens <c>to_string</c> of a [pos] (or scalar) tensor.</summary>
    public static string TokensToString(ITokenizer tokenizer, torch.Tensor tokens)
    {
        if (tokens.dim() > 1)
            throw new SharpLensException($"TokensToString takes [pos] tokens, got shape {TensorExtensions.ShapeText(tokens.shape)}; use TokensToStrings for [batch, pos].");
        return TokensToString(tokenizer, Ids(tokens).Select(CheckedInt(tokenizer)));
    }

    /// <summary>TransformerLens <c>to_string</c> of a [batch, pos] tensor: one string per row (padding included).</summary>
    public static IReadOnlyList<string> TokensToStrings(ITokenizer tokenizer, torch.Tensor tokens)
    {
        if (tokens.dim() != 2) throw new SharpLensException($"TokensToStrings takes [batch, pos] tokens, got shape {TensorExtensions.ShapeText(tokens.shape)}.");
        long[] flat = Ids(tokens);
        int p = (int)tokens.shape[1];
        return Enumerable.Range(0, (int)tokens.shape[0])
            .Select(i => TokensToString(tokenizer, flat.Skip(i * p).Take(p).Select(CheckedInt(tokenizer)))).ToList();
    }

    /// <summary>TransformerLens <c>get_token_position</c>: where <paramref name="token"/> occurs in the tokenized <paramref name="text"/>.</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, int token, string text, TokenPositionMode mode = TokenPositionMode.First, bool prependBos = true, int? nCtx = null)
        => Find(tokenizer, token, EncodeRow(tokenizer, text, prependBos, nCtx, truncate: true, index: null), mode);

    /// <summary><c>get_token_position</c> with the token given as a string that must be a single token.</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, string singleToken, string text, TokenPositionMode mode = TokenPositionMode.First, bool prependBos = true, int? nCtx = null)
        => GetTokenPosition(tokenizer, ToSingleToken(tokenizer, singleToken), text, mode, prependBos, nCtx);

    /// <summary><c>get_token_position</c> in a sequence of ids (used as given: no BOS is added).</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, int token, IReadOnlyList<int> tokens, TokenPositionMode mode = TokenPositionMode.First)
        => Find(tokenizer, token, tokens, mode);

    /// <summary>Same as the list overload (an array would otherwise also match the tensor overload).</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, int token, int[] tokens, TokenPositionMode mode = TokenPositionMode.First)
        => Find(tokenizer, token, tokens, mode);

    /// <summary>Same as the list overload (an array would otherwise also match the tensor overload).</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, string singleToken, int[] tokens, TokenPositionMode mode = TokenPositionMode.First)
        => Find(tokenizer, ToSingleToken(tokenizer, singleToken), tokens, mode);

    /// <summary><c>get_token_position</c> of a single-token string in a sequence of ids.</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, string singleToken, IReadOnlyList<int> tokens, TokenPositionMode mode = TokenPositionMode.First)
        => Find(tokenizer, ToSingleToken(tokenizer, singleToken), tokens, mode);

    /// <summary><c>get_token_position</c> in a [pos] or [1, pos] tensor.</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, int token, torch.Tensor tokens, TokenPositionMode mode = TokenPositionMode.First)
    {
        if (tokens.dim() == 2 && tokens.shape[0] != 1 || tokens.dim() is 0 or > 2)
            throw new SharpLensException($"get_token_position takes [pos] or [1, pos] tokens, got shape {TensorExtensions.ShapeText(tokens.shape)}.");
        return Find(tokenizer, token, Ids(tokens).Select(id => (int)id).ToArray(), mode);
    }

    /// <summary><c>get_token_position</c> of a single-token string in a [pos] or [1, pos] tensor.</summary>
    public static int GetTokenPosition(ITokenizer tokenizer, string singleToken, torch.Tensor tokens, TokenPositionMode mode = TokenPositionMode.First)
        => GetTokenPosition(tokenizer, ToSingleToken(tokenizer, singleToken), tokens, mode);

    /// <summary>
    /// User text (a prompt, an answer) for a message: <see cref="Quote"/>d, and when longer than
    /// <paramref name="maxChars"/> cut there with <c>…</c> and its full length, e.g. <c>'When Mary and John…' (2417 characters)</c>,
    /// so an error about a long prompt stays readable.
    /// </summary>
    public static string Excerpt(string text, int maxChars = 80)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length <= maxChars) return Quote(text);
        int cut = Math.Max(0, maxChars);
        if (cut > 0 && char.IsHighSurrogate(text[cut - 1])) cut--; // never split a surrogate pair
        return $"{Quote(text[..cut] + "…")} ({text.Length} characters)";
    }

    /// <summary>A string token as Python prints it: in single quotes, with backslashes, quotes and control characters escaped.</summary>
    public static string Quote(string s)
    {
        var sb = new StringBuilder(s.Length + 2).Append('\'');
        foreach (char c in s)
            sb.Append(c switch
            {
                '\\' => "\\\\", '\'' => "\\'", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t",
                < ' ' or '\x7f' => $"\\x{(int)c:x2}",
                _ => c.ToString(),
            });
        return sb.Append('\'').ToString();
    }

    private static int[] EncodeRow(ITokenizer tokenizer, string text, bool prependBos, int? nCtx, bool truncate, int? index)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        if (nCtx is <= 0) throw new SharpLensException($"n_ctx must be positive, got {nCtx}.");
        int bos = 0;
        if (prependBos)
            bos = tokenizer.BosTokenId ?? throw new SharpLensException($"{tokenizer.Name} has no BOS token; use prependBos: false.");
        var ids = tokenizer.Encode(text);
        int n = ids.Count + (prependBos ? 1 : 0);
        if (nCtx is int max && n > max)
        {
            if (!truncate)
            {
                string which = index is int i ? $"prompt {i} ({Excerpt(text)})" : $"the prompt {Excerpt(text)}";
                throw new SharpLensException(
                    $"{which} is {n} tokens long{(prependBos ? " including BOS" : "")}, more than n_ctx = {max}. " +
                    $"Shorten it, or turn truncation on to keep its first {max} tokens.");
            }
            n = max;
        }
        var row = new int[n];
        int k = 0;
        if (prependBos) row[k++] = bos;
        for (int j = 0; k < n; j++) row[k++] = ids[j];
        return row;
    }

    private static int Find(ITokenizer tokenizer, int token, IReadOnlyList<int> tokens, TokenPositionMode mode)
    {
        for (int k = 0; k < tokens.Count; k++)
        {
            int i = mode == TokenPositionMode.First ? k : tokens.Count - 1 - k;
            if (tokens[i] == token) return i;
        }
        string shown = token >= 0 && token < tokenizer.VocabSize ? $" ({Quote(tokenizer.DecodeToken(token))})" : "";
        throw new SharpLensException($"token {token}{shown} does not occur in the prompt ({tokens.Count} tokens searched).");
    }

    private static long[] Ids(torch.Tensor tokens)
    {
        using var scope = torch.NewDisposeScope();
        return tokens.to_type(torch.int64).cpu().contiguous().data<long>().ToArray();
    }

    private static long[] Squeezed(torch.Tensor tokens, string what)
    {
        var shape = tokens.shape.Where(d => d != 1).ToArray();
        if (shape.Length > 1)
            throw new SharpLensException($"{what} takes [pos] or [1, pos] tokens, got shape {TensorExtensions.ShapeText(tokens.shape)}.");
        return Ids(tokens);
    }

    private static Func<long, int> CheckedInt(ITokenizer tokenizer) => id => { TokenIds.CheckInVocab(tokenizer, id); return (int)id; };
}
