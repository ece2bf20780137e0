using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// What a <see cref="WeightsCache"/> entry depends on, as one canonical JSON text (stored in the file and compared on
/// read) and a file name derived from its SHA-256:
/// <list type="bullet">
/// <item>the cache format version, the SharpLens version and build — the module version id (MVID) of SharpLens.dll, which
/// a deterministic compiler derives from the code, so any change to the processing code, even in a development build
/// that keeps the version number, is a new key — and the TorchSharp version (libtorch computes the processing);</item>
/// <item>the identity of every weight file (the shards and index too): a Hugging Face cache blob by its name, which is
/// the file's etag (its content hash), plus size; any other file by its full resolved path, size and last-write time
/// (nanosecond resolution on Linux) — cheap, and any rewrite of the file changes it;</item>
/// <item>the SHA-256 of <c>config.json</c>'s bytes and the config derived from it (without the model name);</item>
/// <item>the processing flags actually applied and the parameter dtype.</item>
/// </list>
/// </summary>
public sealed class WeightsCacheKey
{
    private WeightsCacheKey(string text)
    {
        Text = text;
        FileName = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..40] + ".safetensors";
    }

    /// <summary>The canonical key (compact JSON).</summary>
    public string Text { get; }

    /// <summary>The cache file name: 40 hex digits of the key's SHA-256 + <c>.safetensors</c>.</summary>
    public string FileName { get; }

    /// <summary>The key of loading <paramref name="folder"/>'s weights as <paramref name="config"/> with <paramref name="options"/> in <paramref name="dtype"/>.</summary>
    public static WeightsCacheKey For(string folder, HookedTransformerConfig config, ProcessingOptions options, ScalarType dtype) =>
        For(folder, config, options, dtype, Build);

    /// <summary>The running SharpLens build: its assembly's MVID (a new one whenever its code changes).</summary>
    internal static string Build { get; } = typeof(WeightsCacheKey).Assembly.ManifestModule.ModuleVersionId.ToString("N");

    /// <summary><see cref="For(string, HookedTransformerConfig, ProcessingOptions, ScalarType)"/> as the SharpLens build <paramref name="build"/> would compute it.</summary>
    internal static WeightsCacheKey For(string folder, HookedTransformerConfig config, ProcessingOptions options, ScalarType dtype, string build)
    {
        string weights = Checkpoint.FindWeights(folder) ?? throw new SharpLensException($"Model folder '{folder}' has no weights.");
        var files = new List<string> { weights };
        if (weights.EndsWith(".index.json", StringComparison.Ordinal))
            files.AddRange(Checkpoint.ReadWeightMap(weights).Values.Distinct().Order(StringComparer.Ordinal).Select(s => Path.Combine(folder, s)));
        var cfgJson = (JsonObject)JsonNode.Parse(config.ToJson())!;
        cfgJson.Remove("model_name");
        var key = new JsonObject
        {
            ["format"] = WeightsCache.FormatVersion,
            ["sharplens"] = typeof(WeightsCacheKey).Assembly.GetName().Version?.ToString(),
            ["build"] = build,
            ["torchsharp"] = typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(),
            ["weights"] = new JsonArray(files.Select(f => (JsonNode)Identity(f)).ToArray()),
            ["config_json_sha256"] = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, "config.json")))),
            ["config"] = cfgJson,
            ["processing"] = new JsonObject
            {
                ["fold_ln"] = options.FoldLayerNorm, ["center_writing_weights"] = options.CenterWritingWeights,
                ["center_unembed"] = options.CenterUnembed, ["fold_value_biases"] = options.FoldValueBiases,
            },
            ["dtype"] = ModelDtype.Name(dtype),
        };
        return new WeightsCacheKey(key.ToJsonString());
    }

    /// <summary>A weight file's identity: its Hub blob (etag) when it links into a Hugging Face cache, else path, size and time.</summary>
    private static string Identity(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) throw new SharpLensException($"Weight file '{path}' does not exist.");
        string name = Path.GetFileName(path);
        var target = info.LinkTarget is null ? info : info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? info;
        if (target.Directory?.Name == "blobs" && target.Directory.Parent?.Name.StartsWith("models--", StringComparison.Ordinal) == true)
            return $"{name} blob {target.Name} {target.Length}";
        long ns = (target.LastWriteTimeUtc - DateTime.UnixEpoch).Ticks * 100;
        return $"{name} file {target.FullName} {target.Length} {ns.ToString(CultureInfo.InvariantCulture)}";
    }
}
