using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Sae;
using static TorchSharp.torch;

namespace SharpLens.Tests.Sae;

/// <summary>The SAELens v6.18 golden data copied into fixtures/tiny-gpt2-saes.</summary>
internal static class SaeGolden
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-gpt2-saes");
    public static string Folder(string sae) => Path.Combine(Dir, sae);

    /// <summary>The seven SAELens-format folders.</summary>
    public static readonly string[] Saes =
    [
        "standard_blocks.0.hook_resid_post", "topk_blocks.1.hook_resid_pre", "jumprelu_blocks.1.hook_mlp_out",
        "gated_blocks.1.hook_resid_post", "standard_blocks.0.attn.hook_z", "standard_layer_norm_blocks.0.hook_resid_pre",
        "standard_constant_norm_rescale_blocks.1.hook_resid_mid",
    ];

    public static TheoryData<string> All => new(Saes);

    private static readonly Lazy<JsonObject> ManifestLazy =
        new(() => JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "expected", "manifest.json")))!.AsObject());
    public static JsonObject Manifest => ManifestLazy.Value;

    private static readonly Lazy<SafetensorsFile> FileLazy = new(() => SafetensorsFile.Open(Path.Combine(Dir, "expected", "sae.safetensors")));

    /// <summary>One golden tensor (a read-only view; disposed with the caller's scope).</summary>
    public static Tensor T(string name) => FileLazy.Value.Read(name);

    public static bool Has(string name) => FileLazy.Value.Contains(name);

    public static IReadOnlyList<string> Strings(JsonNode node) => node.AsArray().Select(x => x!.GetValue<string>()).ToList();

    public static string HookOf(string sae) => Manifest["saes"]![sae]!["hook_name"]!.GetValue<string>();

    public static SparseAutoencoder Load(string sae) => SparseAutoencoder.FromFolder(Folder(sae));

    public static HookedTransformer Model() => Golden.Model("processed");
}
