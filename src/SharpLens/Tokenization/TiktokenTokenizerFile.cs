using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SharpLens.Tokenization;

/// <summary>
/// A tiktoken-format <c>tokenizer.model</c> ("&lt;base64 bytes&gt; &lt;rank&gt;" per line). The 128,000 ranks of
/// Llama 3 are recognised: Llama 3's pre-tokenizer regex (digits in groups of up to three) and its special tokens
/// 128000–128255 with the names Meta's llama-models code gives them (Llama 3.1+: <c>&lt;|begin_of_text|&gt;</c> = BOS,
/// <c>&lt;|eot_id|&gt;</c> = 128009, ...), unless a <c>tokenizer_config.json</c> beside the file names them differently.
/// Encoding is Microsoft.ML.Tokenizers' tiktoken (whole pre-token looked up first, then lowest-rank pairs), which
/// matches tiktoken on every golden case; special tokens written in the text map to their ids, as in Hugging Face.
/// </summary>
public sealed class TiktokenTokenizerFile : ITokenizer
{
    /// <summary>Llama 3's pre-tokenizer regex (llama-models <c>tokenizer.py</c>).</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Number of ranks in Llama 3's file.</summary>
    public const int Llama3Ranks = 128_000;

    private readonly TiktokenTokenizer _tiktoken;
    private readonly byte[][] _bytes;          // id → bytes (the UTF-8 of its name for a special token)
    private readonly string?[] _specialText;   // id → special token name
    private readonly string?[] _strTokens;

    private TiktokenTokenizerFile(string name, TiktokenTokenizer tiktoken, byte[][] bytes, string?[] specialText,
        int? bos, int? eos, int? pad, bool prependsBos)
    {
        Name = name;
        _tiktoken = tiktoken;
        _bytes = bytes;
        _specialText = specialText;
        _strTokens = new string?[bytes.Length];
        BosTokenId = bos ?? eos;
        EosTokenId = eos;
        PadTokenId = pad ?? eos;
        PrependsBos = prependsBos && BosTokenId is not null;
    }

    /// <summary>Whether <paramref name="head"/> (the first bytes of a file) looks like tiktoken ranks rather than a protobuf.</summary>
    public static bool LooksLikeTiktoken(ReadOnlySpan<byte> head)
    {
        int space = head.IndexOf((byte)' ');
        if (space <= 0) return false;
        foreach (byte b in head[..space])
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'/' or (byte)'=')) return false;
        int end = space + 1;
        while (end < head.Length && char.IsAsciiDigit((char)head[end])) end++;
        return end > space + 1 && (end == head.Length || head[end] is (byte)'\n' or (byte)'\r');
    }

    /// <summary>Reads a tiktoken <c>tokenizer.model</c> (Llama 3) plus the config files beside it.</summary>
    public static TiktokenTokenizerFile FromFile(string path)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var ranks = new List<byte[]>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            if (line.Length == 0) continue;
            int space = line.IndexOf(' ');
            byte[] bytes;
            int rank;
            try
            {
                bytes = Convert.FromBase64String(line[..Math.Max(space, 0)]);
                rank = int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception e) when (e is FormatException or OverflowException or ArgumentOutOfRangeException)
            {
                throw new SharpLensException($"{path}: line {lineNo} is not \"<base64> <rank>\" as a tiktoken file needs: '{Shorten(line)}'.", e);
            }
            if (rank != ranks.Count)
                throw new SharpLensException($"{path}: line {lineNo} has rank {rank}; ranks must be 0, 1, 2, ... in order (expected {ranks.Count}).");
            ranks.Add(bytes);
        }
        if (ranks.Count != Llama3Ranks)
            throw new SharpLensException(
                $"{path}: a tiktoken file with {ranks.Count:N0} ranks; only Llama 3's ({Llama3Ranks:N0} ranks) is known, " +
                "since the file itself does not say which pre-tokenizer regex and special tokens go with it.");

        var config = TokenizerConfigFiles.Read(folder);
        var specials = Llama3SpecialTokens();
        foreach (var (id, content) in config.AddedDecoder)
        {
            if (id >= Llama3Ranks + specials.Length)
                throw new SharpLensException($"{Path.Combine(folder, "tokenizer_config.json")}: names added token id {id}, but Llama 3's ids end at {Llama3Ranks + specials.Length - 1}.");
            if (id >= Llama3Ranks) specials[id - Llama3Ranks] = content;   // a config's own names win over Meta's
        }
        var specialIds = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < specials.Length; i++) specialIds[specials[i]] = Llama3Ranks + i;

        var all = new byte[Llama3Ranks + specials.Length][];
        var specialText = new string?[all.Length];
        ranks.CopyTo(all);
        for (int i = 0; i < specials.Length; i++)
        {
            all[Llama3Ranks + i] = Encoding.UTF8.GetBytes(specials[i]);
            specialText[Llama3Ranks + i] = specials[i];
        }

        TiktokenTokenizer tiktoken;
        var regex = new Regex(Llama3Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        // Microsoft.ML.Tokenizers decodes base64 more strictly than Convert (padding inside a token): its refusal names the file.
        try
        {
            using var stream = File.OpenRead(path);
            tiktoken = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(regex, specialIds), normalizer: null, specialIds);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new SharpLensException($"{path}: not a valid tiktoken file: {e.Message}", e);
        }

        int? Id(string? token) => token is not null && specialIds.TryGetValue(token, out int id) ? id : null;
        int? bos = config.Mentioned.Contains("bos_token") ? Id(config.Bos) : Llama3Ranks;
        int? eos = config.Mentioned.Contains("eos_token") ? Id(config.Eos) : Llama3Ranks + 1;
        int? pad = config.Mentioned.Contains("pad_token") ? Id(config.Pad) : null;
        // Meta's Tokenizer.encode(bos=True) and Hugging Face's post-processor both put <|begin_of_text|> first.
        return new TiktokenTokenizerFile(Path.GetFileName(folder), tiktoken, all, specialText, bos, eos, pad, config.AddBosToken ?? true);
    }

    /// <summary>
    /// A tiktoken tokenizer from a Hugging Face tokenizer.json whose BPE has <c>ignore_merges</c> (Llama 3's): the
    /// byte-level vocabulary read as ranks (id = rank, as in the tiktoken file it was converted from), every added token
    /// matched in text first.
    /// </summary>
    internal static TiktokenTokenizerFile FromByteLevelVocab(string path, Dictionary<string, int> vocab, Dictionary<string, int> added,
        string pattern, Normalizer? normalizer, TokenizerConfigFiles config, bool postProcessorAddsBos)
    {
        int size = Math.Max(vocab.Count == 0 ? -1 : vocab.Values.Max(), added.Count == 0 ? -1 : added.Values.Max()) + 1;
        var all = new byte[size][];
        var specialText = new string?[size];
        var ranks = new StringBuilder();
        var buffer = new List<byte>();
        foreach (var (token, id) in vocab)
        {
            if (added.ContainsKey(token)) continue;
            buffer.Clear();
            foreach (char c in token)
                buffer.Add(ByteLevel.CharToByte.TryGetValue(c, out byte b) ? b
                    : throw new SharpLensException($"{path}: field model.vocab: '{token}' (id {id}) has a character outside the byte-level alphabet."));
            all[id] = buffer.ToArray();
            ranks.Append(Convert.ToBase64String(all[id])).Append(' ').Append(id).Append('\n');
        }
        foreach (var (content, id) in added)
        {
            all[id] = Encoding.UTF8.GetBytes(content);
            specialText[id] = content;
        }
        for (int i = 0; i < size; i++) all[i] ??= [];

        var regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        var longestFirst = added.OrderByDescending(kv => kv.Key.Length).ToDictionary(StringComparer.Ordinal);
        TiktokenTokenizer tiktoken;
        using (var stream = new MemoryStream(Encoding.UTF8.GetBytes(ranks.ToString())))
            tiktoken = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(regex, longestFirst.Count == 0 ? null : longestFirst), normalizer, longestFirst);

        int? Id(string? token) => token is null ? null : added.TryGetValue(token, out int a) ? a : vocab.TryGetValue(token, out int v) ? v : null;
        int? bos = config.Mentioned.Contains("bos_token") ? Id(config.Bos) : Id("<|begin_of_text|>");
        int? eos = config.Mentioned.Contains("eos_token") ? Id(config.Eos) : Id("<|end_of_text|>") ?? Id("<|endoftext|>");
        int? pad = config.Mentioned.Contains("pad_token") ? Id(config.Pad) : null;
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        return new TiktokenTokenizerFile(Path.GetFileName(folder), tiktoken, all, specialText, bos, eos, pad, config.AddBosToken ?? postProcessorAddsBos);
    }

    /// <summary>Names of Llama 3's 256 special tokens (ids 128000–128255), as in meta-llama/llama-models for Llama 3.1+.</summary>
    public static string[] Llama3SpecialTokens()
    {
        string[] named =
        [
            "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
        ];
        var all = new string[256];
        named.CopyTo(all, 0);
        for (int i = named.Length; i < all.Length; i++) all[i] = $"<|reserved_special_token_{i - named.Length + 2}|>";
        return all;
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize => _bytes.Length;
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId { get; }
    /// <inheritdoc/>
    public int? PadTokenId { get; }
    /// <inheritdoc/>
    public bool PrependsBos { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => _tiktoken.EncodeToIds(text);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            TokenIds.CheckInVocab(this, id);
            bytes.AddRange(_bytes[id]);
        }
        // Hugging Face's ByteLevel decoder (from_utf8_lossy): each maximal invalid UTF-8 sequence becomes one U+FFFD.
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <inheritdoc/>
    public string DecodeToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return _strTokens[id] ??= Decode([id]);
    }

    /// <inheritdoc/>
    public string IdToToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return _specialText[id] ?? ByteLevel.Render(_bytes[id]);
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..60] + "...";
}
