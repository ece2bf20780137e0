using static TorchSharp.torch;
using SharpLens.Model;

namespace SharpLens.Analysis;

/// <summary>A patching result with the clean and corrupted metrics it is read against.</summary>
/// <param name="Result">The metric after each patch.</param>
/// <param name="CleanMetric">Mean logit difference of the clean run.</param>
/// <param name="CorruptedMetric">Mean logit difference of the corrupted run.</param>
public sealed record PatchingExperimentResult(PatchingResult Result, double CleanMetric, double CorruptedMetric);

/// <summary>
/// The standard activation-patching experiment: cache the clean run, measure the mean logit difference of clean and
/// corrupted runs, then patch every index of one activation from clean into corrupted (what <c>sharplens patch</c> runs).
/// </summary>
public static class PatchingExperiment
{
    /// <summary>
    /// Runs the experiment on [batch, pos] <paramref name="cleanTokens"/> / <paramref name="corruptedTokens"/> with
    /// [batch, 2] (correct, incorrect) <paramref name="answers"/>. The result's tensor belongs to the caller's dispose scope.
    /// </summary>
    public static PatchingExperimentResult Run(HookedTransformer model, PatchKind kind, Tensor cleanTokens, Tensor corruptedTokens,
        Tensor answers, IProgress<(int Done, int Total)>? progress = null)
    {
        if (!cleanTokens.shape.SequenceEqual(corruptedTokens.shape))
            throw new SharpLensException($"Clean tokens {TensorExtensions.ShapeText(cleanTokens.shape)} and corrupted tokens " +
                $"{TensorExtensions.ShapeText(corruptedTokens.shape)} must have the same shape: patching pairs them position by position.");
        Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, answers);
        var (cleanLogits, cache) = model.RunWithCache(cleanTokens);
        using (cache)
        {
            double clean = Metric(cleanLogits).item<float>();
            double corrupted = Metric(model.Forward(corruptedTokens)).item<float>();
            var result = Patching.Run(model, kind, corruptedTokens, cache, Metric, progress);
            return new PatchingExperimentResult(result, clean, corrupted);
        }
    }
}
