using SharpLens.Analysis;
using SharpLens.Cache;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Analysis;

/// <summary>The seed notebook's DLA calls against TransformerLens golden data (dla.safetensors, misc.safetensors).</summary>
public sealed class CacheAnalysisTests
{
    private static Dictionary<string, Tensor> Dla() => Golden.Load("dla.safetensors");
    private static IReadOnlyList<string> Labels(string key) => Golden.Manifest["labels"]![key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    private static Tensor Answers => Golden.Tensor("inputs.safetensors", "answer_tokens");

    [Fact]
    public void SeedNotebookQuantitiesMatch()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var g = Dla();
        var (logits, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Golden.AssertClose(g["og_logit_diff_per_prompt"], LogitDiff.PerPrompt(logits, Answers), "per prompt");
        Golden.AssertClose(g["og_logit_diff_mean"], LogitDiff.Mean(logits, Answers), "mean");
        var dirs = model.TokensToResidualDirections(Answers);
        Golden.AssertClose(g["answer_residual_directions"], dirs, "answer directions");
        var diffDirs = dirs[.., 0] - dirs[.., 1];
        Golden.AssertClose(g["logit_diff_directions"], diffDirs, "diff directions");
        var finalTok = cache["resid_post", -1][.., -1, ..];
        Golden.AssertClose(g["final_token_residual"], finalTok, "final token residual");
        var scaled = cache.ApplyLnToStack(finalTok, -1, posSlice: -1);
        Golden.AssertClose(g["scaled_final_token_residual"], scaled, "scaled");
        var proj = einsum("bd,bd->", scaled, diffDirs) / 4;
        Golden.AssertClose(g["scaled_residual_logit_diff_mean"], proj, "projection");
        var bU = (model.b_U.index_select(0, Answers[.., 0]) - model.b_U.index_select(0, Answers[.., 1])).mean();
        Golden.AssertClose(g["b_U_logit_diff_mean"], bU, "b_U term");
        // The seed's identity holds once the unembedding-bias term is added.
        double identity = proj.item<float>() + bU.item<float>() - LogitDiff.Mean(logits, Answers).item<float>();
        Assert.True(Math.Abs(identity) < 1e-5, $"identity error {identity}");
    }

    [Fact]
    public void ResidualStacksAndTheirLogitDiffsMatch()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var g = Dla();
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        var dirs = model.TokensToResidualDirections(Answers);
        var diffDirs = dirs[.., 0] - dirs[.., 1];
        Tensor Proj(Tensor s) => einsum("cbd,bd->c", s, diffDirs) / 4;

        var (acc, accLabels) = cache.AccumulatedResid(-1, inclMid: true, posSlice: -1);
        Assert.Equal(Labels("accumulated_resid"), accLabels);
        Golden.AssertClose(g["accumulated_resid"], acc, "accumulated");
        var accScaled = cache.ApplyLnToStack(acc, -1, posSlice: -1);
        Golden.AssertClose(g["accumulated_resid_scaled"], accScaled, "accumulated scaled");
        Golden.AssertClose(g["accumulated_resid_logit_diffs"], Proj(accScaled), "accumulated logit diffs");
        Golden.AssertClose(g["accumulated_resid_apply_ln_true"], cache.AccumulatedResid(-1, inclMid: true, applyLn: true, posSlice: -1).Stack, "apply_ln=True (recomputed)");

        var (dec, decLabels) = cache.DecomposeResid(-1, posSlice: -1);
        Assert.Equal(Labels("decompose_resid"), decLabels);
        Golden.AssertClose(g["decompose_resid"], dec, "decompose");
        var decScaled = cache.ApplyLnToStack(dec, -1, posSlice: -1);
        Golden.AssertClose(g["decompose_resid_scaled"], decScaled, "decompose scaled");
        Golden.AssertClose(g["decompose_resid_logit_diffs"], Proj(decScaled), "decompose logit diffs");

        var (heads, headLabels) = cache.StackHeadResults(-1, posSlice: -1);
        Assert.Equal(Labels("stack_head_results"), headLabels);
        Golden.AssertClose(g["stack_head_results"], heads, "head results");
        var headsScaled = cache.ApplyLnToStack(heads, -1, posSlice: -1);
        Golden.AssertClose(g["stack_head_results_scaled"], headsScaled, "heads scaled");
        Golden.AssertClose(g["per_head_logit_diffs"], Proj(headsScaled).reshape(2, 4), "per-head logit diffs");
        Golden.AssertClose(g["blocks.0.attn.hook_result"], cache["blocks.0.attn.hook_result"], "computed hook_result");
        Assert.False(cache.ComputeHeadResults()); // already cached: nothing recomputed

        var (full, fullLabels) = cache.GetFullResidDecomposition(-1, expandNeurons: false, applyLn: true, posSlice: -1);
        Assert.Equal(Labels("get_full_resid_decomposition"), fullLabels);
        Golden.AssertClose(g["full_resid_decomposition_scaled"], full, "full decomposition");
        Golden.AssertClose(g["full_resid_decomposition_logit_diffs"], Proj(full), "full decomposition logit diffs");

        var (d1, d1Labels) = cache.DecomposeResid(1, posSlice: -1);
        Assert.Equal(Labels("decompose_resid_layer1"), d1Labels);
        Golden.AssertClose(g["decompose_resid_layer1_scaled_ln1"], cache.ApplyLnToStack(d1, 1, posSlice: -1), "ln1 scale");
        var (d1m, d1mLabels) = cache.DecomposeResid(1, mlpInput: true, posSlice: -1);
        Assert.Equal(Labels("decompose_resid_layer1_mlp_input"), d1mLabels);
        Golden.AssertClose(g["decompose_resid_layer1_mlp_input_scaled_ln2"], cache.ApplyLnToStack(d1m, 1, mlpInput: true, posSlice: -1), "ln2 scale");

        var accAll = cache.AccumulatedResid(-1, inclMid: true).Stack;
        Golden.AssertClose(g["accumulated_resid_all_pos_scaled"], cache.ApplyLnToStack(accAll, -1), "all positions");
    }

    [Fact]
    public void LogitAttrsMatch()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var g = Dla();
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        var correct = Answers[.., 0]; var incorrect = Answers[.., 1];
        Golden.AssertClose(g["logit_attrs_decompose_resid"],
            cache.LogitAttrs(cache.DecomposeResid(-1, posSlice: -1).Stack, correct, incorrect, posSlice: -1), "decompose");
        Golden.AssertClose(g["logit_attrs_stack_head_results"],
            cache.LogitAttrs(cache.StackHeadResults(-1, posSlice: -1).Stack, correct, incorrect, posSlice: -1), "heads");
        Golden.AssertClose(g["logit_attrs_accumulated_resid_correct_only"],
            cache.LogitAttrs(cache.AccumulatedResid(-1, inclMid: true, posSlice: -1).Stack, correct, posSlice: -1), "accumulated, correct only");
    }

    [Fact]
    public void MiscMatches()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var misc = Golden.Load("misc.safetensors");
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Golden.AssertClose(misc["stack_activation.resid_post"], cache.StackActivation("resid_post"), "stack_activation");
        Golden.AssertClose(misc["accumulated_resid.default"], cache.AccumulatedResid().Stack, "accumulated default");
        Golden.AssertClose(misc["model.accumulated_bias.final"], model.AccumulatedBias(2), "accumulated bias");
    }

    [Fact]
    public void DecompositionsSumToTheResidualStream()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        var final = cache["blocks.1.hook_resid_post"];
        Golden.AssertClose(final, cache.DecomposeResid(-1).Stack.sum(0L), "decompose sums", 1e-5);
        Golden.AssertClose(final, cache.GetFullResidDecomposition(-1, expandNeurons: true).Stack.sum(0L), "full (neurons) sums", 1e-5);
        var withRemainder = cache.StackNeuronResults(1, inclRemainder: true);
        Golden.AssertClose(cache["resid_pre", 1], withRemainder.Stack.sum(0L), "neurons + remainder", 1e-5);
        Assert.Equal("L0N0", withRemainder.Labels[0]);
        Assert.Equal("remainder", withRemainder.Labels[^1]);
        var someNeurons = cache.StackNeuronResults(1, neuronSlice: Slice.FromList(3, 7));
        Assert.Equal(["L0N3", "L0N7"], someNeurons.Labels);
        Golden.AssertClose(cache.GetNeuronResults(0, neuronSlice: 7), someNeurons.Stack[1], "single neuron");
    }

    [Fact]
    public void IndexingByAliasLayerAndShortForm()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Assert.Same(cache["blocks.1.hook_resid_post"], cache["resid_post", -1]);
        Assert.Same(cache["blocks.0.attn.hook_pattern"], cache["pattern0"]);
        Assert.Same(cache["blocks.1.attn.hook_q"], cache["q", 1, "attn"]);
        Assert.Same(cache["blocks.0.ln2.hook_scale"], cache["scale", 0, "ln2"]);
        Assert.Same(cache["hook_embed"], cache["embed"]);
        Assert.Same(cache["blocks.0.mlp.hook_post"], cache["post", 0]);
        Assert.Equal(40, cache.Count);
        Assert.Equal(40, cache.Count());
    }

    [Fact]
    public void ErrorsAreSpecific()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Assert.Contains("Did you mean 'resid_post'", Assert.Throws<SharpLensException>(() => cache["resid_postt", 0]).Message);
        Assert.Contains("out of range", Assert.Throws<SharpLensException>(() => cache["resid_post", 2]).Message);
        Assert.Contains("out of range", Assert.Throws<SharpLensException>(() => cache["resid_post", -3]).Message);
        Assert.Contains("out of range", Assert.Throws<SharpLensException>(() => cache.AccumulatedResid(5)).Message);
        var stack = cache.DecomposeResid(-1).Stack;                 // all positions: does not fit pos_slice=-1
        var fit = Assert.Throws<SharpLensException>(() => cache.ApplyLnToStack(stack, -1, posSlice: -1));
        Assert.Contains("does not fit", fit.Message);
        var (_, partial) = model.RunWithCache(Golden.Tokens, n => n.EndsWith("resid_post"));
        using var __ = partial;
        var missing = Assert.Throws<SharpLensException>(() => partial.ApplyLnToStack(partial["resid_post", -1].unsqueeze(0), -1));
        Assert.Contains("'ln_final.hook_scale'", missing.Message);
    }
}

public sealed class CircuitTests
{
    [Fact]
    public void QkAndOvCircuitsEqualExplicitProducts()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        using var qk = model.QK;
        using var ov = model.OV;
        Assert.Equal(new long[] { 2, 4, 64, 64 }, qk.Shape);
        var wq = model.Parameter("blocks.1.attn.W_Q")[2]; var wk = model.Parameter("blocks.1.attn.W_K")[2];
        Golden.AssertClose(wq.matmul(wk.t()), qk.AB[1, 2], "QK L1H2", 1e-5);
        var wv = model.Parameter("blocks.0.attn.W_V")[3]; var wo = model.Parameter("blocks.0.attn.W_O")[3];
        Golden.AssertClose(wv.matmul(wo), ov.AB[0, 3], "OV L0H3", 1e-5);
        Assert.Equal(new long[] { 2, 4, 16 }, ov.S.shape); // rank ≤ d_head
    }
}
