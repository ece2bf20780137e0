using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>
/// The floating-point types a model's parameters and activations may use (TransformerLens's <c>cfg.dtype</c>):
/// float32, bfloat16 and float16, with their names as the CLI and JSON outputs spell them.
/// </summary>
public static class ModelDtype
{
    /// <summary>Names of the allowed dtypes, in the order help lists them.</summary>
    public static readonly IReadOnlyList<string> Names = ["float32", "bfloat16", "float16"];

    private static readonly Dictionary<string, ScalarType> ByName = new(StringComparer.OrdinalIgnoreCase)
    {
        ["float32"] = ScalarType.Float32, ["fp32"] = ScalarType.Float32, ["float"] = ScalarType.Float32,
        ["bfloat16"] = ScalarType.BFloat16, ["bf16"] = ScalarType.BFloat16,
        ["float16"] = ScalarType.Float16, ["fp16"] = ScalarType.Float16, ["half"] = ScalarType.Float16,
    };

    /// <summary>Whether a model may use <paramref name="dtype"/>.</summary>
    public static bool IsAllowed(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>Throws a <see cref="SharpLensException"/> naming the allowed dtypes unless <paramref name="dtype"/> is one of them.</summary>
    public static ScalarType Check(ScalarType dtype, string what = "dtype") => IsAllowed(dtype) ? dtype
        : throw new SharpLensException($"Invalid {what} {dtype}: a model's dtype must be one of {string.Join(", ", Names)} (ScalarType.Float32, BFloat16, Float16).");

    /// <summary>The name of an allowed dtype: <c>float32</c>, <c>bfloat16</c> or <c>float16</c>.</summary>
    public static string Name(ScalarType dtype) => Check(dtype) switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

    /// <summary>Parses <c>float32|bfloat16|float16</c> (also <c>fp32</c>, <c>bf16</c>, <c>fp16</c>, <c>float</c>, <c>half</c>; any case).</summary>
    public static ScalarType Parse(string text) =>
        ByName.TryGetValue(text.Trim(), out var t) ? t
        : throw new SharpLensException($"Unknown dtype '{text}'. Allowed: {string.Join(", ", Names)} (or fp32, bf16, fp16)." +
            NameSuggestions.DidYouMean(text, ByName.Keys));
}
