using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

public sealed class SafetensorsWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharplens-stw-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void RoundTripsEveryDtypeScalarsEmptyAndViews()
    {
        using var scope = NewDisposeScope();
        var big = arange(24, ScalarType.Float32).reshape(4, 6);
        var tensors = new List<KeyValuePair<string, Tensor>>
        {
            new("z.f32", randn(3, 5)),
            new("a.bf16", randn(7).to(ScalarType.BFloat16)),
            new("m.f16", randn(2, 2).to(ScalarType.Float16)),
            new("f64", randn(3, dtype: ScalarType.Float64)),
            new("i64", tensor(new long[] { long.MinValue, -1, 0, long.MaxValue })),
            new("i32", tensor(new[] { -7, 8 })),
            new("i16", tensor(new short[] { -300, 300 })),
            new("i8", tensor(new sbyte[] { -128, 127 })),
            new("u8", tensor(new byte[] { 0, 255, 3 })),
            new("bool", tensor(new[] { true, false, true })),
            new("scalar", tensor(3.5f)),
            new("empty", zeros(0, 4)),
            new("transposed", big.t()),          // non-contiguous: written in logical C order
            new("slice", big.narrow(0, 1, 2)),   // storage offset
        };
        var path = Path.Combine(_dir, "rt.safetensors");
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "héllo <&>" };
        SafetensorsWriter.Write(path, tensors, meta);

        using var f = SafetensorsFile.Open(path);
        Assert.Equal(tensors.Select(kv => kv.Key), f.Names); // given order kept
        Assert.Equal("héllo <&>", f.Metadata["note"]);
        Assert.Equal(0, f.DataOffset % 8);
        Assert.Equal(0, f.UnusedDataBytes);
        Assert.Equal("BF16", f.Info("a.bf16").Dtype);
        Assert.Equal("BOOL", f.Info("bool").Dtype);
        foreach (var (name, t) in tensors)
        {
            var back = f.Read(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.True(t.eq(back).all().item<bool>(), name);
        }
        Assert.Equal(19f, f.Read("transposed")[1, 3].item<float>());
        Assert.Equal(6f, f.Read("slice")[0, 0].item<float>());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    [Fact]
    public void DuplicateNamesFailWithoutTouchingTheTarget()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "dup.safetensors");
        File.WriteAllText(path, "old");
        var e = Assert.Throws<SharpLensException>(() => SafetensorsWriter.Write(path,
            [new("w", ones(2)), new("b", ones(1)), new("w", zeros(2))]));
        Assert.Contains("tensor name 'w' given twice", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void UnsupportedDtypeIsNamed()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "c.safetensors");
        var e = Assert.Throws<SharpLensException>(() => SafetensorsWriter.Write(path, [new("c", ones(2, dtype: ScalarType.ComplexFloat32))]));
        Assert.Contains("tensor 'c' has dtype ComplexFloat32", e.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void OverwritesExistingFileAtomically()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "o.safetensors");
        SafetensorsWriter.Write(path, [new("w", ones(3))]);
        SafetensorsWriter.Write(path, [new("v", full(2, 7L))]);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["v"], f.Names);
        Assert.Equal([7L, 7L], f.Read("v").data<long>().ToArray());
        Assert.Single(Directory.GetFiles(_dir));
    }
}
