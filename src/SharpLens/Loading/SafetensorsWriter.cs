using System.Text.Encodings.Web;
using System.Text.Json;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Writes tensors to a safetensors file.</summary>
public static class SafetensorsWriter
{
    private const long ChunkBytes = 1 << 26; // Tensor.bytes is an int-length span: copy big tensors in pieces

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> in the GIVEN order (header entries and data
    /// follow the enumeration order; pass a sorted sequence for the canonical sorted layout). The header is padded
    /// with spaces to a multiple of 8 bytes so every tensor starts 8-byte aligned; data is contiguous, C-order,
    /// little-endian. Tensors are moved to the CPU and made contiguous as needed. The file is written to a temporary
    /// name next to <paramref name="path"/> and renamed over it at the end, so a failure never leaves a half-written
    /// file. Throws <see cref="SharpLensException"/> for duplicate names or unsupported dtypes.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (!BitConverter.IsLittleEndian) throw new SharpLensException("Writing safetensors files on a big-endian host is not supported.");
        var items = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in items)
        {
            if (name == "__metadata__") throw new SharpLensException($"{path}: '__metadata__' is reserved and cannot be a tensor name.");
            if (!seen.Add(name)) throw new SharpLensException($"{path}: tensor name '{name}' given twice.");
            if (!SafetensorsDtypes.TryGetName(t.dtype, out _, out _))
                throw new SharpLensException($"{path}: tensor '{name}' has dtype {t.dtype}, which safetensors files here cannot hold; allowed: {SafetensorsDtypes.Allowed}.");
        }

        byte[] header = Header(items, metadata);
        AtomicFile.Write(path, fs =>
        {
            fs.Write(BitConverter.GetBytes((ulong)header.Length));
            fs.Write(header);
            foreach (var (_, t) in items) WriteData(fs, t);
        });
    }

    private static byte[] Header(List<KeyValuePair<string, Tensor>> items, IReadOnlyDictionary<string, string>? metadata) =>
        Header(items.Select(kv =>
        {
            SafetensorsDtypes.TryGetName(kv.Value.dtype, out string dtype, out int size);
            return new SafetensorsEntry(kv.Key, dtype, kv.Value.shape, kv.Value.numel() * size);
        }), metadata);

    /// <summary>
    /// The header bytes (JSON padded with spaces to a multiple of 8) for tensors laid out one after the other in the
    /// given order: the one header layout every SharpLens safetensors writer uses.
    /// </summary>
    internal static byte[] Header(IEnumerable<SafetensorsEntry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.Dtype);
                w.WriteStartArray("shape");
                foreach (var d in e.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + e.Bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += e.Bytes;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    /// <summary>Writes the tensor's bytes (contiguous, C-order) at the stream's position, in pieces.</summary>
    internal static void WriteData(Stream fs, Tensor t)
    {
        using var scope = NewDisposeScope();
        var flat = t.detach().cpu().contiguous().reshape(-1);
        if (flat.numel() == 0) return;
        long perChunk = Math.Max(1, ChunkBytes / flat.element_size());
        for (long start = 0; start < flat.numel(); start += perChunk)
            fs.Write(flat.narrow(0, start, Math.Min(perChunk, flat.numel() - start)).bytes);
    }
}

/// <summary>One tensor's header entry: safetensors dtype name, shape and byte length.</summary>
internal readonly record struct SafetensorsEntry(string Name, string Dtype, long[] Shape, long Bytes);
