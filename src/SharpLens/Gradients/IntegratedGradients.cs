using SharpLens.Hooks;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Gradients;

/// <summary>Integrated-gradients attribution of a metric to the activation at one hook point.</summary>
/// <param name="HookName">The interpolated activation (<c>hook_embed</c>: token embedding, positions kept).</param>
/// <param name="Attributions">Per position [batch, pos]: the per-dimension attributions summed over the last axis.</param>
/// <param name="AttributionsPerDim">(x − baseline) · mean gradient, the activation's shape.</param>
/// <param name="MeanGrad">Gradient of the metric at the interpolated inputs, averaged over the steps.</param>
/// <param name="Alphas">Interpolation points (k + 0.5) / steps.</param>
/// <param name="StepMetricPerPrompt">[steps, batch] per-prompt metric at each interpolation point.</param>
/// <param name="MetricInputPerPrompt">[batch] per-prompt metric of the real input.</param>
/// <param name="MetricBaselinePerPrompt">[batch] per-prompt metric with the activation zeroed.</param>
/// <param name="CompletenessGap">Σ attributions − (metric(input) − metric(baseline)), metric = the mean over prompts; 0 for exact integration.</param>
public sealed record IntegratedGradientsResult(string HookName, Tensor Attributions, Tensor AttributionsPerDim, Tensor MeanGrad, Tensor Alphas,
    Tensor StepMetricPerPrompt, Tensor MetricInputPerPrompt, Tensor MetricBaselinePerPrompt, double CompletenessGap);

/// <summary>
/// Integrated gradients (Sundararajan et al.) with a zero baseline at any hook point, by the Riemann midpoint rule:
/// the activation is scaled by α = (k + 0.5) / steps and the gradient there is averaged. The metric differentiated
/// is the mean over prompts of <c>perPromptMetric</c>, so each prompt's attributions carry a 1/batch factor (as
/// TransformerLens-based golden data does); for a single prompt they are in metric units.
/// </summary>
public static class IntegratedGradients
{
    /// <summary>Runs integrated gradients. <paramref name="perPromptMetric"/> maps logits to [batch].</summary>
    public static IntegratedGradientsResult Run(HookedTransformer model, Tensor tokens, Func<Tensor, Tensor> perPromptMetric,
        int steps = 20, string hookName = "hook_embed")
    {
        if (steps < 1) throw new SharpLensException($"Integrated gradients needs at least 1 step, got {steps}.");
        model.GetHookPoint(hookName); // unknown names fail with suggestions
        Tensor Mean(Tensor logits) => perPromptMetric(logits).mean();
        using var scope = NewDisposeScope();
        var (logits, cache) = model.RunWithCache(tokens, [hookName]);
        using var c = cache;
        var input = Model.Components.Ops.Up(cache[hookName]).clone(); // sums in float32 whatever the model's dtype
        var inputMetric = perPromptMetric(logits);
        var baselineMetric = perPromptMetric(model.RunWithHooks(tokens, [Hook.At(hookName, (a, _) => a * 0)]));
        var alphas = (arange(steps, dtype: ScalarType.Float32) + 0.5f) / steps;
        var gradSum = zeros_like(input);
        var stepMetrics = new List<Tensor>();
        for (int k = 0; k < steps; k++)
        {
            using var step = NewDisposeScope();
            float alpha = alphas[k].item<float>();
            Tensor? grad = null;
            var stepLogits = model.RunWithHooks(tokens,
            [
                Hook.At(hookName, (a, _) => a * alpha),
                Hook.Backward(hookName, (g, _) => { grad = g.clone().DetachFromDisposeScope(); return null; }), // outlives the run's scope
            ], metric: Mean);
            using (grad) gradSum.add_(grad!);
            stepMetrics.Add(perPromptMetric(stepLogits).MoveToOuterDisposeScope());
        }
        var meanGrad = gradSum / steps;
        var perDim = input * meanGrad;
        var attributions = perDim.sum(-1);
        if (attributions.dim() > 2) attributions = attributions.flatten(2).sum(-1); // head-indexed hooks: per (batch, pos)
        double gap = perDim.sum().item<float>() - ((double)inputMetric.mean().item<float>() - baselineMetric.mean().item<float>());
        return new IntegratedGradientsResult(hookName, attributions.MoveToOuterDisposeScope(), perDim.MoveToOuterDisposeScope(),
            meanGrad.MoveToOuterDisposeScope(), alphas.MoveToOuterDisposeScope(), stack(stepMetrics).MoveToOuterDisposeScope(),
            inputMetric.MoveToOuterDisposeScope(), baselineMetric.MoveToOuterDisposeScope(), gap);
    }
}
