using SharpLens.Analysis;
using SharpLens.Hooks;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Analysis;

public sealed class InterventionTests
{
    private static Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, Golden.Tensor("inputs.safetensors", "answer_tokens"));

    [Fact]
    public void ReadyMadeAblationsMatchTransformerLens()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        Golden.AssertClose(Golden.Tensor("hooks.safetensors", "logits_zero_ablate_head"),
            model.RunWithHooks(Golden.Tokens, [Ablations.ZeroAblateHead(1, 2)]), "zero-ablate L1H2");
        Golden.AssertClose(Golden.Tensor("hooks.safetensors", "logits_mean_ablate_mlp_out"),
            model.RunWithHooks(Golden.Tokens, [Ablations.MeanAblate("blocks.0.hook_mlp_out")]), "mean-ablate mlp_out");
        // Composed: both at once differ from either alone.
        var both = model.RunWithHooks(Golden.Tokens, [Ablations.ZeroAblateHead(1, 2), Ablations.MeanAblate("blocks.0.hook_mlp_out")]);
        Assert.True((both - Golden.Tensor("hooks.safetensors", "logits_zero_ablate_head")).abs().max().item<float>() > 1e-3);
    }

    [Theory]
    [InlineData(PatchKind.ResidPre, "act_patch_resid_pre")]
    [InlineData(PatchKind.AttnOut, "act_patch_attn_out")]
    [InlineData(PatchKind.MlpOut, "act_patch_mlp_out")]
    [InlineData(PatchKind.HeadOutAllPos, "act_patch_attn_head_out_all_pos")]
    [InlineData(PatchKind.HeadOutByPos, "act_patch_attn_head_out_by_pos")]
    public void ActivationPatchingMatchesTransformerLens(PatchKind kind, string golden)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var expected = Golden.Load("patching.safetensors");
        var corrupted = Golden.Tensor("inputs.safetensors", "corrupted_tokens");
        var (cleanLogits, clean) = model.RunWithCache(Golden.Tokens);
        using var _ = clean;
        Golden.AssertClose(expected["clean_metric"], Metric(cleanLogits), "clean metric");
        Golden.AssertClose(expected["corrupted_metric"], Metric(model.Forward(corrupted)), "corrupted metric");
        int reports = 0;
        var result = Patching.Run(model, kind, corrupted, clean, Metric, new SyncProgress(_ => reports++));
        Golden.AssertClose(expected[golden], result.Values, golden);
        Assert.Equal(result.Values.numel(), reports);
        Assert.All(model.HookPoints, p => Assert.False(p.HasHooks));
    }

    [Theory]
    [InlineData("head_all_pos")]
    [InlineData("head_by_pos")]
    [InlineData("block")]
    public void EveryBundleHasTransformerLensShapesAndPatchingCleanIntoCleanIsTheIdentity(string bundle)
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var tokens = Golden.Tokens.narrow(1, 0, 6);
        var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
        Tensor M(Tensor logits) => LogitDiff.Mean(logits, answers);
        var (logits, clean) = model.RunWithCache(tokens);
        using var _ = clean;
        float cleanMetric = M(logits).item<float>();
        var results = Patching.RunEvery(model, bundle, tokens, clean, M);
        Assert.Equal(bundle == "block" ? 3 : 5, results.Count);
        foreach (var r in results)
        {
            long[] expected = r.Axes.Count == 3 ? [2, 6, 4] : r.Axes[1] == "head" ? [2, 4] : [2, 6];
            Assert.Equal(expected, r.Values.shape);
            Assert.True((r.Values - cleanMetric).abs().max().item<float>() < 1e-5, $"{r.Kind}: patching clean into clean changed the metric");
        }
    }

    [Fact]
    public void PatchingQueriesOrPatternsMovesTheMetricTowardsClean()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var corrupted = Golden.Tensor("inputs.safetensors", "corrupted_tokens");
        var (_, clean) = model.RunWithCache(Golden.Tokens);
        using var _ = clean;
        float corruptedMetric = Metric(model.Forward(corrupted)).item<float>();
        foreach (var kind in new[] { PatchKind.HeadQAllPos, PatchKind.HeadKAllPos, PatchKind.HeadVAllPos, PatchKind.HeadPatternAllPos })
        {
            var r = Patching.Run(model, kind, corrupted, clean, Metric);
            Assert.Equal(new long[] { 2, 4 }, r.Values.shape);
            Assert.True((r.Values - corruptedMetric).abs().max().item<float>() > 1e-4, $"{kind}: no patch changed the corrupted metric");
        }
    }

    [Fact]
    public void PatchFromOnAPatternHookPatchesTheHeadAndDestinationAxes()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var corrupted = Golden.Tensor("inputs.safetensors", "corrupted_tokens");
        var (_, clean) = model.RunWithCache(Golden.Tokens);
        using var _ = clean;
        const string name = "blocks.1.attn.hook_pattern";
        Tensor? seen = null;
        model.RunWithHooks(corrupted, [Ablations.PatchFrom(clean, name, position: 5, head: 2),
            Hook.At(name, (a, _) => { seen = a.clone().MoveToOuterDisposeScope(); return null; })]);
        var (_, corrupt) = model.RunWithCache(corrupted);
        using var __ = corrupt;
        Golden.AssertClose(clean[name][.., 2, 5], seen![.., 2, 5], "patched row", 1e-7);
        Golden.AssertClose(corrupt[name][.., 1], seen[.., 1], "other head untouched");
        Golden.AssertClose(corrupt[name][.., 2, 6], seen[.., 2, 6], "other destination untouched");
        Assert.True((clean[name][.., 1] - corrupt[name][.., 1]).abs().max().item<float>() > 1e-3, "clean and corrupted must differ for this test to mean anything");
    }

    [Fact]
    public void PatchingWithMismatchedShapesIsASpecificError()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var (_, clean) = model.RunWithCache(Golden.Tokens.narrow(1, 0, 10));
        using var _ = clean;
        var e = Assert.Throws<SharpLensException>(() => Patching.Run(model, PatchKind.ResidPre, Golden.Tokens, clean, Metric));
        Assert.Contains("same batch size and length", e.Message);
        var e2 = Assert.Throws<SharpLensException>(() => model.RunWithHooks(Golden.Tokens, [Ablations.PatchFrom(clean, "blocks.0.hook_resid_pre")]));
        Assert.Contains("same shape", e2.Message);
    }

    [Fact]
    public void GreedyGenerationMatchesTransformerLensWithAndWithoutKvCache()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var g = Golden.Load("generate.safetensors");
        var input = Golden.Tensor("inputs.safetensors", "generate_input");
        var greedy = new GenerateOptions { MaxNewTokens = 6, DoSample = false, StopAtEos = false };
        var noKv = model.Generate(input, greedy with { UseKvCache = false });
        var withKv = model.Generate(input, greedy with { UseKvCache = true });
        Assert.Equal(g["generate_no_tokenizer_kv_cache_false"].data<long>().ToArray(), noKv.data<long>().ToArray());
        Assert.Equal(g["generate_with_tokenizer_kv_cache_true"].data<long>().ToArray(), withKv.data<long>().ToArray());
        Assert.Equal(g["generate_with_tokenizer_kv_cache_false"].data<long>().ToArray(), withKv.data<long>().ToArray());
        // TransformerLens v3's buggy KV path (no tokenizer) must NOT be reproduced.
        Assert.NotEqual(g["generate_no_tokenizer_kv_cache_true"].data<long>().ToArray(), withKv.data<long>().ToArray());
        using var raw = Golden.Model("none");
        Assert.Equal(g["generate_unprocessed_no_tokenizer_kv_cache_false"].data<long>().ToArray(),
            raw.Generate(input, greedy with { UseKvCache = true }).data<long>().ToArray());
    }

    [Fact]
    public void SamplingIsReproducibleAndTopKTopPRestrictTheSupport()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var input = Golden.Tensor("inputs.safetensors", "generate_input");
        var o = new GenerateOptions { MaxNewTokens = 8, StopAtEos = false, Seed = 42, Temperature = 1.5 };
        Assert.Equal(model.Generate(input, o).data<long>().ToArray(), model.Generate(input, o).data<long>().ToArray());
        Assert.NotEqual(model.Generate(input, o).data<long>().ToArray(), model.Generate(input, o with { Seed = 43 }).data<long>().ToArray());

        var top3 = model.Forward(input)[0, -1].topk(3).indexes.data<long>().ToHashSet();
        var argmax = model.Forward(input)[0, -1].argmax().item<long>();
        var seenK = new HashSet<long>(); var seenP = new HashSet<long>();
        for (int s = 0; s < 60; s++)
        {
            seenK.Add(model.Generate(input, o with { MaxNewTokens = 1, Seed = s, TopK = 3, Temperature = 5 })[0, -1].item<long>());
            seenP.Add(model.Generate(input, o with { MaxNewTokens = 1, Seed = s, TopP = 1e-6 })[0, -1].item<long>());
        }
        Assert.Subset(top3, seenK);
        Assert.True(seenK.Count > 1, "top-k sampling at high temperature should vary");
        Assert.Equal([argmax], seenP);
    }

    [Fact]
    public void HooksApplyDuringGeneration()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var input = Golden.Tensor("inputs.safetensors", "generate_input");
        var greedy = new GenerateOptions { MaxNewTokens = 6, DoSample = false, StopAtEos = false };
        var plain = model.Generate(input, greedy).data<long>().ToArray();
        using (model.Hooks(Ablations.ZeroAblate("blocks.1.hook_attn_out"), Ablations.ZeroAblate("blocks.0.hook_mlp_out")))
        {
            var ablated = model.Generate(input, greedy).data<long>().ToArray();
            var ablatedNoKv = model.Generate(input, greedy with { UseKvCache = false }).data<long>().ToArray();
            Assert.Equal(ablatedNoKv, ablated);
            Assert.NotEqual(plain, ablated);
        }
    }

    private sealed class SyncProgress(Action<(int, int)> report) : IProgress<(int Done, int Total)>
    {
        public void Report((int Done, int Total) value) => report(value);
    }
}
