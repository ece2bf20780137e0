using static TorchSharp.torch;

namespace SharpLens;

/// <summary>Conversions from tensors to .NET arrays for tables, plots and JSON.</summary>
public static class TensorExtensions
{
    /// <summary>A 2-D float tensor as a <c>float[rows, cols]</c>.</summary>
    public static float[,] ToArray2D(this Tensor t)
    {
        if (t.dim() != 2) throw new SharpLensException($"ToArray2D needs a 2-D tensor, got shape [{string.Join(", ", t.shape)}].");
        using var c = t.to_type(ScalarType.Float32).contiguous();
        var flat = c.data<float>().ToArray();
        int rows = (int)c.shape[0], cols = (int)c.shape[1];
        var a = new float[rows, cols];
        Buffer.BlockCopy(flat, 0, a, 0, flat.Length * sizeof(float));
        return a;
    }
}
