using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Header entry of one tensor in a safetensors file. <see cref="Begin"/> and <see cref="End"/> are the file's
/// <c>data_offsets</c>: byte offsets RELATIVE to the start of the data block (absolute file offset =
/// <see cref="SafetensorsFile.DataOffset"/> + Begin).
/// </summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Dtype">Safetensors dtype name (F32, BF16, I64, ...).</param>
/// <param name="Shape">Shape; empty for a scalar.</param>
/// <param name="Begin">First byte, relative to the data block.</param>
/// <param name="End">One past the last byte, relative to the data block.</param>
public sealed record SafetensorsTensorInfo(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>
/// A safetensors file: 8-byte little-endian header length N, N bytes of JSON header, then the data block.
/// <see cref="Open"/> validates the whole header; <see cref="Read"/> returns tensors that share a private
/// memory map of the file, so opening is cheap and pages load only when touched.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100_000_000; // same cap as the reference implementation
    private readonly Dictionary<string, SafetensorsTensorInfo> _infos;
    private readonly List<string> _names;
    private readonly long _fileLength;
    private readonly Lock _lock = new();
    private Tensor? _bytes; // the whole file as uint8, memory-mapped once (lazily, on first Read)
    private readonly Dictionary<ScalarType, Tensor> _typed = []; // empty tensors of each dtype sharing _bytes' storage
    private bool _disposed;

    private SafetensorsFile(string path, long fileLength, long dataOffset, List<string> names,
        Dictionary<string, SafetensorsTensorInfo> infos, IReadOnlyDictionary<string, string> metadata, long unused)
    {
        (Path, _fileLength, DataOffset, _names, _infos, Metadata, UnusedDataBytes) = (path, fileLength, dataOffset, names, infos, metadata, unused);
    }

    /// <summary>The file path as given to <see cref="Open"/>.</summary>
    public string Path { get; }
    /// <summary>Absolute file offset of the data block (8 + header length).</summary>
    public long DataOffset { get; }
    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names => _names;
    /// <summary>The optional <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>
    /// Bytes of the data block no tensor covers. Allowed (some writers leave gaps or trailing padding) but
    /// usually a sign of a file written by a non-standard tool.
    /// </summary>
    public long UnusedDataBytes { get; }

    /// <summary>Whether the file has a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _infos.ContainsKey(name);

    /// <summary>Header entry of a tensor; throws a <see cref="SharpLensException"/> with the closest names if unknown.</summary>
    public SafetensorsTensorInfo Info(string name) =>
        _infos.TryGetValue(name, out var i) ? i
        : throw new SharpLensException($"{Path}: no tensor named '{name}' (the file has {_names.Count})." + NameSuggestions.DidYouMean(name, _names));

    /// <summary>Opens <paramref name="path"/> and validates its header; throws <see cref="SafetensorsFormatException"/> on any defect.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian)
            throw new SharpLensException("Reading safetensors files on a big-endian host is not supported.");
        if (!File.Exists(path)) throw new SharpLensException($"{path}: file not found.");
        FileStream fs;
        try { fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A dangling or looping symbolic link (a Hub cache whose blob is gone), no permission: the file system's words name the cause.
            throw new SharpLensException($"{path}: cannot be read: {e.Message}", e);
        }
        using var _ = fs;
        long length = fs.Length;
        if (length < 8)
            throw new SafetensorsFormatException($"{path}: file is {length} bytes, shorter than the 8-byte header length prefix; not a safetensors file or truncated.");
        Span<byte> prefix = stackalloc byte[8];
        fs.ReadExactly(prefix);
        ulong n = BitConverter.ToUInt64(prefix);
        if (n > (ulong)(length - 8))
            throw new SafetensorsFormatException($"{path}: header length {n} bytes is past the end of the file ({length} bytes, so at most {length - 8} header bytes); the file is truncated or not safetensors.");
        if (n > MaxHeaderBytes)
            throw new SafetensorsFormatException($"{path}: header length {n} bytes exceeds the {MaxHeaderBytes}-byte limit.");
        var header = new byte[n];
        fs.ReadExactly(header);
        long dataOffset = 8 + (long)n;
        var (names, infos, meta, unused) = SafetensorsHeader.Parse(path, header, length - dataOffset);
        return new SafetensorsFile(path, length, dataOffset, names, infos, meta, unused);
    }

    /// <summary>
    /// Reads one tensor as a CPU tensor with the stored dtype and shape. The tensor is a view of a private
    /// (copy-on-write) memory map of the file: treat it as READ-ONLY (compute new tensors instead of writing in
    /// place). It stays valid after this file is disposed (libtorch reference-counts the mapping). Tensors whose
    /// byte offset is not a multiple of the element size are copied instead.
    /// </summary>
    public Tensor Read(string name)
    {
        var info = Info(name);
        SafetensorsDtypes.TryGet(info.Dtype, out var dtype, out int size); // validated in Open
        long begin = DataOffset + info.Begin;
        var strides = TensorBytes.ContiguousStrides(info.Shape);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _bytes ??= from_file(Path, false, _fileLength, ScalarType.Byte).DetachFromDisposeScope();
            if (begin % size == 0)
                return Typed(dtype).as_strided(info.Shape, strides, begin / size);
            // Misaligned: copy the bytes to a fresh (aligned) storage and reinterpret that.
            using var raw = _bytes.narrow(0, begin, info.End - info.Begin);
            using var copy = raw.clone();
            using var view = TensorBytes.Reinterpret(copy, dtype);
            return view.as_strided(info.Shape, strides, 0);
        }
    }

    /// <summary>
    /// Reads one tensor into new memory of its own (positioned reads, no mapping): writable, and independent of the
    /// file. Used when the weights are processed in place right after loading.
    /// </summary>
    public Tensor ReadCopy(string name)
    {
        var info = Info(name);
        SafetensorsDtypes.TryGet(info.Dtype, out var dtype, out _); // validated in Open
        var t = empty(info.Shape, dtype: dtype);
        long length = info.End - info.Begin, offset = DataOffset + info.Begin;
        using var handle = File.OpenHandle(Path);
        var bytes = t.bytes;
        for (long done = 0; done < length;)
        {
            int n = RandomAccess.Read(handle, bytes[(int)done..], offset + done);
            if (n == 0) throw new SafetensorsFormatException($"{Path}: file ended while reading '{name}' (it changed after it was opened).");
            done += n;
        }
        return t;
    }

    private Tensor Typed(ScalarType dtype)
    {
        if (!_typed.TryGetValue(dtype, out var t)) _typed[dtype] = t = TensorBytes.Reinterpret(_bytes!, dtype).DetachFromDisposeScope();
        return t;
    }

    /// <summary>Releases this file's handles on the mapping; tensors already read stay valid.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var t in _typed.Values) t.Dispose();
            _typed.Clear();
            _bytes?.Dispose();
            _bytes = null;
        }
    }
}
