using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>
/// One TransformerLens golden set copied into <c>fixtures/&lt;name&gt;</c> (<c>config.json</c>, weights, <c>expected/</c>
/// with <c>manifest.json</c>): loading its model per processing variant and reading its entries, with TransformerLens
/// bugs (<c>tl_bug: true</c>) told apart so tests check their Hugging Face-semantics counterparts instead.
/// </summary>
internal sealed class FamilyFixture(string name)
{
    private readonly Lazy<JsonObject> _manifest = new(() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", name, "expected", "manifest.json")))!.AsObject());

    public string Name { get; } = name;
    public string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", Name);
    public JsonObject Manifest => _manifest.Value;
    public string Expected(string file) => Path.Combine(Dir, "expected", file);

    /// <summary>Manifest entries of <paramref name="file"/>.</summary>
    public IEnumerable<JsonObject> Entries(string file) =>
        Manifest["entries"]!.AsArray().Select(e => e!.AsObject()).Where(e => e["file"]!.GetValue<string>() == file);

    /// <summary>Entry names of <paramref name="file"/> that record TransformerLens's correct behaviour (no <c>tl_bug</c>).</summary>
    public IReadOnlyList<string> Valid(string file) =>
        Entries(file).Where(e => e["tl_bug"]?.GetValue<bool>() != true).Select(e => e["name"]!.GetValue<string>()).ToList();

    public bool IsBug(string file, string entry) =>
        Entries(file).Any(e => e["name"]!.GetValue<string>() == entry && e["tl_bug"]?.GetValue<bool>() == true);

    public string Call(string file, string entry) =>
        Entries(file).First(e => e["name"]!.GetValue<string>() == entry)["call"]!.GetValue<string>();

    public bool HasFile(string file) => File.Exists(Expected(file));

    public Dictionary<string, Tensor> Load(string file)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Names.ToDictionary(n => n, n => f.Read(n));
    }

    public Tensor Input(string name)
    {
        using var f = SafetensorsFile.Open(Expected("inputs.safetensors"));
        return f.Read(name);
    }

    public IReadOnlyList<string> Strings(string key) => Manifest[key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    public IReadOnlyList<string> Labels(string key) => Manifest["labels"]![key]!.AsArray().Select(x => x!.GetValue<string>()).ToList();

    public IReadOnlyList<string> Variants => Manifest["model_variants"]!.AsObject().Select(kv => kv.Key).ToList();

    /// <summary>
    /// The weights file holding <paramref name="variant"/>: <c>weights_file</c>, else that of the variant named by
    /// <c>identical_params_to</c>, else <c>weights_&lt;variant&gt;.safetensors</c> when the set has it (sets whose manifests
    /// name no file store one per variant), else null (the set stores no weights for it).
    /// </summary>
    public string? WeightsFile(string variant)
    {
        var v = Manifest["model_variants"]![variant]!;
        if (v["weights_file"]?.GetValue<string>() is { } f) return f;
        if (v["identical_params_to"]?.GetValue<string>() is { } twin) return WeightsFile(twin);
        return HasFile($"weights_{variant}.safetensors") ? $"weights_{variant}.safetensors" : null;
    }

    /// <summary>The variant flags recorded in the manifest → our processing options.</summary>
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

    /// <summary>Whether the manifest records a TransformerLens bug for this set (<c>tl_bug</c>).</summary>
    public bool HasTlBug => Manifest["tl_bug"] is JsonObject;

    public Tensor Tensor(string file, string name)
    {
        using var f = SafetensorsFile.Open(Expected(file));
        return f.Read(name);
    }

    /// <summary>
    /// The model of a processing variant. <paramref name="asTransformerLens"/> loads it from a copy of the folder whose
    /// config.json carries TransformerLens's faulty values (<c>act_fn</c> / <c>attn_types</c> of <c>tl_config_unprocessed</c>),
    /// so the <c>tl_bug</c> entries can be matched too; without a recorded bug it is the plain model.
    /// </summary>
    public HookedTransformer Model(string variant = "processed", bool asTransformerLens = false)
    {
        if (!asTransformerLens || !HasTlBug) return HookedTransformer.FromFolder(Dir, Options(variant), Name);
        string dir = Directory.CreateTempSubdirectory($"sharplens-tl-{Name}-").FullName;
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

    public override string ToString() => Name;
}
