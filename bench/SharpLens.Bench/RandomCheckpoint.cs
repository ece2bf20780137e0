using System.Text;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>Shape of a GPT-2-style model to generate.</summary>
internal sealed record Gpt2Shape(string Name, int Layers, int DModel, int Heads, int Vocab, int Positions)
{
    public static readonly Gpt2Shape Small = new("gpt2-small-random", 12, 768, 12, 50257, 1024);
    public static readonly Gpt2Shape Tiny = new("gpt2-tiny-random", 2, 64, 4, 1000, 1024);
    /// <summary>GPT-2 XL's shape (1.56 B parameters, ~6.2 GB in float32): the --large phase.</summary>
    public static readonly Gpt2Shape Xl = new("gpt2-xl-random", 48, 1600, 25, 50257, 1024);
}

/// <summary>
/// Writes (once) a random checkpoint in Hugging Face GPT-2 layout — config.json + model.safetensors with the same
/// tensor names and Conv1D [in, out] shapes as openai-community/gpt2, including the unused causal-mask buffers
/// h.{i}.attn.bias — so loading exercises exactly the path a real GPT-2 takes. Weights are N(0, 0.02) from a fixed
/// seed, LayerNorm weights are 1. A marker file records the spec; a folder with a matching marker is reused.
/// </summary>
internal static class RandomCheckpoint
{
    private const int Seed = 20261128;
    private const string Marker = "bench-checkpoint.txt";

    public static string CacheRoot()
    {
        string? env = Environment.GetEnvironmentVariable("SHARPLENS_BENCH_CACHE");
        if (!string.IsNullOrEmpty(env)) return env;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string baseDir = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "sharplens", "bench");
    }

    /// <summary>The folder holding the checkpoint, written first when missing or stale.</summary>
    public static string Ensure(Gpt2Shape shape, Action<string> log, bool bfloat16 = false)
    {
        string dir = Path.Combine(CacheRoot(), shape.Name + (bfloat16 ? "-bf16" : ""));
        string spec = $"{shape} seed={Seed} v1" + (bfloat16 ? " bf16" : "");
        string markerPath = Path.Combine(dir, Marker);
        if (File.Exists(markerPath) && File.ReadAllText(markerPath) == spec) return dir;
        Directory.CreateDirectory(dir);
        log($"writing random {shape.Name} checkpoint to {dir} (once) ...");
        File.Delete(markerPath);
        File.WriteAllText(Path.Combine(dir, "config.json"), Config(shape).ToJsonString(new() { WriteIndented = true }));
        WriteWeights(shape, Path.Combine(dir, "model.safetensors"), bfloat16);
        File.WriteAllText(markerPath, spec); // last: a crash mid-write leaves no marker, so the next run rewrites
        return dir;
    }

    private static JsonObject Config(Gpt2Shape s) => new()
    {
        ["model_type"] = "gpt2", ["architectures"] = new JsonArray("GPT2LMHeadModel"),
        ["n_layer"] = s.Layers, ["n_embd"] = s.DModel, ["n_head"] = s.Heads, ["vocab_size"] = s.Vocab,
        ["n_positions"] = s.Positions, ["n_ctx"] = s.Positions, ["n_inner"] = null,
        ["activation_function"] = "gelu_new", ["layer_norm_epsilon"] = 1e-5, ["initializer_range"] = 0.02,
        ["bos_token_id"] = s.Vocab - 1, ["eos_token_id"] = s.Vocab - 1,
    };

    private enum Init { Normal, Ones, CausalMask }

    private static List<(string Name, long[] Shape, Init Init)> Tensors(Gpt2Shape s)
    {
        long d = s.DModel, m = 4L * s.DModel, n = s.Positions;
        var list = new List<(string, long[], Init)> { ("wte.weight", [s.Vocab, d], Init.Normal), ("wpe.weight", [n, d], Init.Normal) };
        for (int i = 0; i < s.Layers; i++)
        {
            string p = $"h.{i}.";
            list.Add((p + "ln_1.weight", [d], Init.Ones));
            list.Add((p + "ln_1.bias", [d], Init.Normal));
            list.Add((p + "attn.bias", [1, 1, n, n], Init.CausalMask));
            list.Add((p + "attn.c_attn.weight", [d, 3 * d], Init.Normal));
            list.Add((p + "attn.c_attn.bias", [3 * d], Init.Normal));
            list.Add((p + "attn.c_proj.weight", [d, d], Init.Normal));
            list.Add((p + "attn.c_proj.bias", [d], Init.Normal));
            list.Add((p + "ln_2.weight", [d], Init.Ones));
            list.Add((p + "ln_2.bias", [d], Init.Normal));
            list.Add((p + "mlp.c_fc.weight", [d, m], Init.Normal));
            list.Add((p + "mlp.c_fc.bias", [m], Init.Normal));
            list.Add((p + "mlp.c_proj.weight", [m, d], Init.Normal));
            list.Add((p + "mlp.c_proj.bias", [d], Init.Normal));
        }
        list.Add(("ln_f.weight", [d], Init.Ones));
        list.Add(("ln_f.bias", [d], Init.Normal));
        return list;
    }

    /// <summary>
    /// Minimal safetensors writer (kept private to the bench so it never waits on the library's writer): u64 LE
    /// header length, JSON header padded with spaces to a multiple of 8, then the raw little-endian data.
    /// Tensors are generated and written one at a time, so memory stays at one tensor.
    /// </summary>
    private static void WriteWeights(Gpt2Shape s, string path, bool bfloat16)
    {
        var specs = Tensors(s);
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        long offset = 0;
        foreach (var (name, shape, _) in specs)
        {
            long bytes = (bfloat16 ? 2 : 4) * shape.Aggregate(1L, (a, b) => a * b);
            header[name] = new JsonObject
            {
                ["dtype"] = bfloat16 ? "BF16" : "F32", ["shape"] = new JsonArray(shape.Select(x => (JsonNode)x).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes),
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int padded = (json.Length + 7) / 8 * 8;
        string tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            fs.Write(BitConverter.GetBytes((ulong)padded));
            fs.Write(json);
            for (int i = json.Length; i < padded; i++) fs.WriteByte((byte)' ');
            var gen = new Generator((ulong)Seed);
            foreach (var (_, shape, init) in specs)
            {
                using var scope = NewDisposeScope();
                var t = init switch
                {
                    Init.Ones => ones(shape),
                    Init.CausalMask => ones(shape[^2], shape[^1]).tril().view(shape),
                    _ => randn(shape, generator: gen).mul_(0.02),
                };
                if (bfloat16) t = t.to_type(ScalarType.BFloat16);
                // Tensor.bytes is an int-length span: write big tensors (XL's embedding) in pieces.
                var flat = t.contiguous().reshape(-1);
                long per = (1L << 28) / t.element_size();
                for (long at = 0; at < flat.numel(); at += per)
                    fs.Write(flat.narrow(0, at, Math.Min(per, flat.numel() - at)).bytes);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }
}
