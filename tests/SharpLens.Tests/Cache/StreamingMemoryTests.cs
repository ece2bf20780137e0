using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Cache;

/// <summary>
/// Peak RSS of the streaming export against the in-memory cache. Process-wide memory, so it runs alone (see
/// <see cref="IsolatedCollection"/>); each phase starts from trimmed heap (freed memory handed back) with VmHWM reset,
/// so memory an earlier phase freed cannot hide a phase's growth.
/// </summary>
[Collection(IsolatedCollection.Name)]
public sealed class StreamingMemoryTests
{
    [Fact]
    public void StreamingExportPeakStaysFlatAsTheCacheGrowsWhileTheInMemoryCacheGrowsWithIt()
    {
        Assert.True(OperatingSystem.IsLinux(), "this test reads /proc/self/status (Linux)");
        File.WriteAllText("/proc/self/clear_refs", "5"); // fails loudly where the peak cannot be reset
        var small = Measure(layers: 4);
        var large = Measure(layers: 16);
        double moreCache = large.CacheMb - small.CacheMb; // ~210 MB more to cache; one block's activations stay the same
        Assert.True(large.CacheMb > 250, $"the cache should be large for this test, it is {large.CacheMb:F0} MB");
        Assert.True(large.StreamedMb < 0.3 * large.CacheMb, $"streaming a {large.CacheMb:F0} MB cache grew the peak by {large.StreamedMb:F0} MB");
        Assert.True(large.StreamedMb - small.StreamedMb < 0.1 * moreCache,
            $"streaming peak went from {small.StreamedMb:F0} MB (4 layers) to {large.StreamedMb:F0} MB (16 layers): it grows with the cache");
        Assert.True(large.InMemoryMb - small.InMemoryMb > 0.8 * moreCache,
            $"in-memory peak went from {small.InMemoryMb:F0} MB to {large.InMemoryMb:F0} MB for {moreCache:F0} MB more cache (the measurement is not seeing the cache)");
    }

    /// <summary>Peak growth of a streamed and an in-memory [4, 256] cache of a GPT-2-shaped random model, and the cache size.</summary>
    private static (double StreamedMb, double InMemoryMb, double CacheMb) Measure(int layers)
    {
        var cfg = new HookedTransformerConfig(nLayers: layers, dModel: 128, nCtx: 256, dHead: 32, nHeads: 4, dVocab: 1000, dMlp: 512);
        torch.manual_seed(0);
        using var model = new HookedTransformer(cfg, ParameterLayout.For(cfg).ToDictionary(p => p.Name, p => torch.randn(p.Shape) * 0.02f));
        using var tokens = torch.randint(0, cfg.DVocab, [4, 256], ScalarType.Int64);
        string dir = Directory.CreateTempSubdirectory("sharplens-stream-mem-").FullName;
        try
        {
            string path = Path.Combine(dir, "acts.safetensors");
            using (var warm = tokens.narrow(1, 0, 16)) model.RunWithCacheToFile(warm, path); // JIT, thread pools
            double streamed = PeakGrowthMb(() => model.RunWithCacheToFile(tokens, path));
            double cacheMb = new FileInfo(path).Length / 1048576.0;
            File.Delete(path);
            double inMemory = PeakGrowthMb(() =>
            {
                var (logits, cache) = model.RunWithCache(tokens);
                cache.Dispose(); logits.Dispose();
            });
            return (streamed, inMemory, cacheMb);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
            // Hand the freed cache back: later isolated tests measure RSS growth and must not find it resident.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            NativeMemory.Trim();
        }
    }

    /// <summary>
    /// The smallest peak growth over two runs: memory the rest of the process allocates meanwhile (a background
    /// thread of an earlier test, a finalizer) only ever adds to one run's reading, so the minimum is the export's own.
    /// </summary>
    private static double PeakGrowthMb(Action run) => Math.Min(PeakGrowthOnceMb(run), PeakGrowthOnceMb(run));

    private static double PeakGrowthOnceMb(Action run)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        NativeMemory.Trim();
        double baseline = StatusMb("VmRSS");
        File.WriteAllText("/proc/self/clear_refs", "5");
        run();
        return StatusMb("VmHWM") - baseline;
    }

    private static double StatusMb(string key) =>
        File.ReadLines("/proc/self/status").Where(l => l.StartsWith(key + ":", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split(':')[1].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) / 1024).Single();
}
