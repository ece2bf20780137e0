using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>
/// The bfloat16 phase of every run: the same checkpoint loaded with <c>dtype: bfloat16</c>, timed on the forward and
/// cache workloads, and its error against the float32 model on the IOI batch (logits, the seed's average logit
/// difference, the seed's DLA identity). Also the forward with libtorch's own bfloat16 GEMMs, to show why SharpLens
/// widens them to float32 on CPUs without avx512_bf16/AMX.
/// </summary>
internal static class Bf16Phase
{
    public static JsonObject Run(string folder, HookedTransformer fp32, Tensor ioi, Tensor long256, Tensor answers, int warmup, int runs, Action<string> log)
    {
        using var model = fp32.Dtype == ScalarType.BFloat16 ? null : HookedTransformer.FromPretrained(folder, dtype: ScalarType.BFloat16);
        var bf16 = model ?? fp32;
        using var reference = fp32.Dtype == ScalarType.Float32 ? null : HookedTransformer.FromPretrained(folder);
        var f32 = reference ?? fp32;
        JsonObject T(string key, Action a)
        {
            log($"bf16 {key} ...");
            var t = Measure.Time(warmup, runs, a);
            return new JsonObject { ["median_ms"] = Math.Round(t.MedianMs, 3), ["min_ms"] = Math.Round(t.RunsMs.Min(), 3) };
        }
        var j = new JsonObject
        {
            ["gemm"] = HalfGemm.Describe(ScalarType.BFloat16),
            ["forward_8x15"] = T("forward_8x15", () => Workloads.Forward(bf16, ioi)),
            ["forward_4x256"] = T("forward_4x256", () => Workloads.Forward(bf16, long256)),
            ["cache_all_4x256"] = T("cache_all_4x256", () => Workloads.RunWithCache(bf16, long256, null)),
        };
        if (!HalfGemm.Native(ScalarType.BFloat16))
        {
            Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", "native");
            try { j["forward_4x256_native_bf16_gemm"] = T("forward_4x256 (native bf16 GEMM)", () => Workloads.Forward(bf16, long256)); }
            finally { Environment.SetEnvironmentVariable("SHARPLENS_HALF_GEMM", null); }
        }

        log("bf16 error vs float32 ...");
        using var scope = NewDisposeScope();
        var l32 = f32.Forward(ioi);
        var l16 = bf16.Forward(ioi);
        j["logits_max_abs_err_vs_fp32"] = (l16 - l32).abs().max().item<float>();
        j["logits_max_abs_fp32"] = l32.abs().max().item<float>();
        double ld32 = LogitDiff.Mean(l32, answers).item<float>(), ld16 = LogitDiff.Mean(l16, answers).item<float>();
        j["avg_logit_diff_fp32"] = ld32;
        j["avg_logit_diff_abs_err_vs_fp32"] = Math.Abs(ld16 - ld32);
        var dla16 = DirectLogitAttribution.Run(bf16, ioi, answers);
        var dla32 = DirectLogitAttribution.Run(f32, ioi, answers);
        j["dla_identity_error"] = dla16.IdentityError;
        j["dla_identity_error_fp32"] = dla32.IdentityError;
        j["dla_identity_error_with_bias"] = dla16.IdentityErrorWithBias;
        return j;
    }
}
