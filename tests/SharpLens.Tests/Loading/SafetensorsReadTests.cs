using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

public class SafetensorsReadTests
{
    private static string TinyModel => Path.Combine(Golden.Dir, "model.safetensors");

    /// <summary>The value of float number <paramref name="index"/> of a tensor, decoded straight from the file bytes.</summary>
    private static float RawFloat(SafetensorsFile f, string name, long index)
    {
        var bytes = File.ReadAllBytes(f.Path);
        return BitConverter.ToSingle(bytes, (int)(f.DataOffset + f.Info(name).Begin + 4 * index));
    }

    [Fact]
    public void ReadsTinyGpt2HeaderAndValues()
    {
        using var scope = NewDisposeScope();
        using var f = SafetensorsFile.Open(TinyModel);
        Assert.Equal(28, f.Names.Count);
        Assert.Equal("h.0.attn.c_attn.bias", f.Names[0]); // header order
        Assert.Equal("wte.weight", f.Names[^1]);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(8 + 2528, f.DataOffset);
        Assert.Equal(0, f.UnusedDataBytes);
        var info = f.Info("wte.weight");
        Assert.Equal(("F32", 416768L, 672768L), (info.Dtype, info.Begin, info.End));
        Assert.Equal([1000L, 64L], info.Shape);

        var wte = f.Read("wte.weight");
        Assert.Equal(ScalarType.Float32, wte.dtype);
        Assert.Equal([1000L, 64L], wte.shape);
        Assert.Equal(RawFloat(f, "wte.weight", 0), wte[0, 0].item<float>());
        Assert.Equal(RawFloat(f, "wte.weight", 999 * 64 + 63), wte[999, 63].item<float>());
        Assert.Equal(RawFloat(f, "h.1.mlp.c_fc.weight", 5 * 256 + 7), f.Read("h.1.mlp.c_fc.weight")[5, 7].item<float>());
        Assert.True(f.Contains("wpe.weight"));
        Assert.False(f.Contains("wpe.weights"));
    }

    [Fact]
    public void TensorsStayValidAfterDispose()
    {
        using var scope = NewDisposeScope();
        Tensor wte, bias;
        float first, last;
        using (var f = SafetensorsFile.Open(TinyModel))
        {
            wte = f.Read("wte.weight");
            bias = f.Read("ln_f.bias");
            (first, last) = (RawFloat(f, "wte.weight", 0), RawFloat(f, "ln_f.bias", 63));
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.Equal(first, wte[0, 0].item<float>());
        Assert.Equal(last, bias[63].item<float>());
        Assert.Equal(wte.sum().item<float>(), wte.clone().sum().item<float>());
    }

    [Fact]
    public void UnknownNameSuggestsClosest()
    {
        using var f = SafetensorsFile.Open(TinyModel);
        var e = Assert.ThrowsAny<SharpLensException>(() => f.Read("wte.weigth"));
        Assert.StartsWith(TinyModel, e.Message);
        Assert.Contains("no tensor named 'wte.weigth'", e.Message);
        Assert.Contains("'wte.weight'", e.Message);
    }
}
