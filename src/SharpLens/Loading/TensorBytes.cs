using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Byte-level tensor helpers shared by the weight-file readers.</summary>
internal static class TensorBytes
{
    /// <summary>
    /// An empty tensor of <paramref name="dtype"/> sharing <paramref name="bytes"/>' storage (offset 0), for
    /// <c>as_strided</c> to address in elements. TorchSharp has no <c>view(dtype)</c>; <c>set_</c> does the same
    /// job and libtorch bounds-checks the later <c>as_strided</c> against the storage size.
    /// </summary>
    public static Tensor Reinterpret(Tensor bytes, ScalarType dtype)
    {
        using var none = bytes.narrow(0, 0, 0);
        var t = empty(0, dtype);
        t.set_(none);
        return t;
    }

    /// <summary>Contiguous strides (in elements) of a C-order tensor of <paramref name="shape"/>.</summary>
    public static long[] ContiguousStrides(long[] shape)
    {
        var strides = new long[shape.Length];
        for (long i = shape.Length - 1, s = 1; i >= 0; s *= shape[i], i--) strides[i] = s;
        return strides;
    }

    /// <summary>A new uint8 tensor filled with exactly <paramref name="length"/> bytes from <paramref name="stream"/>.</summary>
    public static Tensor ReadBytes(Stream stream, long length)
    {
        var t = empty(length, ScalarType.Byte);
        const long chunk = 1 << 26; // Tensor.bytes spans are int-sized
        for (long off = 0; off < length; off += chunk)
        {
            using var part = t.narrow(0, off, Math.Min(chunk, length - off));
            stream.ReadExactly(part.bytes);
        }
        return t;
    }
}
