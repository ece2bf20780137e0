using System.Buffers.Binary;
using System.Text;

namespace SharpLens.Tokenization;

/// <summary>Kind of a SentencePiece vocabulary entry (<c>SentencePiece.Type</c> in sentencepiece_model.proto).</summary>
public enum SentencePieceType
{
    /// <summary>An ordinary piece, reachable by merges.</summary>
    Normal = 1,
    /// <summary><c>&lt;unk&gt;</c>.</summary>
    Unknown = 2,
    /// <summary>A control symbol such as <c>&lt;s&gt;</c>; never produced from text.</summary>
    Control = 3,
    /// <summary>A user-defined symbol, kept whole when it occurs in text.</summary>
    UserDefined = 4,
    /// <summary>A piece the model never emits.</summary>
    Unused = 5,
    /// <summary>A byte-fallback piece <c>&lt;0xXX&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a <c>ModelProto</c> protobuf) that encoding needs: the
/// pieces with score and type, the model type and byte fallback from the trainer spec, and the normalizer flags.
/// Read with a minimal protobuf reader, so no protobuf dependency is needed.
/// </summary>
internal sealed class SentencePieceModelFile
{
    public List<(string Piece, float Score, SentencePieceType Type)> Pieces { get; } = [];
    /// <summary>TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char.</summary>
    public int ModelType { get; private set; } = 1;
    public bool ByteFallback { get; private set; }
    public bool TreatWhitespaceAsSuffix { get; private set; }
    public string UnkSurface { get; private set; } = " \u2047 ";
    /// <summary>TrainerSpec unk_id / bos_id / eos_id / pad_id (-1 = none), with sentencepiece's defaults.</summary>
    public int UnkId { get; private set; }
    public int BosId { get; private set; } = 1;
    public int EosId { get; private set; } = 2;
    public int PadId { get; private set; } = -1;
    public string NormalizerName { get; private set; } = "";
    public int PrecompiledCharsMapLength { get; private set; }
    public bool AddDummyPrefix { get; private set; } = true;
    public bool RemoveExtraWhitespaces { get; private set; } = true;
    public bool EscapeWhitespaces { get; private set; } = true;

    /// <summary>Parses <paramref name="bytes"/>; throws <see cref="SharpLensException"/> naming <paramref name="path"/> when they are not a ModelProto.</summary>
    public static SentencePieceModelFile Parse(byte[] bytes, string path)
    {
        var model = new SentencePieceModelFile();
        try
        {
            var r = new Reader(bytes, 0, bytes.Length);
            while (r.More)
            {
                var (field, wire) = r.Tag();
                switch (field, wire)
                {
                    case (1, 2): model.Pieces.Add(ReadPiece(r.Sub())); break;
                    case (2, 2): model.ReadTrainerSpec(r.Sub()); break;
                    case (3, 2): model.ReadNormalizerSpec(r.Sub()); break;
                    default: r.Skip(wire); break;
                }
            }
        }
        catch (Exception e) when (e is FormatException or IndexOutOfRangeException or ArgumentException or DecoderFallbackException)
        {
            throw new SharpLensException($"{path}: not a SentencePiece model (the protobuf ModelProto could not be read: {e.Message}).", e);
        }
        if (model.Pieces.Count == 0)
            throw new SharpLensException($"{path}: not a SentencePiece model: it holds no pieces (ModelProto field 1).");
        return model;
    }

    private static (string, float, SentencePieceType) ReadPiece(Reader r)
    {
        string piece = ""; float score = 0; var type = SentencePieceType.Normal;
        while (r.More)
        {
            var (field, wire) = r.Tag();
            switch (field, wire)
            {
                case (1, 2): piece = r.String(); break;
                case (2, 5): score = r.Float(); break;
                case (3, 0): type = (SentencePieceType)r.Varint(); break;
                default: r.Skip(wire); break;
            }
        }
        return (piece, score, type);
    }

    private void ReadTrainerSpec(Reader r)
    {
        while (r.More)
        {
            var (field, wire) = r.Tag();
            switch (field, wire)
            {
                case (3, 0): ModelType = (int)r.Varint(); break;
                case (24, 0): TreatWhitespaceAsSuffix = r.Varint() != 0; break;
                case (35, 0): ByteFallback = r.Varint() != 0; break;
                case (40, 0): UnkId = (int)r.Varint(); break;
                case (41, 0): BosId = (int)r.Varint(); break;
                case (42, 0): EosId = (int)r.Varint(); break;
                case (43, 0): PadId = (int)r.Varint(); break;
                case (44, 2): UnkSurface = r.String(); break;
                default: r.Skip(wire); break;
            }
        }
    }

    private void ReadNormalizerSpec(Reader r)
    {
        while (r.More)
        {
            var (field, wire) = r.Tag();
            switch (field, wire)
            {
                case (1, 2): NormalizerName = r.String(); break;
                case (2, 2): PrecompiledCharsMapLength = r.Sub().Length; break;
                case (3, 0): AddDummyPrefix = r.Varint() != 0; break;
                case (4, 0): RemoveExtraWhitespaces = r.Varint() != 0; break;
                case (5, 0): EscapeWhitespaces = r.Varint() != 0; break;
                default: r.Skip(wire); break;
            }
        }
    }

    /// <summary>Protobuf wire-format reader over a slice of a byte array.</summary>
    private sealed class Reader(byte[] bytes, int start, int end)
    {
        private static readonly UTF8Encoding s_strictUtf8 = new(false, throwOnInvalidBytes: true);
        private readonly int _start = start;
        private int _pos = start;

        public bool More => _pos < end;
        public int Length => end - _start;

        public (int Field, int Wire) Tag()
        {
            ulong t = Varint();
            return ((int)(t >> 3), (int)(t & 7));
        }

        public ulong Varint()
        {
            ulong v = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= end) throw new FormatException("truncated varint");
                byte b = bytes[_pos++];
                v |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80) return v;
            }
            throw new FormatException("varint longer than 10 bytes");
        }

        public Reader Sub()
        {
            ulong n = Varint();
            if (n > (ulong)(end - _pos)) throw new FormatException($"a length-delimited field of {n} bytes runs past the end");
            var sub = new Reader(bytes, _pos, _pos + (int)n);
            _pos += (int)n;
            return sub;
        }

        public string String()
        {
            var sub = Sub();
            return s_strictUtf8.GetString(bytes, sub._pos, sub.Length);
        }

        public float Float()
        {
            if (end - _pos < 4) throw new FormatException("truncated float");
            float f = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(_pos, 4));
            _pos += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _pos += 8; break;
                case 2: Sub(); break;
                case 5: _pos += 4; break;
                default: throw new FormatException($"unsupported wire type {wire}");
            }
            if (_pos > end) throw new FormatException("a field runs past the end");
        }
    }
}
