using System.Text;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using SharpLens.Model;
using SharpLens.Sae;
using SharpLens.Tests.Sae;
using SharpLens.Tokenization;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// Damaged SentencePiece and tiktoken <c>tokenizer.model</c> files, the JSON files beside a tokenizer
/// (<c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>, <c>added_tokens.json</c>), SAE folders (cfg.json and
/// sae_weights.safetensors) and Hub cache snapshots whose files are symbolic links into blobs/. Seeds are fixed.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class TokenizerSaeFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("fuzz-tok-");
    public void Dispose() => Directory.Delete(_dir, true);

    private static string Fixture(params string[] parts) => Path.Combine([Golden.Dir, "..", .. parts]);

    private static void Use(ITokenizer? t)
    {
        if (t is null) return;
        foreach (var s in new[] { "Hello world, ünïcödé 123!", " <s> a  b\n\tc </s>", "" })
            t.Decode(TextEncoding.ToTokenIds(t, s, prependBos: t.BosTokenId is not null));
    }

    /// <summary>Damage near the start (the first pieces) or in the last 2 KB (trainer and normalizer specs) of a big file.</summary>
    private static byte[] HeadOrTail(Mutator m, byte[] valid, out string what)
    {
        if (m.Rng.Next(2) == 0) return m.Bytes(valid, out what, hot: 4096);
        int cut = valid.Length - 2048;
        var tail = m.Bytes(valid[cut..], out what);
        what = "tail:" + what;
        return [.. valid[..cut], .. tail];
    }

    [Fact]
    public void SentencePieceModel()
    {
        var valid = File.ReadAllBytes(Fixture("tokenizers", "llama2", "tokenizer.model"));
        string path = Path.Combine(_dir, "tokenizer.model");
        Fuzzer.Run("SentencePiece tokenizer.model", seed: 61, iterations: 40, m =>
        {
            File.WriteAllBytes(path, HeadOrTail(m, valid, out var what));
            return (what, "tokenizer.model");
        }, () => Use(TokenizerLoader.FromModelFile(path)), output);
    }

    [Fact]
    public void TiktokenModel()
    {
        var valid = File.ReadAllBytes(Fixture("tokenizers", "llama3", "tokenizer.model"));
        string path = Path.Combine(_dir, "tokenizer.model");
        Fuzzer.Run("tiktoken tokenizer.model", seed: 62, iterations: 25, m =>
        {
            File.WriteAllBytes(path, HeadOrTail(m, valid, out var what));
            return (what, "tokenizer.model");
        }, () => Use(TokenizerLoader.FromModelFile(path)), output);
    }

    /// <summary>The mini-bpe vocab.json/merges.txt folder with a tokenizer_config.json, special_tokens_map.json and added_tokens.json, one of which is damaged.</summary>
    [Fact]
    public void TokenizerSideFiles()
    {
        string src = Fixture("tokenizer", "mini-bpe", "vocab-merges");
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "side")).FullName;
        foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(src, f), Path.Combine(folder, f));
        int n = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(src, "vocab.json")))!.AsObject().Count;
        var files = new Dictionary<string, byte[]>
        {
            ["tokenizer_config.json"] = Encoding.UTF8.GetBytes($$$"""
                {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>", "lstrip": false}, "pad_token": null, "add_bos_token": false,
                 "added_tokens_decoder": {"{{{n}}}": {"content": "<extra_0>", "special": true}}, "tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}
                """),
            ["special_tokens_map.json"] = """{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": {"content": "<|endoftext|>"}, "additional_special_tokens": ["<extra_0>"]}"""u8.ToArray(),
            ["added_tokens.json"] = Encoding.UTF8.GetBytes($$$"""{"<extra_0>": {{{n}}}, "<extra_1>": {{{n + 1}}}}"""),
        };
        var names = files.Keys.ToList();
        Fuzzer.Run("tokenizer side files", seed: 63, iterations: 100, m =>
        {
            foreach (var (f, b) in files) File.WriteAllBytes(Path.Combine(folder, f), b);
            string file = names[m.Rng.Next(names.Count)], what;
            var bytes = m.Rng.Next(3) == 0 ? m.Bytes(files[file], out what) : m.Json(files[file], out what);
            File.WriteAllBytes(Path.Combine(folder, file), bytes);
            return (what, file);
        }, () => Use(TokenizerLoader.FromFolder(folder)), output);
    }

    private static readonly string[] SaeNames =
        ["standard_blocks.0.hook_resid_post", "topk_blocks.1.hook_resid_pre", "gated_blocks.1.hook_resid_post", "jumprelu_blocks.1.hook_mlp_out", "standard_blocks.0.attn.hook_z"];

    private static void UseSae(string folder)
    {
        using var sae = SparseAutoencoder.FromFolder(folder);
        using var scope = NewDisposeScope();
        var shape = sae.Config.ReshapeHookZ ? new long[] { 2, 3, 4, sae.Config.DIn / 4 } : [2, 3, sae.Config.DIn];
        sae.Forward(randn(shape)).sum().item<float>();
    }

    [Fact]
    public void SaeFolder()
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "sae")).FullName;
        var valid = SaeNames.Select(s => (Cfg: File.ReadAllBytes(Path.Combine(SaeGolden.Folder(s), "cfg.json")),
            Weights: File.ReadAllBytes(Path.Combine(SaeGolden.Folder(s), "sae_weights.safetensors")))).ToList();
        Fuzzer.Run("SAE cfg.json + sae_weights.safetensors", seed: 64, iterations: 600, m =>
        {
            var (cfg, weights) = valid[m.Rng.Next(valid.Count)];
            string what, file;
            switch (m.Rng.Next(4))
            {
                case 0: file = "sae_weights.safetensors"; weights = m.Bytes(weights, out what, hot: 8 + (int)BitConverter.ToUInt64(weights)); break;
                case 1:
                    file = "sae_weights.safetensors";
                    File.WriteAllBytes(Path.Combine(folder, file), weights);
                    what = DamageTensor(m, Path.Combine(folder, file));
                    weights = File.ReadAllBytes(Path.Combine(folder, file));
                    break;
                default: file = "cfg.json"; cfg = m.Json(cfg, out what); break;
            }
            File.WriteAllBytes(Path.Combine(folder, "cfg.json"), cfg);
            File.WriteAllBytes(Path.Combine(folder, "sae_weights.safetensors"), weights);
            return (what, "");
        }, () => UseSae(folder), output);
    }

    /// <summary>A damaged Gemma Scope <c>params.npz</c> (a zip of .npy arrays): its start, its .npy headers and its central directory.</summary>
    [Fact]
    public void GemmaScopeParamsNpz()
    {
        var valid = File.ReadAllBytes(Path.Combine(SaeGolden.Folder("jumprelu_blocks.1.hook_mlp_out_gemma_scope"), "params.npz"));
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "npz")).FullName, path = Path.Combine(folder, "params.npz");
        Fuzzer.Run("params.npz", seed: 66, iterations: 200, m =>
        {
            File.WriteAllBytes(path, HeadOrTail(m, valid, out var what));
            return (what, "params.npz");
        }, () =>
        {
            using var sae = SparseAutoencoder.Load(path, "blocks.1.hook_mlp_out");
            using var scope = NewDisposeScope();
            sae.Forward(randn(2, 3, sae.Config.DIn)).sum().item<float>();
        }, output);
    }

    private static string DamageTensor(Mutator m, string path)
    {
        string what = "";
        Cli.CliCorruptionTests.EditTensors(path, t =>
        {
            var names = t.Keys.Order(StringComparer.Ordinal).ToList();
            string name = names[m.Rng.Next(names.Count)];
            var x = t[name];
            switch (m.Rng.Next(6))
            {
                case 0: t.Remove(name); what = $"remove {name}"; break;
                case 1: t[name] = zeros([.. x.shape.Select(d => d + 1)]); what = $"grow {name}"; break;
                case 2: t[name] = x.reshape(-1); what = $"flatten {name}"; break;
                case 3: t[name] = x.to(new[] { ScalarType.Int64, ScalarType.Bool, ScalarType.Int8, ScalarType.Float16, ScalarType.Float64 }[m.Rng.Next(5)]); what = $"{t[name].dtype} {name}"; break;
                case 4: t[name] = tensor(1f); what = $"scalar {name}"; break;
                default: t[name] = full_like(x, float.NaN); what = $"NaN {name}"; break;
            }
        });
        return what;
    }

    /// <summary>
    /// A Hub cache snapshot whose files are symbolic links into blobs/ (as huggingface_hub lays it out), with a link
    /// made dangling, looping, pointing at a folder or outside the cache, or a blob truncated or replaced by a folder.
    /// </summary>
    [Fact]
    public void HubCacheSnapshotLinks()
    {
        const string repo = "test-org/tiny-gpt2", commit = "0123456789abcdef0123456789abcdef01234567";
        string cache = Directory.CreateDirectory(Path.Combine(_dir, "hub")).FullName;
        string repoDir = HubCache.RepoFolder(cache, repo);
        string snapshot = Path.Combine(repoDir, "snapshots", commit), blobs = Path.Combine(repoDir, "blobs");
        var files = new[] { "config.json", "model.safetensors" }.ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(Golden.Dir, f)));
        Fuzzer.Run("Hub cache snapshot links", seed: 65, iterations: 60, m =>
        {
            if (Directory.Exists(repoDir)) Directory.Delete(repoDir, true);
            Directory.CreateDirectory(snapshot);
            Directory.CreateDirectory(blobs);
            Directory.CreateDirectory(Path.Combine(repoDir, "refs"));
            File.WriteAllText(Path.Combine(repoDir, "refs", "main"), commit);
            foreach (var (f, b) in files)
            {
                File.WriteAllBytes(Path.Combine(blobs, "blob-" + f), b);
                File.CreateSymbolicLink(Path.Combine(snapshot, f), Path.Combine("..", "..", "blobs", "blob-" + f));
            }
            string file = m.Rng.Next(2) == 0 ? "config.json" : "model.safetensors";
            string link = Path.Combine(snapshot, file), blob = Path.Combine(blobs, "blob-" + file);
            string what;
            switch (m.Rng.Next(6))
            {
                case 0: File.Delete(blob); what = "dangling link"; break;
                case 1: File.Delete(link); File.CreateSymbolicLink(link, link); what = "link to itself"; break;
                case 2: File.Delete(blob); File.CreateSymbolicLink(blob, link); what = "link loop via blob"; break;
                case 3: File.Delete(blob); Directory.CreateDirectory(blob); what = "blob is a folder"; break;
                case 4: File.WriteAllBytes(blob, files[file][..(files[file].Length / 3)]); what = "blob truncated"; break;
                default: File.WriteAllBytes(blob, m.Bytes(files[file], out what, hot: 512)); break;
            }
            return (what, "");
        }, () =>
        {
            var folder = HubCache.TryGetCachedSnapshot(cache, repo);
            if (folder is not null) HookedTransformer.FromFolder(folder, ProcessingOptions.None, "fuzz", useWeightsCache: false).Dispose();
        }, output);
    }
}
