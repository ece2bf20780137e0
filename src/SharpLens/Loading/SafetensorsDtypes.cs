using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>The safetensors dtype names this library reads and writes, and their torch equivalents.</summary>
internal static class SafetensorsDtypes
{
    private static readonly (string Name, ScalarType Type, int Size)[] Table =
    [
        ("F64", ScalarType.Float64, 8), ("F32", ScalarType.Float32, 4), ("F16", ScalarType.Float16, 2),
        ("BF16", ScalarType.BFloat16, 2), ("I64", ScalarType.Int64, 8), ("I32", ScalarType.Int32, 4),
        ("I16", ScalarType.Int16, 2), ("I8", ScalarType.Int8, 1), ("U8", ScalarType.Byte, 1), ("BOOL", ScalarType.Bool, 1),
    ];

    /// <summary>"F64, F32, ..." for error messages.</summary>
    public static string Allowed => string.Join(", ", Table.Select(t => t.Name));

    public static bool TryGet(string name, out ScalarType type, out int size)
    {
        foreach (var t in Table)
            if (t.Name == name) { (type, size) = (t.Type, t.Size); return true; }
        (type, size) = (default, 0);
        return false;
    }

    public static bool TryGetName(ScalarType type, out string name, out int size)
    {
        foreach (var t in Table)
            if (t.Type == type) { (name, size) = (t.Name, t.Size); return true; }
        (name, size) = ("", 0);
        return false;
    }
}
