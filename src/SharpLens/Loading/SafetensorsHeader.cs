using System.Text.Json;

namespace SharpLens.Loading;

/// <summary>Parses and fully validates a safetensors JSON header against the size of the data block.</summary>
internal static class SafetensorsHeader
{
    public static (List<string> Names, Dictionary<string, SafetensorsTensorInfo> Infos, Dictionary<string, string> Metadata, long UnusedBytes)
        Parse(string path, byte[] header, long dataLength)
    {
        using var doc = JsonInput.Parse($"{path}: header", header,
            (m, e) => e is null ? new SafetensorsFormatException(m) : new SafetensorsFormatException(m, e));
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException($"{path}: header must be a JSON object, got {doc.RootElement.ValueKind}.");

        var names = new List<string>();
        var infos = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") { ReadMetadata(path, p.Value, metadata); continue; }
            var info = ReadEntry(path, p.Name, p.Value, dataLength);
            infos[p.Name] = info;
            names.Add(p.Name);
        }
        return (names, infos, metadata, dataLength - CheckNoOverlap(path, infos.Values));
    }

    private static SafetensorsTensorInfo ReadEntry(string path, string name, JsonElement e, long dataLength)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw Error(path, name, $"header entry must be an object with dtype, shape and data_offsets, got {e.ValueKind}");
        if (!e.TryGetProperty("dtype", out var d)) throw Error(path, name, "missing 'dtype'");
        if (!e.TryGetProperty("shape", out var s)) throw Error(path, name, "missing 'shape'");
        if (!e.TryGetProperty("data_offsets", out var o)) throw Error(path, name, "missing 'data_offsets'");
        if (d.ValueKind != JsonValueKind.String) throw Error(path, name, $"'dtype' must be a string, got {d.ValueKind}");
        string dtype = d.GetString()!;
        if (!SafetensorsDtypes.TryGet(dtype, out _, out int size))
            throw Error(path, name, $"unknown dtype '{dtype}'; allowed: {SafetensorsDtypes.Allowed}");
        long[] shape = Integers(path, name, "shape", s);
        long[] off = Integers(path, name, "data_offsets", o);
        if (off.Length != 2) throw Error(path, name, $"'data_offsets' must be [begin, end], got {off.Length} numbers");
        var (begin, end) = (off[0], off[1]);
        if (end < begin) throw Error(path, name, $"data_offsets [{begin}, {end}] end before they begin");
        long expected;
        try { expected = checked(shape.Aggregate(1L, (a, b) => a * b) * size); }
        catch (OverflowException) { throw Error(path, name, $"shape {TensorExtensions.ShapeText(shape)} is too large"); }
        if (expected != end - begin)
            throw Error(path, name, $"shape {TensorExtensions.ShapeText(shape)} × {size} bytes ({dtype}) = {expected} bytes, but data_offsets [{begin}, {end}] span {end - begin} bytes");
        if (end > dataLength)
            throw Error(path, name, $"data_offsets [{begin}, {end}] lie outside the data block of {dataLength} bytes");
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static long[] Integers(string path, string name, string field, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Array) throw Error(path, name, $"'{field}' must be an array of integers, got {e.ValueKind}");
        var r = new long[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out r[i]) || r[i] < 0)
                throw Error(path, name, $"'{field}' must hold non-negative integers, got {x.GetRawText()}");
            i++;
        }
        return r;
    }

    private static void ReadMetadata(string path, JsonElement e, Dictionary<string, string> into)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException($"{path}: '__metadata__' must be an object of strings, got {e.ValueKind}.");
        foreach (var p in e.EnumerateObject())
            into[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()!
                : throw new SafetensorsFormatException($"{path}: '__metadata__' value '{p.Name}' must be a string, got {p.Value.ValueKind}.");
    }

    /// <summary>Throws if two non-empty byte ranges overlap; returns the number of bytes covered.</summary>
    private static long CheckNoOverlap(string path, IEnumerable<SafetensorsTensorInfo> infos)
    {
        SafetensorsTensorInfo? last = null; // the range reaching furthest so far
        long covered = 0;
        foreach (var i in infos.Where(i => i.End > i.Begin).OrderBy(i => i.Begin))
        {
            if (last != null && i.Begin < last.End)
                throw new SafetensorsFormatException(
                    $"{path}: tensors '{last.Name}' (bytes [{last.Begin}, {last.End})) and '{i.Name}' (bytes [{i.Begin}, {i.End})) overlap.");
            covered += i.End - i.Begin;
            last = i;
        }
        return covered;
    }

    private static SafetensorsFormatException Error(string path, string name, string what) => new($"{path}: tensor '{name}': {what}.");
}
