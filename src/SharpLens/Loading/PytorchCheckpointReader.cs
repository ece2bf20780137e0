using System.IO.Compression;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Reads <c>pytorch_model.bin</c> files written by <c>torch.save</c> (PyTorch ≥ 1.6 zip format): a zip whose
/// <c>&lt;prefix&gt;/data.pkl</c> pickles the state dict and whose <c>&lt;prefix&gt;/data/&lt;key&gt;</c> entries hold
/// the raw little-endian storages. Only plain tensors are supported (no sparse/quantized); storages saved on a GPU
/// are loaded to the CPU. Legacy pre-1.6 (non-zip) files are rejected with a clear message.
/// </summary>
public static class PytorchCheckpointReader
{
    private static readonly Dictionary<string, ScalarType> StorageTypes = new()
    {
        ["DoubleStorage"] = ScalarType.Float64, ["FloatStorage"] = ScalarType.Float32, ["HalfStorage"] = ScalarType.Float16,
        ["BFloat16Storage"] = ScalarType.BFloat16, ["LongStorage"] = ScalarType.Int64, ["IntStorage"] = ScalarType.Int32,
        ["ShortStorage"] = ScalarType.Int16, ["CharStorage"] = ScalarType.Int8, ["ByteStorage"] = ScalarType.Byte,
        ["BoolStorage"] = ScalarType.Bool, ["UntypedStorage"] = ScalarType.Byte,
    };

    private sealed record StorageRef(string Key, ScalarType Dtype, long Numel);

    /// <summary>
    /// Loads every tensor of the state dict in <paramref name="path"/>, in file order. Tensors are contiguous CPU
    /// tensors owned by the caller (registered on the caller's dispose scope, if any). A checkpoint that wraps the
    /// state dict as <c>{"state_dict": ...}</c> or <c>{"model": ...}</c> is unwrapped. Throws
    /// <see cref="SafetensorsFormatException"/> (message starts with the path) for malformed or unsupported files.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new SharpLensException("Reading PyTorch checkpoints on a big-endian host is not supported.");
        if (!File.Exists(path)) throw new SharpLensException($"{path}: file not found.");
        try { CheckIsZip(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SharpLensException($"{path}: cannot be read: {e.Message}", e); // a link loop, no permission, a folder
        }
        try { return LoadZip(path); }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException)
        {
            // A damaged archive: bad central directory, CRC mismatch, an entry shorter than its header says.
            throw new SafetensorsFormatException($"{path}: damaged zip archive ({e.Message}); the file is truncated or corrupted.", e);
        }
    }

    private static Dictionary<string, Tensor> LoadZip(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        var pkl = zip.Entries.FirstOrDefault(e => e.FullName.EndsWith("/data.pkl") && e.FullName.Count(c => c == '/') == 1)
            ?? throw new SafetensorsFormatException($"{path}: zip file without '<name>/data.pkl'; not a torch.save checkpoint (entries: {string.Join(", ", zip.Entries.Take(8).Select(e => e.FullName))}).");
        string prefix = pkl.FullName[..^"data.pkl".Length];
        if (zip.GetEntry(prefix + "byteorder") is { } bo && ReadText(bo).Trim() != "little")
            throw new SafetensorsFormatException($"{path}: storages are big-endian ('{prefix}byteorder' says '{ReadText(bo).Trim()}'); only little-endian checkpoints are supported.");

        using var scope = NewDisposeScope();
        var storages = new Dictionary<string, Tensor>(); // key → uint8 tensor, shared by every tensor viewing it
        object? PersistentLoad(object? pid)
        {
            if (pid is not object?[] { Length: 5 } t || t[0] as string != "storage" || t[1] is not PickleGlobal type || t[2] is not string key || t[4] is not long numel)
                throw new SafetensorsFormatException($"{path}: unsupported persistent id {Unpickler.Describe(pid)}; expected ('storage', type, key, location, numel).");
            if (!StorageTypes.TryGetValue(type.Name, out var dtype) || type.Module != "torch")
                throw new SafetensorsFormatException($"{path}: unsupported storage type '{type}' (storage '{key}'); supported: {string.Join(", ", StorageTypes.Keys.Select(k => "torch." + k))}.");
            return new StorageRef(key, dtype, numel);
        }
        Tensor Rebuild(object?[] a)
        {
            if (a.Length is < 6 or > 7 || a[0] is not StorageRef s || a[1] is not long offset || a[2] is not object?[] size || a[3] is not object?[] stride)
                throw new SafetensorsFormatException($"{path}: unexpected arguments to torch._utils._rebuild_tensor_v2 ({string.Join(", ", a.Select(Unpickler.Describe))}).");
            return Build(path, zip, prefix, storages, s, offset, Longs(path, size), Longs(path, stride));
        }

        byte[] pickle;
        using (var ms = new MemoryStream()) { using var st = pkl.Open(); st.CopyTo(ms); pickle = ms.ToArray(); }
        var root = new Unpickler(pickle, $"{path} ({pkl.FullName})", (m, n) => FindGlobal(path, m, n, Rebuild), PersistentLoad).Load();
        var dict = StateDict(path, root);
        foreach (var t in dict.Values) t.MoveToOuterDisposeScope();
        return dict;
    }

    private static object FindGlobal(string path, string module, string name, Func<object?[], Tensor> rebuild) => (module, name) switch
    {
        ("collections", "OrderedDict") => (Func<object?[], object?>)(_ => new OrderedDictionary<object, object?>()),
        ("torch._utils", "_rebuild_tensor_v2") => (Func<object?[], object?>)(a => rebuild(a)),
        // nn.Parameter and tensor subclasses wrap the plain rebuild; the wrapper adds only autograd/Python state.
        ("torch._utils", "_rebuild_parameter" or "_rebuild_parameter_with_state") => (Func<object?[], object?>)(a => a.Length > 0 ? a[0] : null),
        ("torch._tensor", "_rebuild_from_type_v2") => (Func<object?[], object?>)(a =>
            a is [Func<object?[], object?> f, _, object?[] args, ..] ? f(args) : throw new SafetensorsFormatException($"{path}: unexpected arguments to torch._tensor._rebuild_from_type_v2.")),
        ("_codecs", "encode") => (Func<object?[], object?>)(a => a is [string s, ..] ? s.Select(c => (byte)c).ToArray() : null),
        ("torch", _) when StorageTypes.ContainsKey(name) => new PickleGlobal(module, name),
        ("torch", "Tensor") or ("torch.nn.parameter", "Parameter") => new PickleGlobal(module, name),
        _ => throw new SafetensorsFormatException($"{path}: unsupported global '{module}.{name}' in the pickle; only plain tensor state dicts can be read (convert the checkpoint to safetensors otherwise)."),
    };

    private static Tensor Build(string path, ZipArchive zip, string prefix, Dictionary<string, Tensor> storages, StorageRef s, long offset, long[] size, long[] stride)
    {
        if (!storages.TryGetValue(s.Key, out var bytes))
        {
            var entry = zip.GetEntry($"{prefix}data/{s.Key}") ?? throw new SafetensorsFormatException($"{path}: storage '{s.Key}' is missing (no '{prefix}data/{s.Key}' in the zip).");
            long expected = s.Numel * ElementSize(s.Dtype);
            if (entry.Length != expected)
                throw new SafetensorsFormatException($"{path}: storage '{s.Key}' has {entry.Length} bytes but {s.Numel} × {ElementSize(s.Dtype)}-byte {s.Dtype} needs {expected}.");
            using var st = entry.Open();
            storages[s.Key] = bytes = TensorBytes.ReadBytes(st, expected);
        }
        if (size.Length != stride.Length || stride.Any(x => x < 0) || size.Any(x => x < 0))
            throw new SafetensorsFormatException($"{path}: tensor on storage '{s.Key}' has size ({string.Join(", ", size)}) and stride ({string.Join(", ", stride)}) that do not match.");
        long last = offset + size.Zip(stride, (n, st) => (n - 1) * st).Sum();
        if (size.All(n => n > 0) && (offset < 0 || last >= s.Numel))
            throw new SafetensorsFormatException($"{path}: tensor on storage '{s.Key}' (offset {offset}, size ({string.Join(", ", size)}), stride ({string.Join(", ", stride)})) reaches element {last}, past the storage's {s.Numel} elements.");
        var typed = TensorBytes.Reinterpret(bytes, s.Dtype);
        var view = typed.as_strided(size, stride, offset);
        long numel = size.Aggregate(1L, (a, b) => a * b);
        // Own contiguous memory unless the tensor is exactly its whole storage (then share it, no copy).
        return !view.is_contiguous() ? view.contiguous() : offset == 0 && numel == s.Numel ? view : view.clone();
    }

    private static Dictionary<string, Tensor> StateDict(string path, object? root)
    {
        if (root is OrderedDictionary<object, object?> d && !d.Values.All(v => v is Tensor))
            foreach (var key in new[] { "state_dict", "model" })
                if (d.TryGetValue(key, out var inner) && inner is OrderedDictionary<object, object?>) { root = inner; break; }
        if (root is not OrderedDictionary<object, object?> sd)
            throw new SafetensorsFormatException($"{path}: the pickle holds a {Unpickler.Describe(root)}, not a state dict (name → tensor).");
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (k, v) in sd)
        {
            if (k is not string name) throw new SafetensorsFormatException($"{path}: state dict key {Unpickler.Describe(k)} is not a string.");
            var t = v as Tensor ?? throw new SafetensorsFormatException($"{path}: state dict entry '{name}' is a {Unpickler.Describe(v)}, not a tensor.");
            // The same tensor object under two names (tied weights): give each name its own handle on the storage.
            result[name] = seen.Add(t) ? t : t.view(t.shape);
        }
        return result;
    }

    private static void CheckIsZip(string path)
    {
        Span<byte> head = stackalloc byte[4];
        using (var fs = File.OpenRead(path)) head = head[..fs.ReadAtLeast(head, 4, throwOnEndOfStream: false)];
        if (head.SequenceEqual("PK\x03\x04"u8)) return;
        if (head.Length >= 2 && head[0] == 0x80 && head[1] == 0x02)
            throw new SafetensorsFormatException($"{path}: legacy (pre-1.6, non-zip) torch.save format, which is not supported; re-save it with PyTorch ≥ 1.6 (torch.save(torch.load(f), f)) or convert it to safetensors.");
        throw new SafetensorsFormatException($"{path}: not a zip archive, so not a torch.save (≥ 1.6) checkpoint; legacy pre-1.6 files are not supported.");
    }

    private static long[] Longs(string path, object?[] xs) =>
        xs.Select(x => x as long? ?? throw new SafetensorsFormatException($"{path}: tensor size/stride holds {Unpickler.Describe(x)}, not an integer.")).ToArray();

    private static int ElementSize(ScalarType t) => SafetensorsDtypes.TryGetName(t, out _, out int size) ? size : 1;

    private static string ReadText(ZipArchiveEntry e)
    {
        using var r = new StreamReader(e.Open());
        return r.ReadToEnd();
    }
}
