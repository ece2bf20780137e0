using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>
/// <c>--qkv-layouts [ROUNDS]</c>: what the q/k/v projection layout costs a forward pass. Random Llama-shaped (GQA,
/// separate q/k/v, float32 and bfloat16) and NeoX-shaped (interleaved query_key_value) checkpoints, written with their
/// tensors in name order like Hugging Face's files (so q/k/v are not adjacent); each loaded three ways: processed
/// (q/k/v computed, fused), unprocessed (mapped: separate GEMMs / interleaved GEMM on the file) and a fused copy of
/// the unprocessed weights. Forwards alternate between the three; CPU time (not wall time: the shared machine's load
/// swings wall time far more than the layouts differ) of one thread, median and min over the rounds.
/// </summary>
internal static class QkvLayouts
{
    private const int Layers = 4, D = 512, Heads = 8, KvHeads = 2, DHead = 64, DMlp = 1408, Vocab = 8192;

    public static int Run(int rounds)
    {
        set_num_threads(1);
        string root = Path.Combine(Path.GetTempPath(), "sharplens-bench-qkv");
        var gen = new Generator(7);
        var shapes = new (string Name, Tensor Tokens)[] { ("8x15", randint(0, Vocab, [8, 15], generator: gen)), ("4x256", randint(0, Vocab, [4, 256], generator: gen)) };
        foreach (var (name, dtype, llama) in new[] { ("llama-f32", ScalarType.Float32, true), ("llama-bf16", ScalarType.BFloat16, true), ("neox-f32", ScalarType.Float32, false) })
        {
            string dir = Write(Path.Combine(root, name), llama ? LlamaConfig() : NeoxConfig(), llama ? Llama : Neox, dtype);
            using var mapped = HookedTransformer.FromFolder(dir, ProcessingOptions.None, name, dtype, useWeightsCache: false);
            using var processed = HookedTransformer.FromFolder(dir, ProcessingOptions.Default, name, dtype, useWeightsCache: false);
            HookedTransformer copy;
            using (var scope = NewDisposeScope()) copy = new HookedTransformer(mapped.Config, mapped.StateDict.ToDictionary(kv => kv.Key, kv => kv.Value.clone()));
            using var owned = copy;
            var models = new (string Name, HookedTransformer Model)[] { ("processed", processed), ("mapped", mapped), ("fused_copy", copy) };
            foreach (var (shapeName, tokens) in shapes)
            {
                var cpu = models.ToDictionary(m => m.Name, _ => new List<double>());
                for (int r = -2; r < rounds; r++)
                    foreach (var (mn, m) in r % 2 == 0 ? models : models.Reverse())
                    {
                        using var scope = NewDisposeScope();
                        var proc = Process.GetCurrentProcess();
                        var before = proc.TotalProcessorTime;
                        m.Forward(tokens);
                        proc.Refresh();
                        if (r >= 0) cpu[mn].Add((proc.TotalProcessorTime - before).TotalMilliseconds);
                    }
                Console.WriteLine($"{name,-11} {shapeName,-6} CPU ms median/min  " +
                    string.Join("  ", models.Select(m => $"{m.Name} {Median(cpu[m.Name]):F1}/{cpu[m.Name].Min():F1}")));
            }
        }
        return 0;
    }

    private static double Median(List<double> x) => x.Order().ElementAt(x.Count / 2);

    private static string Write(string dir, JsonObject cfg, Func<Generator, List<KeyValuePair<string, Tensor>>> tensors, ScalarType dtype)
    {
        if (File.Exists(Path.Combine(dir, "model.safetensors"))) return dir;
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        using var scope = NewDisposeScope();
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors(new Generator(3)).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.to_type(dtype))));
        return dir;
    }

    private static Tensor R(Generator g, params long[] shape) => randn(shape, generator: g) * 0.02f;

    private static JsonObject LlamaConfig() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["hidden_size"] = D, ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = KvHeads, ["num_hidden_layers"] = Layers, ["intermediate_size"] = DMlp, ["vocab_size"] = Vocab,
        ["max_position_embeddings"] = 1024, ["rms_norm_eps"] = 1e-5, ["tie_word_embeddings"] = false, ["hidden_act"] = "silu",
    };

    private static List<KeyValuePair<string, Tensor>> Llama(Generator g)
    {
        var l = new List<KeyValuePair<string, Tensor>> { new("model.embed_tokens.weight", R(g, Vocab, D)), new("model.norm.weight", ones(D)), new("lm_head.weight", R(g, Vocab, D)) };
        for (int i = 0; i < Layers; i++)
        {
            string p = $"model.layers.{i}.";
            l.Add(new(p + "input_layernorm.weight", ones(D)));
            l.Add(new(p + "post_attention_layernorm.weight", ones(D)));
            l.Add(new(p + "self_attn.q_proj.weight", R(g, Heads * DHead, D)));
            l.Add(new(p + "self_attn.k_proj.weight", R(g, KvHeads * DHead, D)));
            l.Add(new(p + "self_attn.v_proj.weight", R(g, KvHeads * DHead, D)));
            l.Add(new(p + "self_attn.o_proj.weight", R(g, D, Heads * DHead)));
            l.Add(new(p + "mlp.gate_proj.weight", R(g, DMlp, D)));
            l.Add(new(p + "mlp.up_proj.weight", R(g, DMlp, D)));
            l.Add(new(p + "mlp.down_proj.weight", R(g, D, DMlp)));
        }
        return l;
    }

    private static JsonObject NeoxConfig() => new()
    {
        ["architectures"] = new JsonArray("GPTNeoXForCausalLM"), ["model_type"] = "gpt_neox", ["hidden_size"] = D, ["num_attention_heads"] = Heads,
        ["num_hidden_layers"] = Layers, ["intermediate_size"] = 4 * D, ["vocab_size"] = Vocab, ["max_position_embeddings"] = 1024,
        ["rotary_pct"] = 0.25, ["layer_norm_eps"] = 1e-5, ["hidden_act"] = "gelu", ["use_parallel_residual"] = true,
    };

    private static List<KeyValuePair<string, Tensor>> Neox(Generator g)
    {
        var l = new List<KeyValuePair<string, Tensor>>
        {
            new("gpt_neox.embed_in.weight", R(g, Vocab, D)), new("gpt_neox.final_layer_norm.weight", ones(D)),
            new("gpt_neox.final_layer_norm.bias", zeros(D)), new("embed_out.weight", R(g, Vocab, D)),
        };
        for (int i = 0; i < Layers; i++)
        {
            string p = $"gpt_neox.layers.{i}.";
            foreach (var n in new[] { "input_layernorm", "post_attention_layernorm" })
            {
                l.Add(new(p + n + ".weight", ones(D)));
                l.Add(new(p + n + ".bias", R(g, D)));
            }
            l.Add(new(p + "attention.query_key_value.weight", R(g, 3 * D, D)));
            l.Add(new(p + "attention.query_key_value.bias", R(g, 3 * D)));
            l.Add(new(p + "attention.dense.weight", R(g, D, D)));
            l.Add(new(p + "attention.dense.bias", R(g, D)));
            l.Add(new(p + "mlp.dense_h_to_4h.weight", R(g, 4 * D, D)));
            l.Add(new(p + "mlp.dense_h_to_4h.bias", R(g, 4 * D)));
            l.Add(new(p + "mlp.dense_4h_to_h.weight", R(g, D, 4 * D)));
            l.Add(new(p + "mlp.dense_4h_to_h.bias", R(g, D)));
        }
        return l;
    }
}
