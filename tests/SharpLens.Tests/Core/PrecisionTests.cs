using SharpLens.Analysis;
using SharpLens.Model;
using SharpLens.Tests.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

/// <summary>
/// bfloat16 / float16 models against TransformerLens's float32 golden numbers. The documented tolerance (README,
/// Precision): a bfloat16 tensor is within <see cref="Bf16Tolerance"/> × max(1, max|expected|) of the float32 value —
/// bfloat16 keeps 8 significant bits (unit roundoff 2⁻⁸ ≈ 3.9e-3), rounding the weights alone moves every layer by a
/// few of those and softmax amplifies it (measured worst: tiny-gpt2 1.5e-2, tiny-llama 4.7e-2 on hook_pattern).
/// float16 (11 bits): <see cref="Fp16Tolerance"/>.
/// </summary>
public sealed class PrecisionTests
{
    /// <summary>The bfloat16 tolerance, relative to max(1, max|expected|).</summary>
    public const double Bf16Tolerance = 5e-2;
    /// <summary>The float16 tolerance, relative to max(1, max|expected|) (measured worst 5.5e-3).</summary>
    public const double Fp16Tolerance = 1e-2;

    private static HookedTransformer Bf16() => HookedTransformer.FromFolder(Golden.Dir, Golden.Options("processed"), "tiny-gpt2", ScalarType.BFloat16);

    [Fact]
    public void Bf16LogitsAndLossMatchTransformerLensFloat32()
    {
        using var scope = NewDisposeScope();
        using var model = Bf16();
        var expected = Golden.Load("logits.safetensors");
        var both = model.Forward(Golden.Tokens, ReturnType.Both);
        Assert.Equal(ScalarType.Float32, both.Logits!.dtype); // logits are a float32 island
        Golden.AssertClose(expected["logits_processed"], both.Logits, "bf16 logits", Bf16Tolerance);
        Golden.AssertClose(expected["loss_processed"], both.Loss!, "bf16 loss", Bf16Tolerance);
        // Not trivially equal: bfloat16 really moved the numbers.
        Assert.True((both.Logits - expected["logits_processed"]).abs().max().item<float>() > 1e-4);
    }

    [Fact]
    public void Bf16CacheMatchesTransformerLensFloat32AndKeepsTheModelDtype()
    {
        using var scope = NewDisposeScope();
        using var model = Bf16();
        var (logits, cache) = model.RunWithCache(Golden.Tokens);
        using var _ = cache;
        Assert.Equal(Golden.StringList("hook_names_in_order"), cache.Keys);
        foreach (var (name, t) in Golden.Load("cache_processed.safetensors"))
        {
            Golden.AssertClose(t, cache[name], $"bf16 {name}", Bf16Tolerance);
            // float32 islands: norm statistics, attention scores, logits; everything else in the model's dtype.
            bool island = name.EndsWith("hook_scale") || name.EndsWith("hook_attn_scores") || name == "unembed.hook_out";
            Assert.True(cache[name].dtype == (island ? ScalarType.Float32 : ScalarType.BFloat16), $"{name}: {cache[name].dtype}");
        }
        Golden.AssertClose(cache["unembed.hook_out"], logits, "hook_out == logits", 0);
        using var fwd = model.Forward(Golden.Tokens);
        Golden.AssertClose(fwd, logits, "forward == cached run (fused vs unfused attention)", 1e-2);
    }

    /// <summary>ulp of a bfloat16 number near |x|: 2^(exponent − 7); below the smallest normal the subnormal spacing.</summary>
    private static Tensor UlpBf16(Tensor x)
    {
        var a = x.abs().clamp_min(1.1754944e-38f);
        return pow(2.0f, a.log2().floor() - 7);
    }

    [Fact]
    public void ProcessedBf16WeightsAreWithinOneUlpOfTheFloat32GoldenWeights()
    {
        using var scope = NewDisposeScope();
        using var model = Bf16();
        var golden = Golden.Load("weights_processed.safetensors");
        Assert.Equal(golden.Keys.Order(StringComparer.Ordinal), model.ParameterNames.Order(StringComparer.Ordinal));
        foreach (var (name, w) in golden)
        {
            var ours = model.Parameter(name);
            Assert.Equal(ScalarType.BFloat16, ours.dtype);
            // Compared as float32: |bf16(w) − w_golden| ≤ ulp_bf16(w_golden), plus the float32 processing's own
            // 1e-6·max|w| where centring cancels to near zero (there one bfloat16 ulp is far below float32 noise).
            var diff = (ours.to_type(ScalarType.Float32) - w).abs();
            var allowed = UlpBf16(w) + 1e-6 * w.abs().max().item<float>();
            var bad = (diff > allowed).sum().item<long>();
            Assert.True(bad == 0, $"{name}: {bad} of {w.numel()} entries are more than one bfloat16 ulp from the golden float32 weight (max diff {diff.max().item<float>():E3})");
            // And they are rounded, not truncated: the worst error is at most half an ulp plus float32 noise for most entries.
            Assert.True((diff <= UlpBf16(w) * 0.5 + 1e-6 * w.abs().max().item<float>()).to_type(ScalarType.Float32).mean().item<float>() > 0.99, $"{name}: not round-to-nearest");
        }
    }

    [Fact]
    public void Bf16LlamaLogitsMatchTransformerLensFloat32()
    {
        var fx = new FamilyFixture("tiny-llama");
        using var scope = NewDisposeScope();
        using var model = HookedTransformer.FromFolder(fx.Dir, fx.Options("processed"), fx.Name, ScalarType.BFloat16);
        var expected = fx.Load("logits.safetensors");
        Golden.AssertClose(expected["logits_processed"], model.Forward(fx.Input("tokens")), "tiny-llama bf16 logits", Bf16Tolerance);
        var (_, cache) = model.RunWithCache(fx.Input("tokens"));
        using (cache)
            foreach (var (name, t) in fx.Load("cache_processed.safetensors"))
                Golden.AssertClose(t, cache[name], $"tiny-llama bf16 {name}", Bf16Tolerance);
    }

    [Theory]
    [InlineData("tiny-gpt2")]
    [InlineData("tiny-llama")]
    public void Fp16LoadsAndMatchesFloat32(string fixture)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
        using var scope = NewDisposeScope();
        using var m32 = HookedTransformer.FromFolder(dir, SharpLens.Loading.ProcessingOptions.Default, fixture);
        using var m16 = HookedTransformer.FromFolder(dir, SharpLens.Loading.ProcessingOptions.Default, fixture, ScalarType.Float16);
        Assert.All(m16.StateDict.Values, t => Assert.Equal(ScalarType.Float16, t.dtype));
        var tokens = randint(0, m32.Config.DVocab, [3, 10], generator: new Generator(5));
        Golden.AssertClose(m32.Forward(tokens), m16.Forward(tokens), $"{fixture} fp16 logits", Fp16Tolerance);
        var (_, c32) = m32.RunWithCache(tokens);
        var (_, c16) = m16.RunWithCache(tokens);
        using (c32) using (c16)
            foreach (var name in c32.Keys) Golden.AssertClose(c32[name], c16[name], $"{fixture} fp16 {name}", Fp16Tolerance);
    }

    [Fact]
    public void HalfGemmPathsAgree()
    {
        // The widened float32 GEMM and libtorch's native bfloat16 GEMM compute the same products of rounded inputs.
        using var scope = NewDisposeScope();
        using var model = Bf16();
        var before = Environment.GetEnvironmentVariable("SHARPLENS_HALF_GEMM");
        try
        {
            Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", "float32");
            var widened = model.Forward(Golden.Tokens);
            Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", "native");
            var native = model.Forward(Golden.Tokens);
            Golden.AssertClose(widened, native, "float32-widened vs native bf16 GEMMs", 1e-2);
        }
        finally { Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", before); }
    }

    [Fact]
    public void Bf16DlaMatchesFloat32()
    {
        using var scope = NewDisposeScope();
        using var m32 = Golden.Model();
        using var m16 = Bf16();
        var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
        var r32 = DirectLogitAttribution.Run(m32, Golden.Tokens, answers, null, 4, 0, null);
        var r16 = DirectLogitAttribution.Run(m16, Golden.Tokens, answers, null, 4, 0, null);
        double scale = Math.Max(1, Math.Abs(r32.AvgLogitDiff));
        Assert.InRange(Math.Abs(r16.AvgLogitDiff - r32.AvgLogitDiff), 0, Bf16Tolerance * scale);
        for (int i = 0; i < r32.AccumulatedLogitDiffs.Length; i++)
            Assert.InRange(Math.Abs(r16.AccumulatedLogitDiffs[i] - r32.AccumulatedLogitDiffs[i]), 0, Bf16Tolerance * scale);
        // The seed identity still holds up to bfloat16 rounding of the cached residual stream.
        Assert.InRange(Math.Abs(r16.IdentityErrorWithBias), 0, 1e-2 * scale);
    }
}

/// <summary>ActivationCache analyses and partial forwards of a bfloat16 model, against the float32 model.</summary>
public sealed class PrecisionCacheAnalysisTests
{
    [Fact]
    public void CacheAnalysesOfABf16ModelMatchFloat32()
    {
        using var scope = NewDisposeScope();
        using var m32 = Golden.Model();
        using var m16 = HookedTransformer.FromFolder(Golden.Dir, Golden.Options("processed"), "tiny-gpt2", ScalarType.BFloat16);
        var tokens = Golden.Tokens;
        var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
        var (_, c32) = m32.RunWithCache(tokens);
        var (_, c16) = m16.RunWithCache(tokens);
        using (c32) using (c16)
        {
            void Same(Func<SharpLens.Cache.ActivationCache, Tensor> f, string what)
            {
                var e = f(c32); var a = f(c16);
                Golden.AssertClose(e, a.to_type(ScalarType.Float32), what, PrecisionTests.Bf16Tolerance);
            }
            Same(c => c.AccumulatedResid(-1, inclMid: true, applyLn: true, posSlice: -1).Stack, "accumulated_resid(apply_ln)");
            Same(c => c.DecomposeResid(-1, applyLn: true, posSlice: -1).Stack, "decompose_resid(apply_ln)");
            Same(c => c.StackHeadResults(-1, applyLn: true, posSlice: -1).Stack, "stack_head_results(apply_ln)");
            Same(c => c.StackNeuronResults(1, posSlice: -1, applyLn: true).Stack, "stack_neuron_results(apply_ln)");
            Same(c => c.GetFullResidDecomposition(-1, applyLn: true, posSlice: -1).Stack, "get_full_resid_decomposition(apply_ln)");
            Same(c => c.LogitAttrs(c.DecomposeResid(-1, posSlice: -1).Stack, answers[.., 0], answers[.., 1], posSlice: -1), "logit_attrs");
            Same(c => c.StackActivation("pattern"), "stack_activation(pattern)");
            Assert.Equal(ScalarType.Float32, c16.ApplyLnToStack(c16.AccumulatedResid(-1).Stack, -1).dtype); // DLA projections are float32
        }
        // A float32 residual stream fed to a bfloat16 model's later blocks is taken in the model's dtype.
        var resid = m32.Forward(tokens, stopAtLayer: 1);
        Golden.AssertClose(m32.Forward(resid, startAtLayer: 1), m16.Forward(resid, startAtLayer: 1), "startAtLayer", PrecisionTests.Bf16Tolerance);
    }
}

/// <summary>The widened float32 logits GEMM of half models, whole and in column blocks.</summary>
public sealed class HalfGemmTests
{
    [Fact]
    public void BlockwiseWidenedLogitsEqualTheWholeProduct()
    {
        using var scope = NewDisposeScope();
        var before = Environment.GetEnvironmentVariable("SHARPLENS_HALF_GEMM");
        Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", "float32");
        try
        {
            var gen = new Generator(3);
            long cols = Model.Components.Ops.WidenBlockElements / 32 + 777; // > one block, a ragged last block
            var x = randn([2, 5, 64], generator: gen).to_type(ScalarType.BFloat16);
            var w = randn([64, cols], generator: gen).to_type(ScalarType.BFloat16);
            var b = randn([cols], generator: gen).to_type(ScalarType.BFloat16);
            var blocked = Model.Components.Ops.AffineFloat32(x, w, b);
            Assert.Equal(ScalarType.Float32, blocked.dtype);
            Assert.Equal(new long[] { 2, 5, cols }, blocked.shape);
            var whole = x.to_type(ScalarType.Float32).matmul(w.to_type(ScalarType.Float32)) + b.to_type(ScalarType.Float32);
            Golden.AssertClose(whole, blocked, "blockwise widened GEMM", 1e-6);
        }
        finally { Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", before); }
    }
}
