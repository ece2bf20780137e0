using System.IO.Compression;
using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

public sealed class PytorchCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharplens-pt-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private static byte[] Floats(params float[] xs) => xs.SelectMany(BitConverter.GetBytes).ToArray();

    /// <summary>The checkpoint used by several tests; see the comments for what each entry exercises.</summary>
    internal static TorchSaveBuilder Sample()
    {
        var b = new TorchSaveBuilder();
        // plain contiguous [3, 4]
        var s0 = b.Storage(Floats(Enumerable.Range(0, 12).Select(i => (float)i).ToArray()));
        b.Tensor("embed.weight", "FloatStorage", s0, 12, 0, [3, 4], [4, 1]);
        // transposed: storage holds a row-major [4, 2] matrix, the tensor is its [2, 4] transpose
        var s1 = b.Storage(Floats(10, 11, 20, 21, 30, 31, 40, 41));
        b.Tensor("proj.weight", "FloatStorage", s1, 8, 0, [2, 4], [1, 2]);
        // storage offset: elements 5..7 of a 10-element storage
        var s2 = b.Storage(Floats(Enumerable.Range(0, 10).Select(i => i * 0.5f).ToArray()));
        b.Tensor("ln.bias", "FloatStorage", s2, 10, 5, [3], [1]);
        // int64 scalar and bf16 vector (1.0 = 0x3F80, -2.0 = 0xC000)
        var s3 = b.Storage(BitConverter.GetBytes(123456789012L));
        b.Tensor("step", "LongStorage", s3, 1, 0, [], []);
        var s4 = b.Storage([0x80, 0x3F, 0x00, 0xC0]);
        b.Tensor("half.weight", "BFloat16Storage", s4, 2, 0, [2], [1]);
        // tied weights: the same tensor object saved under a second name
        b.SameTensor("lm_head.weight", "embed.weight");
        return b;
    }

    [Fact]
    public void ReadsTorchSaveZipWithOffsetsStridesDtypesAndTiedWeights()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "pytorch_model.bin");
        Sample().Save(path);
        var sd = PytorchCheckpointReader.Load(path);

        Assert.Equal(["embed.weight", "proj.weight", "ln.bias", "step", "half.weight", "lm_head.weight"], sd.Keys);
        Assert.Equal([3L, 4L], sd["embed.weight"].shape);
        Assert.Equal(Enumerable.Range(0, 12).Select(i => (float)i), sd["embed.weight"].data<float>().ToArray());

        var proj = sd["proj.weight"];
        Assert.Equal([2L, 4L], proj.shape);
        Assert.True(proj.is_contiguous());
        Assert.Equal([10f, 20f, 30f, 40f, 11f, 21f, 31f, 41f], proj.data<float>().ToArray());

        Assert.Equal([2.5f, 3f, 3.5f], sd["ln.bias"].data<float>().ToArray());

        Assert.Empty(sd["step"].shape);
        Assert.Equal(ScalarType.Int64, sd["step"].dtype);
        Assert.Equal(123456789012L, sd["step"].item<long>());

        Assert.Equal(ScalarType.BFloat16, sd["half.weight"].dtype);
        Assert.Equal([1f, -2f], sd["half.weight"].to(ScalarType.Float32).data<float>().ToArray());

        Assert.NotSame(sd["embed.weight"], sd["lm_head.weight"]);
        Assert.True(sd["embed.weight"].eq(sd["lm_head.weight"]).all().item<bool>());
    }

    [Fact]
    public void TensorsOutliveTheirDisposeScopeWhenMovedOut()
    {
        var path = Path.Combine(_dir, "m.bin");
        Sample().Save(path, prefix: "m"); // older torch used the file stem as the zip prefix
        Dictionary<string, Tensor> sd;
        using (var outer = NewDisposeScope())
        {
            using (NewDisposeScope()) sd = PytorchCheckpointReader.Load(path).ToDictionary(kv => kv.Key, kv => kv.Value.MoveToOuterDisposeScope());
            Assert.Equal(6f, sd["embed.weight"][1, 2].item<float>());
            Assert.Equal(3.5f, sd["ln.bias"][2].item<float>());
        }
    }

    [Fact]
    public void LegacyFormatIsRejectedClearly()
    {
        var path = Path.Combine(_dir, "old.bin");
        File.WriteAllBytes(path, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
        var e = Assert.Throws<SafetensorsFormatException>(() => PytorchCheckpointReader.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains("legacy (pre-1.6, non-zip) torch.save format", e.Message);
    }

    [Fact]
    public void UnsupportedGlobalIsNamed()
    {
        var b = new TorchSaveBuilder();
        b.Raw("w", p => { p.Global("numpy.core.multiarray", "_reconstruct"); p.Op(')'); p.Op('R'); });
        var path = Path.Combine(_dir, "np.bin");
        b.Save(path);
        var e = Assert.Throws<SafetensorsFormatException>(() => PytorchCheckpointReader.Load(path));
        Assert.Contains("unsupported global 'numpy.core.multiarray._reconstruct'", e.Message);
    }

    [Fact]
    public void StorageShorterThanDeclaredIsReported()
    {
        var b = new TorchSaveBuilder();
        var s = b.Storage(Floats(1, 2, 3));
        b.Tensor("w", "FloatStorage", s, 4, 0, [4], [1]);
        var path = Path.Combine(_dir, "short.bin");
        b.Save(path);
        var e = Assert.Throws<SafetensorsFormatException>(() => PytorchCheckpointReader.Load(path));
        Assert.Contains("storage '0' has 12 bytes but 4 × 4-byte Float32 needs 16", e.Message);
    }

    [Fact]
    public void ViewPastStorageEndIsReported()
    {
        var b = new TorchSaveBuilder();
        var s = b.Storage(Floats(1, 2, 3, 4));
        b.Tensor("w", "FloatStorage", s, 4, 2, [2, 2], [2, 1]);
        var path = Path.Combine(_dir, "oob.bin");
        b.Save(path);
        var e = Assert.Throws<SafetensorsFormatException>(() => PytorchCheckpointReader.Load(path));
        Assert.Contains("reaches element 5, past the storage's 4 elements", e.Message);
    }

    [Fact]
    public void ZipWithoutPickleIsNotACheckpoint()
    {
        var path = Path.Combine(_dir, "other.bin");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create)) zip.CreateEntry("readme.txt");
        var e = Assert.Throws<SafetensorsFormatException>(() => PytorchCheckpointReader.Load(path));
        Assert.Contains("without '<name>/data.pkl'", e.Message);
        Assert.Contains("readme.txt", e.Message);
    }
}
