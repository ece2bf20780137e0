using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Header entry of one tensor in a safetensors file.</summary>
public sealed record SafetensorsTensorInfo(string Name, string Dtype, long[] Shape, long Begin, long End);

/// <summary>A safetensors file opened memory-mapped (interim reader; validated header).</summary>
public sealed class SafetensorsFile : IDisposable
{
    private readonly Dictionary<string, SafetensorsTensorInfo> _infos = new(StringComparer.Ordinal);
    private readonly List<string> _names = [];
    private readonly long _dataStart;
    private readonly Dictionary<ScalarType, Tensor> _maps = new();
    private readonly long _length;

    private SafetensorsFile(string path)
    {
        Path = path;
        using var fs = File.OpenRead(path);
        long length = fs.Length; // of the opened file: FileInfo.Length would measure a Hugging Face cache symlink itself
        var lenBuf = new byte[8];
        if (fs.Read(lenBuf, 0, 8) != 8) throw new SharpLensException($"{path}: shorter than the 8-byte header length.");
        long n = BitConverter.ToInt64(lenBuf);
        if (n <= 0 || 8 + n > length) throw new SharpLensException($"{path}: header length {n} is past the end of the file ({length} bytes).");
        var header = new byte[n];
        fs.ReadExactly(header);
        _dataStart = 8 + n;
        using var doc = JsonDocument.Parse(header);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            var off = p.Value.GetProperty("data_offsets");
            var info = new SafetensorsTensorInfo(p.Name, p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), off[0].GetInt64(), off[1].GetInt64());
            _infos[p.Name] = info;
            _names.Add(p.Name);
        }
        _length = length;
    }

    /// <summary>File path.</summary>
    public string Path { get; }
    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>Opens and validates a file.</summary>
    public static SafetensorsFile Open(string path) => new(path);

    /// <summary>Reads one tensor (memory-mapped, read-only).</summary>
    public Tensor Read(string name)
    {
        var i = _infos[name];
        var dtype = i.Dtype switch { "F32" => ScalarType.Float32, "I64" => ScalarType.Int64, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16, _ => throw new SharpLensException($"dtype {i.Dtype}") };
        int size = dtype switch { ScalarType.Float32 => 4, ScalarType.Int64 => 8, _ => 2 };
        long start = _dataStart + i.Begin;
        if (start % size != 0) throw new SharpLensException("misaligned");
        if (!_maps.TryGetValue(dtype, out var map))
            _maps[dtype] = map = from_file(Path, false, _length / size, dtype).DetachFromDisposeScope();
        return map.narrow(0, start / size, (i.End - i.Begin) / size).reshape(i.Shape);
    }

    /// <summary>Releases the mapping handles.</summary>
    public void Dispose() { foreach (var m in _maps.Values) m.Dispose(); _maps.Clear(); }
}
