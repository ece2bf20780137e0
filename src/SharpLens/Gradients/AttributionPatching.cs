using SharpLens.Analysis;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Gradients;

/// <summary>Which way a patch goes.</summary>
public enum PatchDirection
{
    /// <summary>Clean activations into the corrupted run; the change estimates how much each part restores (what <c>sharplens patch</c> does).</summary>
    Denoising,
    /// <summary>Corrupted activations into the clean run; the change estimates how much each part breaks.</summary>
    Noising,
}

/// <summary>
/// Result of attribution patching, shaped exactly like the exact sweep (<see cref="PatchingResult"/>) so the two
/// compare cell by cell.
/// </summary>
/// <param name="Kind">What was patched.</param>
/// <param name="Direction">Denoising or noising.</param>
/// <param name="Axes">Axis names of the tensors, as in exact patching.</param>
/// <param name="Values">Estimated metric after each patch: <see cref="BaseMetric"/> + <see cref="Delta"/>.</param>
/// <param name="Delta">First-order change of the metric, (source − base activation) · d metric / d activation.</param>
/// <param name="BaseMetric">Metric of the run being patched (corrupted run for denoising, clean run for noising).</param>
public sealed record AttributionResult(PatchKind Kind, PatchDirection Direction, IReadOnlyList<string> Axes, Tensor Values, Tensor Delta, float BaseMetric)
{
    /// <summary>The same numbers as a <see cref="PatchingResult"/> (values = estimated metric after the patch).</summary>
    public PatchingResult ToPatchingResult() => new(Kind, Axes, Values);
}

/// <summary>How well attribution patching tracks exact patching over the cells of one kind.</summary>
/// <param name="Pearson">Pearson correlation of the two value tensors (NaN when either is constant).</param>
/// <param name="MaxAbsDiff">Largest |exact − attribution| over the cells.</param>
public sealed record PatchComparison(double Pearson, double MaxAbsDiff)
{
    /// <summary>Compares exact patching values with attribution estimates of the same shape.</summary>
    public static PatchComparison Of(Tensor exact, Tensor attribution)
    {
        if (!exact.shape.SequenceEqual(attribution.shape))
            throw new SharpLensException($"Cannot compare patching results of shapes {TensorExtensions.ShapeText(exact.shape)} and {TensorExtensions.ShapeText(attribution.shape)}.");
        using var scope = NewDisposeScope();
        var a = exact.to_type(ScalarType.Float64).flatten();
        var b = attribution.to_type(ScalarType.Float64).flatten();
        var da = a - a.mean();
        var db = b - b.mean();
        double denom = Math.Sqrt(da.pow(2).sum().item<double>() * db.pow(2).sum().item<double>());
        double r = denom == 0 ? double.NaN : (da * db).sum().item<double>() / denom;
        return new PatchComparison(r, (a - b).abs().max().item<double>());
    }
}

/// <summary>
/// Attribution patching: a first-order estimate of every cell of an activation-patching sweep from one forward
/// pass with gradients on the patched run and one cached forward pass of the source run, instead of one forward
/// pass per cell. The estimate is (source − base) · d metric / d activation, summed over the batch and the axes the
/// patch covers.
/// </summary>
public static class AttributionPatching
{
    /// <summary>
    /// Estimates the given patching kinds. <paramref name="metric"/> maps logits to a scalar (the mean over prompts,
    /// as for exact patching). Clean and corrupted tokens must have the same shape.
    /// </summary>
    public static IReadOnlyList<AttributionResult> Run(HookedTransformer model, IEnumerable<PatchKind> kinds, Tensor cleanTokens,
        Tensor corruptedTokens, Func<Tensor, Tensor> metric, PatchDirection direction = PatchDirection.Denoising)
    {
        var kindList = kinds.Distinct().ToList();
        if (!cleanTokens.shape.SequenceEqual(corruptedTokens.shape))
            throw new SharpLensException($"Attribution patching needs clean and corrupted tokens of the same shape; got {TensorExtensions.ShapeText(cleanTokens.shape)} " +
                $"and {TensorExtensions.ShapeText(corruptedTokens.shape)}.");
        var hooks = kindList.SelectMany(k => Enumerable.Range(0, model.Config.NLayers).Select(l => $"blocks.{l}.{Patching.Describe(k).Hook}"))
            .Distinct().ToList();
        var (baseTokens, sourceTokens) = direction == PatchDirection.Denoising ? (corruptedTokens, cleanTokens) : (cleanTokens, corruptedTokens);
        using var scope = NewDisposeScope();
        var (baseLogits, baseCache) = model.RunWithCache(baseTokens, hooks, includeBackward: true, metric: metric);
        using var b = baseCache;
        var (_, sourceCache) = model.RunWithCache(sourceTokens, hooks);
        using var s = sourceCache;
        float baseMetric = metric(baseLogits).item<float>();
        var results = new List<AttributionResult>();
        foreach (var kind in kindList)
        {
            var (hook, axes) = Patching.Describe(kind);
            var perLayer = new List<Tensor>();
            for (int l = 0; l < model.Config.NLayers; l++)
            {
                string name = $"blocks.{l}.{hook}";
                var product = (sourceCache[name] - baseCache[name]) * baseCache[name + "_grad"];
                // -inf − -inf and -inf · 0 are NaN where attention is masked: those entries carry no attribution.
                product = product.nan_to_num(0.0, 0.0, 0.0);
                perLayer.Add(Reduce(product, hook, axes));
            }
            var delta = stack(perLayer).to_type(ScalarType.Float32);
            results.Add(new AttributionResult(kind, direction, axes, (delta + baseMetric).MoveToOuterDisposeScope(), delta.MoveToOuterDisposeScope(), baseMetric));
        }
        return results;
    }

    /// <summary>Sums a [batch, ...] attribution product down to one layer's cells of <paramref name="axes"/>.</summary>
    private static Tensor Reduce(Tensor product, string hook, string[] axes)
    {
        bool pattern = hook == "attn.hook_pattern";
        bool byPos = axes.Length == 3, byHead = axes.Contains("head");
        if (!byHead) return product.sum([0, 2]);                           // [b, pos, d] → [pos]
        if (pattern) return byPos ? product.sum([0, 3]).transpose(0, 1)    // [b, h, dest, src] → [dest, h]
                                  : product.sum([0, 2, 3]);                // → [h]
        return byPos ? product.sum([0, 3]) : product.sum([0, 1, 3]);       // [b, pos, h, dh] → [pos, h] or [h]
    }
}
