using System.Collections.Concurrent;
using System.Text;

namespace SharpLens.Tokenization;

/// <summary>
/// SentencePiece BPE (Llama 2, Mistral, ...) read from a <c>tokenizer.model</c>, encoding exactly as the
/// sentencepiece library does: optional whitespace cleanup, the dummy prefix "▁", spaces escaped to "▁", then pieces
/// merged by score (highest first, equal scores leftmost first), characters without a piece as <c>&lt;0xXX&gt;</c>
/// byte tokens (byte fallback) or <c>&lt;unk&gt;</c>. Control pieces such as <c>&lt;s&gt;</c> written in text stay
/// plain text. Decoding follows Hugging Face (which TransformerLens uses): control pieces decode to their text, a run
/// of byte tokens that is not valid UTF-8 decodes to one U+FFFD per byte, and the dummy-prefix space is removed.
/// </summary>
public sealed class SentencePieceBpeTokenizer : ITokenizer
{
    private const char Metaspace = '\u2581';
    private const int MaxCacheEntries = 100_000;

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly SentencePieceType[] _types;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeable; // Normal + UserDefined pieces
    private readonly string[] _userDefined;                    // kept whole in text, longest first
    private readonly int[] _byteIds = new int[256];            // byte → id of <0xXX>, -1 when absent
    private readonly int[] _byteValue;                         // id → byte of a <0xXX> piece, -1 otherwise
    private readonly int _unkId;
    private readonly bool _byteFallback, _addDummyPrefix, _removeExtraWhitespaces, _escapeWhitespaces;
    private readonly bool _splitBeforeSpace;                   // no piece has "▁" after another character
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheSpan;
    private readonly string?[] _strTokens;

    internal SentencePieceBpeTokenizer(string name, SentencePieceModelFile model, string path, TokenizerConfigFiles config)
    {
        if (model.ModelType != 2)
            throw new SharpLensException($"{path}: SentencePiece model type {ModelTypeName(model.ModelType)} is not supported; only BPE (Llama 2, Mistral) is.");
        if (model.PrecompiledCharsMapLength > 0 && model.NormalizerName != "identity")
            throw new SharpLensException($"{path}: SentencePiece normalizer {TextEncoding.Quote(model.NormalizerName)} (a precompiled character map) is not supported; only 'identity' is.");
        if (model.TreatWhitespaceAsSuffix)
            throw new SharpLensException($"{path}: treat_whitespace_as_suffix is not supported.");
        Name = name;
        int n = model.Pieces.Count;
        _pieces = new string[n];
        _scores = new float[n];
        _types = new SentencePieceType[n];
        _byteValue = new int[n];
        Array.Fill(_byteIds, -1);
        Array.Fill(_byteValue, -1);
        var mergeable = new Dictionary<string, int>(StringComparer.Ordinal);
        var userDefined = new List<string>();
        for (int id = 0; id < n; id++)
        {
            var (piece, score, type) = model.Pieces[id];
            _pieces[id] = piece; _scores[id] = score; _types[id] = type;
            switch (type)
            {
                case SentencePieceType.Normal or SentencePieceType.UserDefined:
                    mergeable.TryAdd(piece, id);
                    if (type == SentencePieceType.UserDefined && piece.Length > 0) userDefined.Add(piece);
                    break;
                case SentencePieceType.Byte:
                    if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
                        && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                    {
                        _byteIds[b] = id;
                        _byteValue[id] = b;
                    }
                    else throw new SharpLensException($"{path}: byte piece {id} is {TextEncoding.Quote(piece)}, expected <0xXX>.");
                    break;
                case SentencePieceType.Unused:
                    throw new SharpLensException($"{path}: piece {id} {TextEncoding.Quote(piece)} is of type UNUSED, which is not supported.");
            }
        }
        _mergeable = mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _userDefined = userDefined.OrderByDescending(u => u.Length).ToArray();
        _unkId = model.UnkId;
        _byteFallback = model.ByteFallback;
        _addDummyPrefix = model.AddDummyPrefix;
        _removeExtraWhitespaces = model.RemoveExtraWhitespaces;
        _escapeWhitespaces = model.EscapeWhitespaces;
        // When no piece holds "▁" after another character, no merge crosses the point before a "▁" that follows a
        // non-"▁": the text splits there into parts that encode independently (and can be cached).
        _splitBeforeSpace = !mergeable.Keys.Any(p => p.AsSpan().TrimStart(Metaspace).Contains(Metaspace));
        _cacheSpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _strTokens = new string?[n];

        int? Id(string? piece) => piece is null ? null : Array.IndexOf(_pieces, piece) is int i and >= 0 ? i : null;
        int? Proto(int id) => id >= 0 && id < n ? id : null;
        EosTokenId = config.Mentioned.Contains("eos_token") ? Id(config.Eos) : Proto(model.EosId);
        BosTokenId = (config.Mentioned.Contains("bos_token") ? Id(config.Bos) : Proto(model.BosId)) ?? EosTokenId;
        PadTokenId = (config.Mentioned.Contains("pad_token") ? Id(config.Pad) : Proto(model.PadId)) ?? EosTokenId;
        // sentencepiece / LlamaTokenizer put BOS in front unless add_bos_token says otherwise.
        PrependsBos = (config.AddBosToken ?? true) && BosTokenId is not null;
    }

    /// <summary>Reads a SentencePiece <c>tokenizer.model</c> plus the config files beside it.</summary>
    public static SentencePieceBpeTokenizer FromFile(string path)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var model = SentencePieceModelFile.Parse(File.ReadAllBytes(path), path);
        return new SentencePieceBpeTokenizer(Path.GetFileName(folder), model, path, TokenizerConfigFiles.Read(folder));
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public int VocabSize => _pieces.Length;
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId { get; }
    /// <inheritdoc/>
    public int? PadTokenId { get; }
    /// <inheritdoc/>
    public bool PrependsBos { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string normalized = Normalize(text);
        var ids = new List<int>(normalized.Length / 3 + 1);
        var span = normalized.AsSpan();
        int start = 0;
        if (_splitBeforeSpace)
            for (int i = 1; i < span.Length; i++)
                if (span[i] == Metaspace && span[i - 1] != Metaspace)
                {
                    EncodePart(span[start..i], ids);
                    start = i;
                }
        EncodePart(span[start..], ids);
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            TokenIds.CheckInVocab(this, id);
            if (_byteValue[id] >= 0) { bytes.Add((byte)_byteValue[id]); continue; }
            FlushBytes(bytes, sb);
            string piece = _pieces[id];
            if (_types[id] is SentencePieceType.Normal or SentencePieceType.UserDefined) sb.Append(piece.Replace(Metaspace, ' '));
            else sb.Append(piece);   // <s>, </s>, <unk>: their text, as Hugging Face decodes with special tokens kept
        }
        FlushBytes(bytes, sb);
        if (_addDummyPrefix && sb.Length > 0 && sb[0] == ' ') sb.Remove(0, 1);
        return sb.ToString();
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
        return _pieces[id];
    }

    // sentencepiece's normalizer with the identity rule: whitespace cleanup, dummy prefix, "▁" for spaces.
    private string Normalize(string text)
    {
        if (text.Length == 0) return text;
        var sb = new StringBuilder(text.Length + 1);
        if (_removeExtraWhitespaces)
        {
            foreach (var word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                (sb.Length > 0 ? sb.Append(' ') : sb).Append(word);
            if (sb.Length == 0) return "";
        }
        else sb.Append(text);
        if (_addDummyPrefix) sb.Insert(0, ' ');
        if (_escapeWhitespaces) sb.Replace(' ', Metaspace);
        return sb.ToString();
    }

    private void EncodePart(ReadOnlySpan<char> part, List<int> ids)
    {
        if (part.IsEmpty) return;
        if (!_cacheSpan.TryGetValue(part, out var cached))
        {
            cached = Bpe(part);
            if (_cache.Count >= MaxCacheEntries) _cache.Clear();
            _cacheSpan.TryAdd(part, cached);
        }
        ids.AddRange(cached);
    }

    // Symbols are character ranges of the text, linked as a list; adjacent pairs whose joined text is a piece wait in
    // a queue by (score desc, left index asc). A popped pair is stale when either side has changed since.
    private int[] Bpe(ReadOnlySpan<char> text)
    {
        int n = text.Length;
        var start = new int[n];
        var len = new int[n];
        var prev = new int[n];
        var next = new int[n];
        int count = 0;
        for (int i = 0; i < n;)
        {
            int l = UserDefinedAt(text[i..]);
            if (l == 0) l = char.IsHighSurrogate(text[i]) && i + 1 < n && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            start[count] = i; len[count] = l; prev[count] = count - 1; next[count] = count + 1;
            count++;
            i += l;
        }
        next[count - 1] = -1;

        var queue = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(count, PairOrder.Instance);
        void TryAdd(ReadOnlySpan<char> t, int left, int right)
        {
            if (left < 0 || right < 0) return;
            int size = len[left] + len[right];
            if (_mergeable.TryGetValue(t.Slice(start[left], size), out int id))
                queue.Enqueue((left, right, size), (_scores[id], left));
        }
        for (int s = 0; s + 1 < count; s++) TryAdd(text, s, s + 1);

        while (queue.TryDequeue(out var pair, out _))
        {
            var (left, right, size) = pair;
            if (len[left] == 0 || len[right] == 0 || next[left] != right || len[left] + len[right] != size) continue;
            len[left] = size;
            len[right] = 0;
            next[left] = next[right];
            if (next[left] >= 0) prev[next[left]] = left;
            TryAdd(text, prev[left], left);
            TryAdd(text, left, next[left]);
        }

        var ids = new List<int>(count);
        Span<byte> utf8 = stackalloc byte[8];
        for (int s = 0; s >= 0 && s < count; s = next[s])
        {
            var piece = text.Slice(start[s], len[s]);
            if (_mergeable.TryGetValue(piece, out int id)) { ids.Add(id); continue; }
            int nb = Encoding.UTF8.GetBytes(piece, utf8);
            if (_byteFallback && utf8[..nb].ToArray().All(b => _byteIds[b] >= 0))
                for (int k = 0; k < nb; k++) ids.Add(_byteIds[utf8[k]]);
            else ids.Add(_unkId);
        }
        return ids.ToArray();
    }

    private int UserDefinedAt(ReadOnlySpan<char> text)
    {
        foreach (var u in _userDefined)
            if (text.StartsWith(u, StringComparison.Ordinal)) return u.Length;
        return 0;
    }

    // Byte tokens are joined before decoding; like Hugging Face's ByteFallback decoder, a run that is not valid
    // UTF-8 becomes one U+FFFD per byte.
    private static void FlushBytes(List<byte> bytes, StringBuilder sb)
    {
        if (bytes.Count == 0) return;
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
        if (System.Text.Unicode.Utf8.IsValid(span)) sb.Append(Encoding.UTF8.GetString(span));
        else sb.Append('\uFFFD', bytes.Count);
        bytes.Clear();
    }

    private static string ModelTypeName(int type) => type switch { 1 => "UNIGRAM", 2 => "BPE", 3 => "WORD", 4 => "CHAR", _ => type.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private sealed class PairOrder : IComparer<(float Score, int Left)>
    {
        public static readonly PairOrder Instance = new();
        public int Compare((float Score, int Left) a, (float Score, int Left) b) =>
            a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left);
    }
}
