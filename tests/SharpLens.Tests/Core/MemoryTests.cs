using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

/// <summary>Measures process-wide RSS and live tensors, so it runs alone (see <see cref="IsolatedCollection"/>).</summary>
[Collection(IsolatedCollection.Name)]
public sealed class MemoryTests
{
    [Fact]
    public void RepeatedRunWithCacheDoesNotGrowMemoryOrLiveTensors()
    {
        using var model = Golden.Model();
        using var tokens = Golden.Tokens;
        void Iteration()
        {
            using var scope = NewDisposeScope();
            var (logits, cache) = model.RunWithCache(tokens);
            using (cache) using (logits) { _ = cache["blocks.1.hook_resid_post"].sum().item<float>(); }
        }
        for (int i = 0; i < 20; i++) Iteration(); // warm-up: allocator pools, JIT
        GC.Collect(); GC.WaitForPendingFinalizers();
        long baselineTensors = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long baselineRss = Process.GetCurrentProcess().WorkingSet64;
        for (int i = 0; i < 200; i++) Iteration();
        GC.Collect(); GC.WaitForPendingFinalizers();
        long rss = Process.GetCurrentProcess().WorkingSet64;
        Assert.Equal(baselineTensors, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.True(rss <= baselineRss * 1.10, $"RSS grew from {baselineRss >> 20} MB to {rss >> 20} MB over 200 RunWithCache calls");
    }
}
