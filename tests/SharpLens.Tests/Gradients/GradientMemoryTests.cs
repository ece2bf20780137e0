using System.Diagnostics;
using SharpLens.Analysis;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Gradients;

/// <summary>The autograd graph is released when a gradient call returns (process-wide RSS, so it runs alone).</summary>
[Collection(IsolatedCollection.Name)]
public sealed class GradientMemoryTests
{
    [Fact]
    public void RepeatedGradientRunsDoNotGrowMemoryOrLiveTensors()
    {
        using var model = Golden.Model();
        using var tokens = Golden.Tokens;
        using var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
        void Iteration()
        {
            using var scope = NewDisposeScope();
            var (logits, cache) = model.RunWithCache(tokens, includeBackward: true, metric: l => LogitDiff.Mean(l, answers));
            using (cache) _ = cache["hook_embed_grad"].sum().item<float>();
            model.Backward(tokens, l => LogitDiff.Mean(l, answers));
            model.ZeroGrad();
        }
        for (int i = 0; i < 20; i++) Iteration(); // warm-up: allocator pools, JIT
        GC.Collect(); GC.WaitForPendingFinalizers();
        long baselineTensors = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long baselineRss = Process.GetCurrentProcess().WorkingSet64;
        for (int i = 0; i < 150; i++) Iteration();
        GC.Collect(); GC.WaitForPendingFinalizers();
        long rss = Process.GetCurrentProcess().WorkingSet64;
        Assert.Equal(baselineTensors, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        Assert.True(rss <= baselineRss * 1.10, $"RSS grew from {baselineRss >> 20} MB to {rss >> 20} MB over 150 gradient iterations");
    }
}
