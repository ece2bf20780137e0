using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>
/// One golden fixture folder (<c>fixtures/tiny-*</c>): its manifest, expected tensors, and models built from it —
/// with the real model's config.json, or with the config.json TransformerLens effectively used where the manifest
/// flags a TransformerLens bug (<c>tl_bug</c>), so TransformerLens's own outputs can be matched too.
/// </summary>
internal sealed class GoldenSet(string name)
{
    public string Name { get; } = name;
    public string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", Name);
    public string Expected(string file) => Path.Combine(Dir, "expected", file);
    public bool Has(string file) => File.Exists(Expected(file));

    private JsonObject? _manifest;
    public JsonObject Manifest => _manifest ??= JsonNode.Parse(File.ReadAllText(Expected("manifest.json")))!.AsObject();

    /// <summary>Whether the manifest records a TransformerLens bug for this set.</summary>
    public bool HasTlBug => Manifest["tl_bug"] is JsonObject;

    public IEnumerable<JsonObject> Entries(string file) =>
        Manifest["entries"]!.AsArray().Select(e => e!.AsObject()).Where(e => e["file"]!.GetValue<string>() == file);

    public static bool IsTlBug(JsonObject entry) => entry["tl_bug"] is JsonValue v && v.GetValue<bool>();

    public Dictionary<string, Tensor> Load(string file)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Names.ToDictionary(n => n, n => f.Read(n));
    }

    public Tensor Tensor(string file, string name)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Read(name);
    }

    public Tensor Input(string name) => Tensor("inputs.safetensors", name);

    public IReadOnlyList<string> StringList(string key) => Manifest[key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    public IReadOnlyList<string> Labels(string key) => Manifest["labels"]![key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    public ProcessingOptions Options(string variant)
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

    /// <summary>
    /// The model of a processing variant. <paramref name="asTransformerLens"/> loads it from a copy of the folder whose
    /// config.json carries TransformerLens's faulty values (its <c>act_fn</c> / <c>attn_types</c> from
    /// <c>tl_config_unprocessed</c>) — only meaningful for sets with <see cref="HasTlBug"/>.
    /// </summary>
    public HookedTransformer Model(string variant = "processed", bool asTransformerLens = false)
    {
        if (!asTransformerLens || !HasTlBug) return HookedTransformer.FromFolder(Dir, Options(variant), Name);
        string dir = Path.Combine(Path.GetTempPath(), $"sharplens-tl-{Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "config.json")))!.AsObject();
            var tl = Manifest["tl_config_unprocessed"]!.AsObject();
            config["hidden_activation"] = tl["act_fn"]!.GetValue<string>();
            if (tl["attn_types"] is JsonArray types)
                config["layer_types"] = new JsonArray(types.Select(t => (JsonNode?)(t!.GetValue<string>() == "local" ? "sliding_attention" : "full_attention")).ToArray());
            File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
            File.Copy(Path.Combine(Dir, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
            return HookedTransformer.FromFolder(dir, Options(variant), Name);
        }
        finally { Directory.Delete(dir, true); }
    }
}
