using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>
/// How bfloat16/float16 matrix products run. A native half GEMM and "widen the operands, float32 GEMM, round the
/// result" give the same numbers up to the accumulation order (both multiply the rounded inputs exactly and accumulate in
/// float32), so this is a speed choice only. Without avx512_bf16/AMX the native bfloat16 GEMM is emulated (measured
/// 2.3–3.4× slower than float32 on this machine) and libtorch's float16 GEMM runs at ~1 GFLOP/s, so by default the
/// widened path is used unless the CPU advertises native support. <c>SHARPLENS_HALF_GEMM=native|float32</c> overrides.
/// </summary>
public static class HalfGemm
{
    private static readonly Lazy<string> Flags = new(() =>
    {
        try { return File.Exists("/proc/cpuinfo") ? File.ReadAllText("/proc/cpuinfo") : ""; }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    });
    private static readonly Lazy<bool> Bf16 = new(() => HasFlag("avx512_bf16") || HasFlag("amx_bf16"));
    private static readonly Lazy<bool> Fp16 = new(() => HasFlag("avx512_fp16") || HasFlag("amx_fp16"));

    private static bool HasFlag(string flag) => Flags.Value.Split((char[])[' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries).Contains(flag);

    /// <summary>Whether GEMMs of <paramref name="dtype"/> run natively (else widened to float32).</summary>
    public static bool Native(ScalarType dtype) => Environment.GetEnvironmentVariable("SHARPLENS_HALF_GEMM") switch
    {
        "native" => true,
        "float32" => false,
        _ => dtype switch { ScalarType.BFloat16 => Bf16.Value, ScalarType.Float16 => Fp16.Value, _ => true },
    };

    /// <summary><c>native</c> or <c>float32</c>: how <paramref name="dtype"/> GEMMs run on this machine (for reports).</summary>
    public static string Describe(ScalarType dtype) => Native(dtype) ? "native" : "float32";
}
