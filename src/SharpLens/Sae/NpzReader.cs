using System.IO.Compression;
using System.Text.RegularExpressions;
using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Sae;

/// <summary>
/// Reads NumPy's <c>.npz</c> archives (a zip of <c>.npy</c> files, as written by <c>np.savez</c> and
/// <c>np.savez_compressed</c>) into tensors: Gemma Scope's <c>params.npz</c>. Little-endian numeric dtypes, C or
/// Fortran order, format versions 1–3.
/// </summary>
public static partial class NpzReader
{
    /// <summary>Every array of the archive by name (without the <c>.npy</c> suffix); the caller owns the tensors.</summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        using var zip = OpenZip(path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
                using var s = entry.Open();
                result[entry.FullName[..^4]] = ReadNpy(s, entry.Length, $"{path}:{entry.FullName}");
            }
        }
        catch (Exception e)
        {
            foreach (var t in result.Values) t.Dispose();
            // The zip's central directory is read lazily and its entries on demand: damage shows up here, not at open.
            if (e is InvalidDataException or EndOfStreamException or IOException or OverflowException or NotSupportedException)
                throw new SharpLensException($"{path}: damaged .npz archive ({e.Message.ReplaceLineEndings(" ")}); the file is truncated or corrupted.", e);
            throw;
        }
        return result;
    }

    private static ZipArchive OpenZip(string path)
    {
        try { return ZipFile.OpenRead(path); }
        catch (InvalidDataException e) { throw new SharpLensException($"{path} is not an .npz file (not a zip archive): {e.Message}"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SharpLensException($"{path}: cannot be read: {e.Message}", e); }
    }

    /// <summary>One <c>.npy</c> array from a stream of <paramref name="length"/> bytes.</summary>
    public static Tensor ReadNpy(Stream stream, long length, string what)
    {
        Span<byte> magic = stackalloc byte[8];
        stream.ReadExactly(magic);
        if (magic[0] != 0x93 || magic[1] != 'N' || magic[2] != 'U' || magic[3] != 'M' || magic[4] != 'P' || magic[5] != 'Y')
            throw new SharpLensException($"{what} is not a .npy array (bad magic).");
        int major = magic[6];
        int headerLen;
        Span<byte> len = stackalloc byte[4];
        if (major == 1) { stream.ReadExactly(len[..2]); headerLen = len[0] | len[1] << 8; }
        else if (major is 2 or 3) { stream.ReadExactly(len); headerLen = BitConverter.ToInt32(len); }
        else throw new SharpLensException($"{what}: unsupported .npy format version {major}.");
        if (headerLen < 0 || headerLen > length)
            throw new SharpLensException($"{what}: .npy header length {headerLen} does not fit the {length}-byte array; the file is damaged.");
        var headerBytes = new byte[headerLen];
        stream.ReadExactly(headerBytes);
        string header = System.Text.Encoding.Latin1.GetString(headerBytes);
        var descr = DescrRe().Match(header);
        var fortran = FortranRe().Match(header);
        var shapeM = ShapeRe().Match(header);
        if (!descr.Success || !fortran.Success || !shapeM.Success)
            throw new SharpLensException($"{what}: cannot parse the .npy header {header.Trim().ReplaceLineEndings(" ")}.");
        var (dtype, size) = descr.Groups[1].Value switch
        {
            "<f4" => (ScalarType.Float32, 4),
            "<f8" => (ScalarType.Float64, 8),
            "<f2" => (ScalarType.Float16, 2),
            "<i8" => (ScalarType.Int64, 8),
            "<i4" => (ScalarType.Int32, 4),
            "<i2" => (ScalarType.Int16, 2),
            "|i1" => (ScalarType.Int8, 1),
            "|u1" => (ScalarType.Byte, 1),
            "|b1" => (ScalarType.Bool, 1),
            var d => throw new SharpLensException($"{what}: unsupported .npy dtype '{d}' (supported: little-endian float16/32/64, int8/16/32/64, uint8, bool)."),
        };
        var dimTexts = shapeM.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var shape = new long[dimTexts.Length];
        long n = 1, dataLen;
        try
        {
            for (int i = 0; i < shape.Length; i++)
            {
                if (!long.TryParse(dimTexts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out shape[i]))
                    throw new SharpLensException($"{what}: .npy shape ({shapeM.Groups[1].Value.ReplaceLineEndings(" ")}) must list non-negative integers.");
                n = checked(n * shape[i]);
            }
            dataLen = checked(n * size);
        }
        catch (OverflowException) { throw new SharpLensException($"{what}: .npy shape ({shapeM.Groups[1].Value}) is too large; the file is damaged."); }
        long headerTotal = 8 + (major == 1 ? 2 : 4) + headerLen;
        if (length >= 0 && headerTotal + dataLen != length)
            throw new SharpLensException($"{what}: holds {length - headerTotal} data bytes, but shape [{string.Join(", ", shape)}] of {descr.Groups[1].Value} needs {dataLen}.");
        using var bytes = TensorBytes.ReadBytes(stream, dataLen);
        using var typed = TensorBytes.Reinterpret(bytes, dtype);
        bool isFortran = fortran.Groups[1].Value == "True";
        // Fortran order: the bytes are the transpose's C order.
        var dims = isFortran ? shape.Reverse().ToArray() : shape;
        using var flat = typed.as_strided(dims, TensorBytes.ContiguousStrides(dims), 0);
        return isFortran ? flat.permute(Enumerable.Range(0, dims.Length).Reverse().Select(i => (long)i).ToArray()).contiguous() : flat.clone();
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrRe();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRe();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRe();
}
