using System.IO.Compression;
using System.Text;

namespace SharpLens.Tests.Loading;

/// <summary>
/// Builds a pytorch_model.bin byte-for-byte the way torch.save (PyTorch ≥ 1.6, pickle protocol 2) lays it out:
/// a stored (uncompressed) zip with archive/data.pkl, archive/data/&lt;key&gt;, archive/version, archive/byteorder.
/// The pickle follows CPython's pickler: BINPUT after every memoized object (strings, globals, tuples, dicts,
/// REDUCE results), BINGET on re-use, SETITEM for one item and MARK…SETITEMS for more, then the OrderedDict's
/// <c>_metadata</c> state via BUILD.
/// </summary>
internal sealed class TorchSaveBuilder
{
    private readonly MemoryStream _p = new();
    private readonly Dictionary<string, int> _memo = [];
    private readonly List<(string Key, byte[] Bytes)> _storages = [];
    private readonly List<(string Name, Action Write)> _entries = [];

    /// <summary>Adds a storage (raw little-endian bytes); returns its key.</summary>
    public string Storage(byte[] bytes)
    {
        _storages.Add((_storages.Count.ToString(), bytes));
        return _storages[^1].Key;
    }

    /// <summary>Adds a state-dict entry: a tensor over storage <paramref name="key"/>.</summary>
    public void Tensor(string name, string storageType, string key, long numel, long offset, long[] size, long[] stride) =>
        _entries.Add((name, () =>
        {
            Global("torch._utils", "_rebuild_tensor_v2");
            Op('(');
            Op('('); Str("storage"); Global("torch", storageType); Str(key); Str("cpu"); Int(numel); Op('t'); Put(null);
            Op('Q'); // BINPERSID
            Int(offset);
            Tuple(size);
            Tuple(stride);
            Op(0x89); // requires_grad False
            Global("collections", "OrderedDict"); Op(')'); Op('R'); Put(null); // backward_hooks
            Op('t'); Put(null);
            Op('R'); Put($"tensor:{name}");
        }));

    /// <summary>Adds an entry that re-uses an earlier tensor object (tied weights): a BINGET of its memo slot.</summary>
    public void SameTensor(string name, string earlier) => _entries.Add((name, () => Get($"tensor:{earlier}")));

    /// <summary>Emits a global the reader must reject.</summary>
    public void Raw(string name, Action<TorchSaveBuilder> write) => _entries.Add((name, () => write(this)));

    public byte[] Pickle()
    {
        Op(0x80); _p.WriteByte(2); // PROTO 2
        Global("collections", "OrderedDict"); Op(')'); Op('R'); Put(null);
        Op('(');
        foreach (var (name, write) in _entries) { Str(name); write(); }
        Op('u');
        // state {'_metadata': OrderedDict({'': {'version': 1}})}
        Op('}'); Put(null);
        Str("_metadata");
        Global("collections", "OrderedDict"); Op(')'); Op('R'); Put(null);
        Str(""); Op('}'); Put(null); Str("version"); Int(1); Op('s');
        Op('s');
        Op('s');
        Op('b'); // BUILD
        Op('.');
        return _p.ToArray();
    }

    public void Save(string path, string prefix = "archive")
    {
        var pickle = Pickle();
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        void Add(string n, byte[] b) { using var s = zip.CreateEntry($"{prefix}/{n}", CompressionLevel.NoCompression).Open(); s.Write(b); }
        Add("data.pkl", pickle);
        Add("byteorder", "little"u8.ToArray());
        foreach (var (k, b) in _storages) Add($"data/{k}", b);
        Add("version", "3\n"u8.ToArray());
        Add(".data/serialization_id", "1234567890123456789000000000000000000000"u8.ToArray());
    }

    public void Op(char c) => _p.WriteByte((byte)c);
    public void Op(byte b) => _p.WriteByte(b);

    public void Global(string module, string name)
    {
        if (Get($"global:{module}.{name}")) return;
        Op('c'); _p.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n")); Put($"global:{module}.{name}");
    }

    public void Str(string s)
    {
        if (Get($"str:{s}")) return;
        var b = Encoding.UTF8.GetBytes(s);
        Op('X'); _p.Write(BitConverter.GetBytes(b.Length)); _p.Write(b); Put($"str:{s}");
    }

    public void Int(long v)
    {
        if (v is >= 0 and < 256) { Op('K'); Op((byte)v); }
        else if (v is >= 0 and < 65536) { Op('M'); _p.Write(BitConverter.GetBytes((ushort)v)); }
        else if (v is >= int.MinValue and <= int.MaxValue) { Op('J'); _p.Write(BitConverter.GetBytes((int)v)); }
        else { Op(0x8a); Op(8); _p.Write(BitConverter.GetBytes(v)); } // LONG1
    }

    private void Tuple(long[] xs)
    {
        if (xs.Length == 0) { Op(')'); return; } // the empty tuple is a singleton: never memoized
        if (xs.Length > 3) Op('(');
        foreach (var x in xs) Int(x);
        Op(xs.Length switch { 1 => (byte)0x85, 2 => (byte)0x86, 3 => (byte)0x87, _ => (byte)'t' });
        Put(null);
    }

    private void Put(string? key)
    {
        int slot = _next++;
        if (key != null) _memo[key] = slot;
        if (slot < 256) { Op('q'); Op((byte)slot); } else { Op('r'); _p.Write(BitConverter.GetBytes(slot)); }
    }
    private int _next;

    private bool Get(string key)
    {
        if (!_memo.TryGetValue(key, out int slot)) return false;
        if (slot < 256) { Op('h'); Op((byte)slot); } else { Op('j'); _p.Write(BitConverter.GetBytes(slot)); }
        return true;
    }
}
