using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests;

/// <summary>Access to the TransformerLens golden data copied into fixtures/tiny-gpt2.</summary>
internal static class Golden
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-gpt2");
    public static string Expected(string file) => Path.Combine(Dir, "expected", file);

    private static readonly Lazy<JsonObject> ManifestLazy = new(() => JsonNode.Parse(File.ReadAllText(Expected("manifest.json")))!.AsObject());
    public static JsonObject Manifest => ManifestLazy.Value;

    /// <summary>Every tensor of a golden file (callers dispose, or use a dispose scope).</summary>
    public static Dictionary<string, Tensor> Load(string file)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Names.ToDictionary(n => n, n => f.Read(n));
    }

    public static Tensor Tensor(string file, string name)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Read(name);
    }

    public static Tensor Tokens => Tensor("inputs.safetensors", "tokens");

    public static IReadOnlyList<string> StringList(string key) =>
        Manifest[key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    /// <summary>The variant flags recorded in the manifest → our processing options.</summary>
    public static ProcessingOptions Options(string variant)
    {
        var f = Manifest["model_variants"]![variant]!["flags"]!;
        return new ProcessingOptions
        {
            FoldLayerNorm = f["fold_ln"]!.GetValue<bool>(),
            CenterWritingWeights = f["center_writing_weights"]!.GetValue<bool>(),
            CenterUnembed = f["center_unembed"]!.GetValue<bool>(),
            FoldValueBiases = f["fold_value_biases"]!.GetValue<bool>(),
        };
    }

    public static HookedTransformer Model(string variant = "processed") =>
        HookedTransformer.FromFolder(Dir, Options(variant), "tiny-gpt2");

    private static readonly Lazy<Dictionary<string, Tensor>> GradsLazy = new(() => Load("grads.safetensors").ToDictionary(kv => kv.Key, kv => kv.Value.DetachFromDisposeScope()));
    /// <summary>Every tensor of grads.safetensors, loaded once (read-only; never dispose).</summary>
    public static IReadOnlyDictionary<string, Tensor> Grads => GradsLazy.Value;

    private static readonly Lazy<JsonObject> GradsManifestLazy = new(() => JsonNode.Parse(File.ReadAllText(Expected("manifest_grads.json")))!.AsObject());
    /// <summary>manifest_grads.json.</summary>
    public static JsonObject GradsManifest => GradsManifestLazy.Value;

    /// <summary>manifest_grads.json's gradient tolerance: max|a−b| ≤ 1e-4·max|expected| + 1e-6 (relative to the tensor's own scale).</summary>
    public static void AssertGradClose(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        using var scope = NewDisposeScope();
        var e = expected.to_type(ScalarType.Float64);
        var a = actual.to_type(ScalarType.Float64);
        Assert.True(a.isfinite().all().item<bool>(), $"{what}: non-finite gradient entries");
        double tol = 1e-4 * e.abs().max().item<double>() + 1e-6;
        double diff = (e - a).abs().max().item<double>();
        Assert.True(diff <= tol, $"{what}: max |diff| {diff:E3} > tolerance {tol:E3}");
    }

    /// <summary>The manifest's tolerance: max|a−b| ≤ 1e-4·max(1, max|expected|).</summary>
    public static void AssertClose(Tensor expected, Tensor actual, string what, double rel = 1e-4)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        using var scope = NewDisposeScope();
        var e = expected.to_type(ScalarType.Float64);
        var a = actual.to_type(ScalarType.Float64);
        var finite = e.isfinite();
        Assert.True(finite.eq(a.isfinite()).all().item<bool>(), $"{what}: non-finite entries differ (e.g. -inf mask)");
        Assert.True(e.masked_select(finite.logical_not()).eq(a.masked_select(finite.logical_not())).all().item<bool>(), $"{what}: infinities differ");
        double maxExp = e.numel() == 0 ? 0 : e.masked_select(finite).abs().max().item<double>();
        double diff = e.numel() == 0 ? 0 : (e - a).masked_select(finite).abs().max().item<double>();
        double tol = rel * Math.Max(1.0, maxExp);
        Assert.True(diff <= tol, $"{what}: max |diff| {diff:E3} > tolerance {tol:E3}");
    }
}
