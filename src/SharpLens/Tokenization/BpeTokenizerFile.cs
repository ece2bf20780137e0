using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SharpLens.Tokenization;

/// <summary>
/// A byte-level BPE tokenizer (GPT-2, GPT-Neo, GPT-NeoX/Pythia style) read from a model folder's Hugging Face
/// files: <c>tokenizer.json</c>, or <c>vocab.json</c> + <c>merges.txt</c>. Special-token names come from
/// <c>tokenizer_config.json</c> / <c>special_tokens_map.json</c> beside them; missing ones fall back the way
/// TransformerLens does (EOS → <c>&lt;|endoftext|&gt;</c>, PAD → EOS, BOS → EOS).
/// </summary>
public sealed class BpeTokenizerFile : ITokenizer
{
    /// <summary>GPT-2's pre-tokenizer regex (Hugging Face ByteLevel with <c>use_regex</c>).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's pre-tokenizer regex (transformers' Qwen2Tokenizer): one digit per token.</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string EndOfText = "<|endoftext|>";
    private const int MaxTokenId = (1 << 24) - 1;

    private readonly BpeTokenizer _bpe;
    private readonly string?[] _tokenText;   // id → vocabulary string; null for ids nobody uses
    private readonly string?[] _strTokens;   // id → decoded string token, filled on first use

    // source: the file(s) read, for error messages.
    private BpeTokenizerFile(string name, string source, Dictionary<string, int> vocab, List<string> merges,
        Dictionary<string, int> added, string pattern, bool nfc, TokenizerConfigFiles names, bool prependsBos)
    {
        Name = name;
        foreach (var (text, id) in added) vocab.TryAdd(text, id);
        // Ids index arrays of the vocabulary size: a damaged id of 2e9 must not become a 16 GB allocation.
        // An added token whose text is already in the vocabulary under another id keeps that vocabulary entry, so the
        // size must count the added ids too.
        int maxId = vocab.Values.Concat(added.Values).DefaultIfEmpty(-1).Max();
        if (maxId > MaxTokenId)
            throw new SharpLensException($"{source}: token id {maxId} is too large (ids must be below {MaxTokenId + 1}); the file is damaged.");
        VocabSize = maxId + 1;
        _tokenText = new string?[VocabSize];
        foreach (var (text, id) in vocab)
            if (id >= 0) _tokenText[id] = text;
        foreach (var (text, id) in added) _tokenText[id] = text;   // an added token wins over a vocab entry with its id
        _strTokens = new string?[VocabSize];

        Regex regex;
        try { regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant); }
        catch (ArgumentException e) { throw new SharpLensException($"{source}: pre-tokenizer regex '{pattern}' is not valid in .NET: {e.Message}", e); }
        // Added tokens are matched in the raw text before the regex, as Hugging Face does.
        // Longest first, so that of NeoX's whitespace-run tokens the longest that fits is taken.
        var special = added.Count == 0 ? null : added.OrderByDescending(kv => kv.Key.Length).ToDictionary(StringComparer.Ordinal);
        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(regex, special),
                SpecialTokens = special,
                Normalizer = nfc ? new NfcNormalizer() : null,
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new SharpLensException($"{source}: the BPE vocabulary/merges are inconsistent: {e.Message}", e);
        }

        int? Id(string? token) => token is not null && vocab.TryGetValue(token, out int id) ? id : null;
        EosTokenId = Id(names.Eos) ?? Id(EndOfText);
        PadTokenId = Id(names.Pad) ?? EosTokenId;
        BosTokenId = Id(names.Bos) ?? EosTokenId;
        PrependsBos = (names.AddBosToken ?? prependsBos) && BosTokenId is not null;
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId { get; }
    /// <inheritdoc/>
    public int? PadTokenId { get; }

    /// <inheritdoc/>
    public bool PrependsBos { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => _bpe.EncodeToIds(text);

    /// <inheritdoc/>
    public string IdToToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return _tokenText[id] ?? "";
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            TokenIds.CheckInVocab(this, id);
            if (_tokenText[id] is { } t) ByteLevel.AppendBytes(t, bytes);
        }
        // Like Hugging Face (from_utf8_lossy): each maximal invalid UTF-8 sequence becomes one U+FFFD.
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <inheritdoc/>
    public string DecodeToken(int id)
    {
        TokenIds.CheckInVocab(this, id);
        return _strTokens[id] ??= Decode([id]);
    }

    /// <summary>
    /// Reads a Hugging Face <c>tokenizer.json</c> with a BPE model, plus the config files beside it: byte-level BPE
    /// (GPT-2, NeoX, Qwen2); with <c>ignore_merges</c> (Llama 3) as tiktoken ranks; SentencePiece-style BPE with
    /// <c>byte_fallback</c> (Llama 2, Mistral) through the <c>tokenizer.model</c> beside it (sentencepiece semantics:
    /// <c>&lt;s&gt;</c> written in text stays text).
    /// </summary>
    public static ITokenizer FromTokenizerJson(string path)
    {
        using var doc = Json.Read(path);
        var root = doc.RootElement;
        string where = $"{path}";
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new SharpLensException($"{where}: field \"model\" is missing or not an object; not a Hugging Face tokenizer.json.");
        string type = Str(model, "type") ?? "BPE";
        if (type != "BPE")
            throw new SharpLensException($"{where}: model.type '{type}' is not supported; supported: BPE (byte-level, GPT-2/NeoX/Qwen2 style)."
                + NameSuggestions.DidYouMean(type, ["BPE"]));
        if (Bool(model, "byte_fallback"))
        {
            // SentencePiece converted to tokenizer.json: the original model beside it is the reference (Llama 3 repos keep it in original/).
            string folder0 = Path.GetDirectoryName(Path.GetFullPath(path))!;
            foreach (var sp in new[] { Path.Combine(folder0, "tokenizer.model"), Path.Combine(folder0, "original", "tokenizer.model") })
                if (File.Exists(sp)) return TokenizerLoader.FromModelFile(sp);
            throw new SharpLensException($"{where}: byte_fallback BPE (SentencePiece style, e.g. Llama 2/Mistral) is read from the tokenizer.model beside it, and there is none.");
        }
        foreach (var key in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (!string.IsNullOrEmpty(Str(model, key)))
                throw new SharpLensException($"{where}: model.{key} is set; only byte-level BPE without subword prefixes/suffixes is supported.");

        if (!model.TryGetProperty("vocab", out var vocabEl) || vocabEl.ValueKind != JsonValueKind.Object)
            throw new SharpLensException($"{where}: field model.vocab is missing or not an object {{token: id}}.");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in vocabEl.EnumerateObject())
            vocab[p.Name] = p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int id) && id >= 0 ? id
                : throw new SharpLensException($"{where}: field model.vocab: the id of {Shorten(p.Name)} must be a non-negative integer, got {Shorten(p.Value.GetRawText())}.");

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var mergesEl) && mergesEl.ValueKind != JsonValueKind.Array)
            throw new SharpLensException($"{where}: field model.merges must be a list, got {Shorten(mergesEl.GetRawText())}.");
        if (model.TryGetProperty("merges", out mergesEl))
            foreach (var m in mergesEl.EnumerateArray())
                merges.Add(m.ValueKind switch
                {
                    JsonValueKind.String => m.GetString()!,                                        // "a b" (older files)
                    JsonValueKind.Array when m.GetArrayLength() == 2 && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String
                        => $"{m[0].GetString()} {m[1].GetString()}", // ["a", "b"]
                    _ => throw new SharpLensException($"{where}: field model.merges: a merge must be \"a b\" or [\"a\", \"b\"], got {m.GetRawText()}."),
                });

        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("added_tokens", out var addedEl) && addedEl.ValueKind == JsonValueKind.Array)
            foreach (var t in addedEl.EnumerateArray())
                added[Str(t, "content") ?? throw new SharpLensException($"{where}: field added_tokens: an entry has no \"content\" string: {Shorten(t.GetRawText())}.")] =
                    t.TryGetProperty("id", out var idEl) && idEl.ValueKind == JsonValueKind.Number && idEl.TryGetInt32(out int aid) && aid >= 0 ? aid
                        : throw new SharpLensException($"{where}: field added_tokens: an entry has no non-negative integer \"id\": {Shorten(t.GetRawText())}.");

        bool nfc = ReadNormalizer(root, where);
        string pattern = ReadPreTokenizer(root, where);
        if (root.TryGetProperty("decoder", out var dec) && dec.ValueKind == JsonValueKind.Object && Str(dec, "type") != "ByteLevel")
            throw new SharpLensException($"{where}: decoder '{Str(dec, "type")}' is not supported; only ByteLevel is.");

        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (Bool(model, "ignore_merges"))
            return TiktokenTokenizerFile.FromByteLevelVocab(path, vocab, added, pattern, nfc ? new NfcNormalizer() : null,
                TokenizerConfigFiles.Read(folder), PostProcessorAddsBos(root));
        return new BpeTokenizerFile(Path.GetFileName(folder), path, vocab, merges, added, pattern, nfc, TokenizerConfigFiles.Read(folder), PostProcessorAddsBos(root));
    }

    /// <summary>
    /// Reads GPT-2 style <c>vocab.json</c> + <c>merges.txt</c> (byte-level BPE with GPT-2's regex; with Qwen2's regex
    /// and NFC when <c>tokenizer_config.json</c> names <c>Qwen2Tokenizer</c>), plus <c>added_tokens.json</c> and the
    /// config files beside them. <c>&lt;|endoftext|&gt;</c> and the configured
    /// special tokens are matched as whole tokens inside text.
    /// </summary>
    public static BpeTokenizerFile FromVocabAndMerges(string vocabPath, string mergesPath)
    {
        Dictionary<string, int> vocab;
        using (var doc = Json.Read(vocabPath))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SharpLensException($"{vocabPath}: must be a JSON object {{token: id}}.");
            vocab = new(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject()) vocab[p.Name] = Id(p, vocabPath);
        }
        if (!File.Exists(mergesPath)) throw new SharpLensException($"merges file not found: {mergesPath}");
        // First line of GPT-2's merges.txt is "#version: 0.2"; blank lines carry nothing.
        List<string> merges;
        try
        {
            merges = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(JsonInput.ReadFile(mergesPath)).Split('\n')
                .Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();
        }
        catch (DecoderFallbackException e) { throw new SharpLensException($"{mergesPath}: invalid UTF-8 ({e.Message}); merges.txt must be UTF-8 text.", e); }
        // Like Hugging Face's reader: each line is exactly two tokens separated by one space.
        for (int i = 0; i < merges.Count; i++)
            if (merges[i].Split(' ') is not [{ Length: > 0 }, { Length: > 0 }])
                throw new SharpLensException($"{mergesPath}: merge {i + 1} {Shorten(TextEncoding.Quote(merges[i]))} is not two tokens separated by one space.");

        string folder = Path.GetDirectoryName(Path.GetFullPath(vocabPath))!;
        var names = TokenizerConfigFiles.Read(folder);
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        string addedPath = Path.Combine(folder, "added_tokens.json");
        // An added token must not take an id that belongs to another token (the tokenizer's id table would hold two
        // strings for one id): name the file that says so rather than fail later inside the BPE builder.
        Dictionary<int, (string Token, string File)>? owner = null;
        void Add(string token, int id, string file)
        {
            if (owner is null) { owner = []; foreach (var (t, i) in vocab) owner.TryAdd(i, (t, vocabPath)); }
            // Either file may be the damaged one: the message names both.
            if (owner.TryGetValue(id, out var other) && other.Token != token)
                throw new SharpLensException($"{file}: added token {Shorten(TextEncoding.Quote(token))} has id {id}, which {other.File} gives to " +
                    $"{Shorten(TextEncoding.Quote(other.Token))}; each id names one token.");
            owner[id] = (token, file);
            added[token] = id;
        }
        if (File.Exists(addedPath))
        {
            using var doc = Json.Read(addedPath);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new SharpLensException($"{addedPath}: must be a JSON object {{token: id}}.");
            foreach (var p in doc.RootElement.EnumerateObject()) Add(p.Name, Id(p, addedPath), addedPath);
        }
        foreach (var (id, content) in names.AddedDecoder)
            if (!added.ContainsKey(content)) Add(content, id, Path.Combine(folder, "tokenizer_config.json"));
        // GPT2Tokenizer treats its bos/eos/unk/pad strings (default <|endoftext|>) as special tokens.
        foreach (var s in new[] { names.Bos, names.Eos, names.Pad, names.Unk, EndOfText })
            if (s is not null && vocab.TryGetValue(s, out int sid)) added.TryAdd(s, sid);
        bool qwen2 = names.TokenizerClass is "Qwen2Tokenizer" or "Qwen2TokenizerFast";
        return new BpeTokenizerFile(Path.GetFileName(folder), $"{vocabPath} + {mergesPath}", vocab, merges, added, qwen2 ? Qwen2Pattern : Gpt2Pattern, nfc: qwen2, names, prependsBos: false);
    }

    private static int Id(JsonProperty p, string path) =>
        p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int id) && id >= 0 ? id
        : throw new SharpLensException($"{path}: the id of {Shorten(p.Name)} must be a non-negative integer, got {Shorten(p.Value.GetRawText())}.");

    private static bool ReadNormalizer(JsonElement root, string where)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null) return false;
        string? type = Str(n, "type");
        if (type == "NFC") return true;
        if (type == "Sequence" && n.TryGetProperty("normalizers", out var list) && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() == 0) return false;
        throw new SharpLensException($"{where}: normalizer {n.GetRawText()} is not supported; only none or NFC.");
    }

    // Byte-level pre-tokenizers: ByteLevel with its built-in GPT-2 regex, or Split(regex) followed by ByteLevel without one.
    private static string ReadPreTokenizer(JsonElement root, string where)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object)
            throw new SharpLensException($"{where}: no pre_tokenizer; only byte-level BPE (pre_tokenizer ByteLevel) is supported.");
        string unsupported = $"{where}: pre_tokenizer {Shorten(pre.GetRawText())} is not supported; supported: ByteLevel (add_prefix_space false), or Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)].";
        if (Str(pre, "type") == "ByteLevel")
        {
            if (Bool(pre, "add_prefix_space") || !Bool(pre, "use_regex", true)) throw new SharpLensException(unsupported);
            return Gpt2Pattern;
        }
        if (Str(pre, "type") == "Sequence" && pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() == 2)
        {
            var split = list[0];
            var bl = list[1];
            if (Str(split, "type") == "Split" && Str(split, "behavior") == "Isolated" && !Bool(split, "invert")
                && split.TryGetProperty("pattern", out var pat) && Str(pat, "Regex") is { } regex
                && Str(bl, "type") == "ByteLevel" && !Bool(bl, "add_prefix_space") && !Bool(bl, "use_regex", true))
                return regex;
        }
        throw new SharpLensException(unsupported);
    }

    private static string? Str(JsonElement e, string key) => Json.Str(e, key);

    private static bool Bool(JsonElement e, string key, bool missing = false) => Json.Bool(e, key, missing);

    // TemplateProcessing whose single-sequence template starts with a special token (Llama 3's <|begin_of_text|>).
    private static bool PostProcessorAddsBos(JsonElement root) =>
        root.TryGetProperty("post_processor", out var pp) && Str(pp, "type") == "TemplateProcessing"
        && pp.TryGetProperty("single", out var single) && single.ValueKind == JsonValueKind.Array && single.GetArrayLength() > 0
        && single[0].TryGetProperty("SpecialToken", out _);

    private static string Shorten(string s) => s.Length <= 200 ? s : s[..200] + "...";

    /// <summary>Unicode NFC, as the NeoX/Pythia and Qwen2 tokenizers ask for (works under InvariantGlobalization).</summary>
    internal sealed class NfcNormalizer : Normalizer
    {
        public override string Normalize(string original) => Nfc.Normalize(original);
        public override string Normalize(ReadOnlySpan<char> original) => Nfc.Normalize(original);
    }
}
