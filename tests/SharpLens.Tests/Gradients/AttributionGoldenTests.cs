using SharpLens.Analysis;
using SharpLens.Gradients;
using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Tests.Gradients;

/// <summary>Attribution patching and integrated gradients against TransformerLens-derived golden data.</summary>
public sealed class AttributionGoldenTests
{
    private static readonly Tensor Answers = Golden.Tensor("inputs.safetensors", "answer_tokens").DetachFromDisposeScope();
    private static Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, Answers);

    public static TheoryData<PatchKind, string> Kinds => new()
    {
        { PatchKind.ResidPre, "resid_pre" }, { PatchKind.AttnOut, "attn_out" }, { PatchKind.MlpOut, "mlp_out" },
        { PatchKind.HeadOutAllPos, "attn_head_out_all_pos" }, { PatchKind.HeadOutByPos, "attn_head_out_by_pos" },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void AttributionMatchesTransformerLensInBothDirectionsAndComparesWithExactPatching(PatchKind kind, string golden)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var clean = Golden.Tokens;
        var corrupted = Golden.Tensor("inputs.safetensors", "corrupted_tokens");
        foreach (var (direction, dir) in new[] { (PatchDirection.Denoising, "denoising"), (PatchDirection.Noising, "noising") })
        {
            var r = AttributionPatching.Run(model, [kind], clean, corrupted, Metric, direction).Single();
            Golden.AssertClose(Golden.Grads[$"attr_patch.{dir}.{golden}"], r.Delta, $"attr_patch.{dir}.{golden}");
            var baseMetric = Golden.Grads[direction == PatchDirection.Denoising ? "corrupted_metric" : "clean_metric"];
            Golden.AssertClose(baseMetric, tensor(r.BaseMetric), "base metric");
            Golden.AssertClose(Golden.Grads[$"attr_patch.{dir}.{golden}"] + baseMetric, r.Values, "values = base + delta");

            // Exact patching in the same direction has the same shape and axes, cell by cell.
            var (_, source) = model.RunWithCache(direction == PatchDirection.Denoising ? clean : corrupted);
            using var s = source;
            var exact = Patching.Run(model, kind, direction == PatchDirection.Denoising ? corrupted : clean, source, Metric);
            Golden.AssertClose(Golden.Grads[$"act_patch.{dir}.{golden}"], exact.Values, $"act_patch.{dir}.{golden}");
            Assert.Equal(exact.Axes, r.Axes);
            var cmp = PatchComparison.Of(exact.Values, r.Values);
            double pearson = Golden.GradsManifest["sanity_checks"]![$"attr_vs_act_patch_{dir}_{golden}_pearson"]!.GetValue<double>();
            double maxDiff = Golden.GradsManifest["sanity_checks"]![$"attr_vs_act_patch_{dir}_{golden}_max_abs_diff"]!.GetValue<double>();
            Assert.InRange(cmp.Pearson, pearson - 1e-4, pearson + 1e-4);
            Assert.InRange(cmp.MaxAbsDiff, maxDiff - 1e-4, maxDiff + 1e-4);
        }
        Assert.All(model.HookPoints, p => Assert.False(p.HasHooks));
    }

    [Theory]
    [InlineData(PatchKind.HeadQAllPos)]
    [InlineData(PatchKind.HeadKByPos)]
    [InlineData(PatchKind.HeadVAllPos)]
    [InlineData(PatchKind.HeadPatternByDestPos)]
    public void QkvPatternAttributionIsTheDirectionalDerivativeOfThePatch(PatchKind kind)
    {
        // No golden counterpart: check the estimate against a central difference of the patched run,
        // f(t) = metric(base + t·(source − base) on the largest cell), (f(t) − f(−t)) / 2t.
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var clean = Golden.Tokens;
        var corrupted = Golden.Tensor("inputs.safetensors", "corrupted_tokens");
        var r = AttributionPatching.Run(model, [kind], clean, corrupted, Metric).Single();
        var (_, source) = model.RunWithCache(clean);
        using var s = source;
        var exact = Patching.Run(model, kind, corrupted, source, Metric);
        Assert.Equal(exact.Values.shape, r.Values.shape);
        long flat = r.Delta.abs().flatten().argmax().item<long>();
        var index = Unravel(flat, r.Delta.shape);
        int layer = (int)index[0];
        int? pos = r.Axes.Count == 3 ? (int)index[1] : null;
        int head = (int)index[^1];
        string hook = $"blocks.{layer}.attn.hook_{(kind == PatchKind.HeadPatternByDestPos ? "pattern" : kind.ToString()[4..5].ToLowerInvariant())}";
        float F(float t) => Metric(model.RunWithHooks(corrupted, [Hook.At(hook, (act, _) =>
        {
            var src = source[hook];
            var mask = zeros_like(act);
            bool headFirst = hook.EndsWith("pattern");
            TensorIndex P = pos is { } p ? p : TensorIndex.Colon;
            if (headFirst) mask[TensorIndex.Colon, head, P] = 1; else mask[TensorIndex.Colon, P, head] = 1;
            return act + t * mask * (src - act);
        })])).item<float>();
        const float t = 0.05f;
        double derivative = (F(t) - F(-t)) / (2 * t);
        double estimate = r.Delta.flatten()[flat].item<float>();
        Assert.True(Math.Abs(derivative - estimate) <= 2e-3 * Math.Max(1, Math.Abs(estimate)),
            $"{kind}: attribution {estimate} vs central difference {derivative}");
    }

    private static long[] Unravel(long flat, long[] shape)
    {
        var idx = new long[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { idx[i] = flat % shape[i]; flat /= shape[i]; }
        return idx;
    }

    [Theory]
    [InlineData("token_embed", "hook_embed")]
    [InlineData("resid_input", "blocks.0.hook_resid_pre")]
    public void IntegratedGradientsMatchTheGoldenRiemannMidpointRun(string convention, string hook)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var ig = IntegratedGradients.Run(model, Golden.Tokens, l => LogitDiff.PerPrompt(l, Answers), steps: 20, hookName: hook);
        string p = $"ig.{convention}.";
        Golden.AssertClose(Golden.Grads["ig.alphas"], ig.Alphas, "alphas");
        Golden.AssertClose(Golden.Grads[p + "step_metric_per_prompt"], ig.StepMetricPerPrompt, p + "step metrics");
        Golden.AssertClose(Golden.Grads[p + "metric_input_per_prompt"], ig.MetricInputPerPrompt, p + "input metric");
        Golden.AssertClose(Golden.Grads[p + "metric_baseline_per_prompt"], ig.MetricBaselinePerPrompt, p + "baseline metric");
        Golden.AssertGradClose(Golden.Grads[p + "mean_grad"], ig.MeanGrad, p + "mean_grad");
        Golden.AssertClose(Golden.Grads[p + "attributions_per_dim"], ig.AttributionsPerDim, p + "attributions_per_dim");
        Golden.AssertClose(Golden.Grads[p + "attributions"], ig.Attributions, p + "attributions");
        double expectedGap = Golden.Grads[p + "attributions"].sum().item<float>()
            - (Golden.Grads[p + "metric_input_per_prompt"].mean().item<float>() - Golden.Grads[p + "metric_baseline_per_prompt"].mean().item<float>());
        Assert.InRange(ig.CompletenessGap, expectedGap - 1e-3, expectedGap + 1e-3);
        Assert.All(model.HookPoints, hp => Assert.False(hp.HasHooks));
    }

    [Fact]
    public void MoreStepsShrinkTheTokenEmbeddingCompletenessGap()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var tokens = Golden.Tokens.narrow(0, 0, 1);
        var answers = Answers.narrow(0, 0, 1);
        double Gap(int steps) => Math.Abs(IntegratedGradients.Run(model, tokens, l => LogitDiff.PerPrompt(l, answers), steps).CompletenessGap);
        Assert.True(Gap(80) < Gap(5) / 10, $"gap(80) = {Gap(80)}, gap(5) = {Gap(5)}");
        Assert.Contains("at least 1 step", Assert.Throws<SharpLensException>(() => IntegratedGradients.Run(model, tokens, l => LogitDiff.PerPrompt(l, answers), 0)).Message);
    }
}
