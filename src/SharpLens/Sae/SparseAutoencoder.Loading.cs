using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using static TorchSharp.torch;

namespace SharpLens.Sae;

public sealed partial class SparseAutoencoder
{
    /// <summary>SAELens's file names.</summary>
    public const string ConfigFile = "cfg.json", WeightsFile = "sae_weights.safetensors", SparsityFile = "sparsity.safetensors", GemmaScopeFile = "params.npz";

    /// <summary>
    /// Loads an SAE from a folder (SAELens's <c>cfg.json</c> + <c>sae_weights.safetensors</c> [+ <c>sparsity.safetensors</c>],
    /// or Gemma Scope's <c>params.npz</c>) or from a <c>params.npz</c> file. <paramref name="hookName"/> overrides the
    /// hook the config names; Gemma Scope SAEs need it unless the path contains the Gemma Scope repository layout
    /// (<c>gemma-scope-…-res|mlp|att/…/layer_N/width_…/…</c>).
    /// </summary>
    public static SparseAutoencoder FromFolder(string path, string? hookName = null)
    {
        if (File.Exists(path) && path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase)) return FromGemmaScope(path, hookName);
        if (!Directory.Exists(path))
            throw new SharpLensException($"SAE folder '{path}' does not exist (expected a folder with {ConfigFile} + {WeightsFile}, or {GemmaScopeFile}).");
        if (File.Exists(Path.Combine(path, ConfigFile)) && File.Exists(Path.Combine(path, WeightsFile))) return FromSaeLens(path, hookName);
        if (File.Exists(Path.Combine(path, GemmaScopeFile))) return FromGemmaScope(Path.Combine(path, GemmaScopeFile), hookName);
        var has = Directory.EnumerateFileSystemEntries(path).Select(Path.GetFileName).Take(10).ToList();
        throw new SharpLensException($"'{path}' is not an SAE folder: it needs {ConfigFile} + {WeightsFile} (SAELens) or {GemmaScopeFile} (Gemma Scope); " +
            $"it has {(has.Count == 0 ? "nothing" : string.Join(", ", has))}.");
    }

    /// <summary>
    /// Loads an SAE stored in a Hugging Face repository (<paramref name="pathInRepo"/> = the SAE's folder, "" for the
    /// root) through the Hub cache shared with Python: SAELens format if the folder has <c>cfg.json</c>, else Gemma
    /// Scope's <c>params.npz</c>.
    /// </summary>
    public static SparseAutoencoder FromHub(string repoId, string pathInRepo, string? hookName = null, LoadOptions? options = null)
    {
        options ??= new LoadOptions();
        using var client = new HubClient(options.Hub ?? HubOptions.FromEnvironment());
        string prefix = pathInRepo.Trim('/').Length == 0 ? "" : pathInRepo.Trim('/') + "/";
        string? Fetch(string file, bool required)
        {
            try { return client.DownloadFileAsync(repoId, prefix + file, options.Revision, options.Progress).GetAwaiter().GetResult(); }
            catch (HubNotFoundException e) when (!required && e.Kind is HubNotFoundKind.File or HubNotFoundKind.Unknown) { return null; }
        }
        var cfg = Fetch(ConfigFile, required: false);
        if (cfg is not null)
        {
            Fetch(WeightsFile, required: true);
            Fetch(SparsityFile, required: false);
            return FromSaeLens(Path.GetDirectoryName(cfg)!, hookName);
        }
        var npz = Fetch(GemmaScopeFile, required: false)
            ?? throw new SharpLensException($"'{repoId}' has no SAE at '{pathInRepo}': neither {prefix}{ConfigFile} (SAELens) nor {prefix}{GemmaScopeFile} (Gemma Scope).");
        return FromGemmaScope(npz, hookName ?? GemmaScopeHook(repoId + "/" + prefix));
    }

    /// <summary>
    /// An SAE from a command-line style location: an existing folder or <c>.npz</c> file, else <c>org/repo[/path/in/repo]</c>
    /// on the Hugging Face Hub.
    /// </summary>
    public static SparseAutoencoder Load(string location, string? hookName = null, LoadOptions? options = null)
    {
        if (Directory.Exists(location) || File.Exists(location)) return FromFolder(location, hookName);
        var parts = location.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 2 || location.StartsWith('.') || Path.IsPathRooted(location))
            throw new SharpLensException($"SAE '{location}' is neither an existing folder nor a Hub location 'org/repo[/path/in/repo]'.");
        return FromHub(parts[0] + "/" + parts[1], string.Join('/', parts.Skip(2)), hookName, options);
    }

    private static SparseAutoencoder FromSaeLens(string folder, string? hookName)
    {
        string cfgPath = Path.Combine(folder, ConfigFile);
        var json = JsonInput.ParseFileNode(cfgPath) as JsonObject ?? throw new SharpLensException($"{cfgPath}: expected a JSON object (SAELens's cfg.json).");
        var config = SaeConfig.FromJson(json, cfgPath, hookName);
        using var scope = NewDisposeScope();
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var f = SafetensorsFile.Open(Path.Combine(folder, WeightsFile)))
            foreach (var n in f.Names) sd[n] = f.ReadCopy(n);
        DropLegacyScalingFactor(sd, folder);
        Tensor? sparsity = null;
        string sp = Path.Combine(folder, SparsityFile);
        if (File.Exists(sp))
        {
            using var f = SafetensorsFile.Open(sp);
            if (f.Contains("sparsity")) sparsity = f.ReadCopy("sparsity");
        }
        return new SparseAutoencoder(config, sd, sparsity, folder);
    }

    private static SparseAutoencoder FromGemmaScope(string npzPath, string? hookName)
    {
        string full = Path.GetFullPath(npzPath);
        hookName ??= GemmaScopeHook(full)
            ?? throw new SharpLensException($"Cannot tell which hook the Gemma Scope SAE {npzPath} belongs to: pass it explicitly (--sae-hook, e.g. " +
                "blocks.12.hook_resid_post) or keep the repository layout gemma-scope-<model>-res|mlp|att/layer_N/width_…/average_l0_….");
        using var scope = NewDisposeScope();
        var raw = NpzReader.Read(npzPath);
        var sd = raw.ToDictionary(kv => kv.Key.StartsWith("w_", StringComparison.Ordinal) ? "W_" + kv.Key[2..] : kv.Key, kv => kv.Value, StringComparer.Ordinal);
        if (!sd.TryGetValue("W_enc", out var wEnc) || wEnc.dim() != 2)
            throw new SharpLensException($"{npzPath}: a Gemma Scope params.npz needs a 2-D W_enc [d_in, d_sae]; it has {string.Join(", ", sd.Keys)}.");
        DropLegacyScalingFactor(sd, npzPath);
        int dIn = (int)wEnc.shape[0];
        if (hookName == "hook_embed")
        {
            // Gemma Scope's embedding SAEs were trained on embeddings scaled by sqrt(d_model) (SAELens's converter).
            sd["W_enc"] = sd["W_enc"] / Math.Sqrt(dIn);
            sd["W_dec"] = sd["W_dec"] * Math.Sqrt(dIn);
        }
        var config = new SaeConfig
        {
            Architecture = SaeArchitecture.JumpReLU,
            DIn = dIn,
            DSae = (int)wEnc.shape[1],
            HookName = hookName,
            ApplyBDecToInput = false,
            NormalizeActivations = "none",
            ReshapeHookZ = hookName.EndsWith("hook_z", StringComparison.Ordinal),
            Raw = new JsonObject { ["format"] = "gemma_scope_npz" },
        };
        return new SparseAutoencoder(config, sd, null, npzPath);
    }

    /// <summary>
    /// The hook of a Gemma Scope SAE from its repository path, as SAELens's Gemma Scope loader derives it: res →
    /// <c>blocks.N.hook_resid_post</c> (<c>embedding</c> → <c>hook_embed</c>), mlp → <c>blocks.N.hook_mlp_out</c>,
    /// att → <c>blocks.N.attn.hook_z</c>. Null when the path does not look like Gemma Scope.
    /// </summary>
    public static string? GemmaScopeHook(string path)
    {
        path = path.Replace('\\', '/');
        var repo = GemmaScopeRepoRe().Match(path);
        if (!repo.Success) return null;
        string kind = repo.Groups[1].Value;
        if (kind == "res" && path.Contains("/embedding", StringComparison.Ordinal)) return "hook_embed";
        var layer = LayerRe().Match(path);
        if (!layer.Success) return null;
        string l = layer.Groups[1].Value;
        return kind switch { "res" => $"blocks.{l}.hook_resid_post", "mlp" => $"blocks.{l}.hook_mlp_out", _ => $"blocks.{l}.attn.hook_z" };
    }

    /// <summary>SAELens drops a legacy all-ones <c>scaling_factor</c>; anything else would change the outputs.</summary>
    private static void DropLegacyScalingFactor(Dictionary<string, Tensor> sd, string source)
    {
        if (!sd.Remove("scaling_factor", out var s)) return;
        if (!s.to_type(ScalarType.Float32).eq(1).all().item<bool>())
            throw new SharpLensException($"{source}: has a fine-tuning scaling_factor that is not all ones; such (pre-6.0 fine-tuned) SAEs are not supported.");
    }

    [GeneratedRegex(@"gemma-scope-[^/]*?-(res|mlp|att)(?:-[^/]*)?(?:/|$)")]
    private static partial Regex GemmaScopeRepoRe();

    [GeneratedRegex(@"(?:^|/)layer_(\d+)(?:/|$)")]
    private static partial Regex LayerRe();
}
