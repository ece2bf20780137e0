using static TorchSharp.torch;

namespace SharpLens;

/// <summary>Conversions from tensors to .NET arrays for tables, plots and JSON.</summary>
public static class TensorExtensions
{
    /// <summary>A 2-D float tensor as a <c>float[rows, cols]</c>.</summary>
    public static float[,] ToArray2D(this Tensor t)
    {
        if (t.dim() != 2) throw new SharpLensException($"ToArray2D needs a 2-D tensor, got shape {TensorExtensions.ShapeText(t.shape)}.");
        using var c = t.to_type(ScalarType.Float32).contiguous();
        var flat = c.data<float>().ToArray();
        int rows = (int)c.shape[0], cols = (int)c.shape[1];
        var a = new float[rows, cols];
        Buffer.BlockCopy(flat, 0, a, 0, flat.Length * sizeof(float));
        return a;
    }

    /// <summary>Address of the tensor's first element (storage base + offset), to tell whether two tensors alias.</summary>
    internal static long DataAddress(this Tensor t)
    {
        if (t.numel() > 0 && t.device_type == TorchSharp.DeviceType.CPU)
        {
            // A one-element view at the first element is contiguous, so its byte span points at the data with no copy.
            // (Storage<T> of another element type than the tensor's converts the whole storage: for a bfloat16 view of a
            // mapped checkpoint that copied the file and gave the copy's address.)
            using var first = t.as_strided([1], [1], t.storage_offset());
            return (long)System.Runtime.CompilerServices.Unsafe.ByteOffset(ref System.Runtime.CompilerServices.Unsafe.NullRef<byte>(),
                ref System.Runtime.InteropServices.MemoryMarshal.GetReference(first.bytes));
        }
        long baseAddress = t.dtype switch
        {
            ScalarType.Float32 => (long)t.storage<float>().data_ptr(),
            ScalarType.Float64 => (long)t.storage<double>().data_ptr(),
            ScalarType.Int64 => (long)t.storage<long>().data_ptr(),
            ScalarType.Int32 => (long)t.storage<int>().data_ptr(),
            _ => (long)t.storage<byte>().data_ptr(),
        };
        return baseAddress + t.storage_offset() * t.element_size();
    }

    /// <summary>"[2, 3]" for error messages.</summary>
    internal static string ShapeText(long[] shape) => "[" + string.Join(", ", shape) + "]";
}
