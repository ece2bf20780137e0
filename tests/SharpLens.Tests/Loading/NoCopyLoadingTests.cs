using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

/// <summary>
/// Loads that need no conversion keep parameters as views of the memory-mapped file: their data lies inside the file's
/// mapping and anonymous memory does not grow by the checkpoint size. Measures process memory, so it runs alone.
/// </summary>
[Collection(IsolatedCollection.Name)]
public sealed class NoCopyLoadingTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("sharplens-nocopy-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>Address ranges where <paramref name="path"/> is mapped into this process (/proc/self/maps).</summary>
    private static List<(ulong Start, ulong End)> Mappings(string path)
    {
        string full = Path.GetFullPath(path);
        var ranges = new List<(ulong, ulong)>();
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6 || parts[5].Trim() != full) continue;
            var se = parts[0].Split('-');
            ranges.Add((ulong.Parse(se[0], NumberStyles.HexNumber), ulong.Parse(se[1], NumberStyles.HexNumber)));
        }
        return ranges;
    }

    /// <summary>Parameters whose bytes do not lie inside a mapping of <paramref name="file"/>.</summary>
    private static List<string> NotMapped(HookedTransformer model, string file)
    {
        var maps = Mappings(file);
        Assert.NotEmpty(maps);
        return model.ParameterNames.Where(n =>
        {
            var t = model.Parameter(n);
            ulong start = (ulong)t.DataAddress();
            // The furthest element a strided view reaches.
            ulong last = start + (ulong)(t.shape.Select((s, i) => (s - 1) * t.stride()[i]).Sum() * t.element_size()) + (ulong)t.element_size();
            return !maps.Any(m => start >= m.Start && last <= m.End);
        }).ToList();
    }

    private static long RssAnonKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) return long.Parse(line[8..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new InvalidOperationException("no RssAnon in /proc/self/status");
    }

    [SkippableFact]
    public void UnprocessedGpt2ParametersAreViewsOfTheCheckpointMapping()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        using var model = HookedTransformer.FromFolder(Golden.Dir, ProcessingOptions.None, "tiny-gpt2");
        // b_U is not in a GPT-2 checkpoint: the converter makes the zero vector.
        Assert.Equal(["unembed.b_U"], NotMapped(model, Path.Combine(Golden.Dir, "model.safetensors")));
        Assert.Equal(WeightsCacheUse.NotUsed, model.WeightsCacheUse);
    }

    [SkippableFact]
    public void Bfloat16CheckpointLoadedAsBfloat16IsMappedToo()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        string dir = Path.Combine(_root, "bf16");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(dir, "config.json"));
        using (var scope = NewDisposeScope())
        using (var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "model.safetensors")))
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
                f.Names.Order(StringComparer.Ordinal).Select(n => new KeyValuePair<string, Tensor>(n, f.Read(n).to_type(ScalarType.BFloat16))));
        using var model = HookedTransformer.FromFolder(dir, ProcessingOptions.None, "bf16", ScalarType.BFloat16);
        Assert.Equal(WeightsCacheUse.NotUsed, model.WeightsCacheUse);
        Assert.Equal(["unembed.b_U"], NotMapped(model, Path.Combine(dir, "model.safetensors")));
    }

    [SkippableFact]
    public void Phi3FusedQkvProjectionIsUsedAsAView()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-phi3");
        using var model = HookedTransformer.FromFolder(dir, ProcessingOptions.None, "tiny-phi3");
        // Only the zero biases Phi-3 does not store are new; W_Q/W_K/W_V stay views of qkv_proj (not copied into a fused matrix).
        var copied = NotMapped(model, Path.Combine(dir, "model.safetensors"));
        Assert.NotEmpty(copied);
        Assert.All(copied, n => Assert.Matches(@"\._?b_", n));
        Assert.DoesNotContain(copied, n => System.Text.RegularExpressions.Regex.IsMatch(n, @"\._?W_"));
    }

    [SkippableFact]
    public void CacheHitParametersAreViewsOfTheCacheFileMapping()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        var cache = new WeightsCache(Path.Combine(_root, "weights"));
        foreach (var fixture in new[] { "tiny-gpt2", "tiny-llama" })
        {
            string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
            using (var written = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, fixture, ScalarType.Float32, cache))
                Assert.Equal(WeightsCacheUse.Written, written.WeightsCacheUse);
            using var hit = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, fixture, ScalarType.Float32, cache);
            Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
            string file = Directory.GetFiles(cache.Folder, "*.safetensors").OrderByDescending(File.GetLastWriteTimeUtc).First();
            Assert.Empty(NotMapped(hit, file));
        }
    }

    [SkippableFact]
    public void MappedLoadsDoNotGrowAnonymousMemoryByTheCheckpoint()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/status");
        string dir = WriteRandomGpt2(Path.Combine(_root, "gpt2-random"), layers: 4, dModel: 512, vocab: 8192);
        long checkpointKb = new FileInfo(Path.Combine(dir, "model.safetensors")).Length / 1024;
        var cache = new WeightsCache(Path.Combine(_root, "weights"));
        using (var warm = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "r", ScalarType.Float32, cache)) // writes the cache entry
            Assert.Equal(WeightsCacheUse.Written, warm.WeightsCacheUse);
        NativeMemory.Trim();

        foreach (var (options, expected) in new[] { (ProcessingOptions.None, WeightsCacheUse.NotUsed), (ProcessingOptions.Default, WeightsCacheUse.Hit) })
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            NativeMemory.Trim();
            long before = RssAnonKb();
            using var model = HookedTransformer.LoadFolder(dir, options, "r", ScalarType.Float32, cache);
            long grown = RssAnonKb() - before;
            Assert.Equal(expected, model.WeightsCacheUse);
            Assert.True(grown < checkpointKb / 5, $"{expected}: anonymous memory grew by {grown} KB for a {checkpointKb} KB checkpoint");
        }

        // The control: a processed load without the cache computes every parameter in fresh memory. Free heap the
        // allocator kept (earlier tests, the loads above) would absorb it without growing RSS: hand it back first.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        NativeMemory.Trim();
        long before2 = RssAnonKb();
        using var computed = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "r", ScalarType.Float32, null);
        Assert.True(RssAnonKb() - before2 > checkpointKb / 2, "the control load should allocate the model");
    }

    /// <summary>A random checkpoint in Hugging Face GPT-2 layout (Conv1D [in, out] matrices).</summary>
    internal static string WriteRandomGpt2(string dir, int layers, int dModel, int vocab, int nCtx = 256) =>
        Cli.RandomGpt2Checkpoint.Write(dir, layers, dModel, nHeads: 8, vocab, nCtx, std: 0.02f, seed: 5, randomNorms: false);
}
