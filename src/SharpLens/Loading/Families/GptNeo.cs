using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// GPT-Neo and the TinyStories models (<c>GPTNeoForCausalLM</c>): learned positions, layers alternating global and
/// local (windowed) attention, no 1/√d_head scaling of attention scores. Config as TransformerLens's, except that
/// SharpLens reads <c>intermediate_size</c> (TL: always 4·d_model), as the real model does.
/// </summary>
public sealed class GptNeoFamily : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["GPTNeoForCausalLM", "GPTNeoModel", "gpt_neo"];

    /// <summary>GPT-Neo 125M / 1.3B / 2.7B and Ronen Eldan's TinyStories models (GPT-Neo architecture, GPT-2 vocabulary).</summary>
    internal static IReadOnlyList<ModelInfo> RegistryRows { get; } =
    [
        Row("gpt-neo-125m", "EleutherAI/gpt-neo-125M", "125M", layers: 12, d: 768, ["gpt-neo-small", "neo-small", "neo"]),
        Row("gpt-neo-1.3b", "EleutherAI/gpt-neo-1.3B", "1.3B", layers: 24, d: 2048, ["gpt-neo-medium", "neo-medium"]),
        Row("gpt-neo-2.7b", "EleutherAI/gpt-neo-2.7B", "2.7B", layers: 32, d: 2560, ["gpt-neo-large", "neo-large"]),
        .. TinyStories("1M", 8, 64), .. TinyStories("3M", 8, 128), .. TinyStories("8M", 8, 256),
        .. TinyStories("28M", 8, 512), .. TinyStories("33M", 4, 768),
        Row("TinyStories-1Layer-21M", "roneneldan/TinyStories-1Layer-21M", "21M", layers: 1, d: 1024, []),
        Row("TinyStories-2Layers-33M", "roneneldan/TinyStories-2Layers-33M", "33M", layers: 2, d: 1024, []),
        Row("TinyStories-Instuct-1Layer-21M", "roneneldan/TinyStories-Instuct-1Layer-21M", "21M", layers: 1, d: 1024, ["TinyStories-Instruct-1Layer-21M"]),
        Row("TinyStories-Instruct-2Layers-33M", "roneneldan/TinyStories-Instruct-2Layers-33M", "33M", layers: 2, d: 1024, []),
    ];

    private static IEnumerable<ModelInfo> TinyStories(string size, int layers, int d)
    {
        yield return Row($"TinyStories-{size}", $"roneneldan/TinyStories-{size}", size, layers, d, []);
        yield return Row($"TinyStories-Instruct-{size}", $"roneneldan/TinyStories-Instruct-{size}", size, layers, d, []);
    }

    /// <summary>A row with counts from the shape: vocabulary 50257, 2048 positions, d_mlp = 4·d_model, bias-free q/k/v.</summary>
    private static ModelInfo Row(string name, string repo, string size, int layers, int d, string[] aliases)
    {
        long dm = d, m = 4L * d;
        long perLayer = 4 * dm + (4 * dm * dm + dm) + (2 * dm * m + m + dm); // two LayerNorms, q/k/v/out (+ out bias), MLP
        return new ModelInfo(name, repo, aliases, size, (50257L + 2048) * dm + layers * perLayer + 2 * dm, layers * (4 * dm * dm + 2 * dm * m));
    }

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var r = new HfConfig(hfConfig, modelName);
        int d = r.Int("hidden_size"), heads = r.Int("num_heads"), layers = r.Int("num_layers");
        return new HookedTransformerConfig(
            nLayers: layers, dModel: d, nCtx: r.Int("max_position_embeddings"), dHead: r.HeadDim("hidden_size", "num_heads"),
            nHeads: heads, dVocab: r.Int("vocab_size"), dMlp: r.OptInt("intermediate_size") ?? 4 * d,
            actFn: r.OptString("activation_function") ?? "gelu_new", eps: r.OptDouble("layer_norm_epsilon") ?? 1e-5,
            originalArchitecture: "GPTNeoForCausalLM", modelName: modelName, useAttnScale: false,
            useLocalAttn: true, attnTypes: AttentionLayers(r, layers), windowSize: r.OptInt("window_size") ?? 256,
            bosTokenId: r.OptInt("bos_token_id"), eosTokenId: r.OptInt("eos_token_id"), padTokenId: r.OptInt("pad_token_id"));
    }

    /// <summary>
    /// The per-layer attention kinds: <c>attention_layers</c> when given, else HF's expansion of <c>attention_types</c>
    /// (<c>[[["global", "local"], 12]]</c> = that pattern 12 times); one entry per layer.
    /// </summary>
    private static List<string> AttentionLayers(HfConfig r, int layers)
    {
        List<string> kinds = [];
        if (r.Json["attention_layers"] is JsonArray explicitLayers)
            kinds.AddRange(explicitLayers.Select(Kind));
        else if (r.Json["attention_types"] is JsonArray groups)
        {
            foreach (var g in groups)
            {
                if (g is not JsonArray { Count: 2 } pair || pair[0] is not JsonArray pattern || pair[1] is not JsonValue times || !times.TryGetValue(out int n))
                    throw r.Error($"attention_types entry {g?.ToJsonString()} must be [[kinds...], count]");
                // A count beyond the layers (2^31, say) would fill memory before the length check below.
                if (n < 0 || kinds.Count + (long)n * pattern.Count > layers)
                    throw r.Error($"attention_types entry {g.ToJsonString()} gives more kinds than num_layers {layers}; need one per layer");
                for (int i = 0; i < n; i++) kinds.AddRange(pattern.Select(Kind));
            }
        }
        else kinds.AddRange(Enumerable.Range(0, layers).Select(i => i % 2 == 0 ? "global" : "local")); // HF default pattern
        if (kinds.Count != layers)
            throw r.Error($"attention layers [{string.Join(", ", kinds)}] give {kinds.Count} kinds for num_layers {layers}; need one per layer");
        return kinds;

        // A kind is a string; anything else is shown as compact JSON (its text must stay on one line in the error).
        static string Kind(JsonNode? k) => k is JsonValue v && v.TryGetValue(out string? s) ? s : k?.ToJsonString() ?? "null";
    }

    /// <inheritdoc/>
    public bool IsUnused(string checkpointName) => IsBuffer(checkpointName);

    /// <summary>Causal / local-window mask buffers older GPT-Neo checkpoints hold: not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attn.attention.bias", StringComparison.Ordinal) || name.EndsWith(".attn.attention.masked_bias", StringComparison.Ordinal);

    /// <summary>
    /// Weights → TransformerLens names and layouts (TransformerLens's <c>convert_neo_weights</c>): bias-free q/k/v get
    /// zero biases, the nn.Linear MLP weights are transposed, the tied <c>lm_head</c> (usually not stored) is <c>wte</c>;
    /// zero <c>unembed.b_U</c> is added.
    /// </summary>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new CheckpointTensors(hf, "GPT-Neo");
        string p = hf.ContainsKey("transformer.wte.weight") ? "transformer." : ""; // causal-LM checkpoints prefix the base model's weights
        Tensor Get(string name, params long[] shape) => ck.Get(p + name, shape);
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = Get("wte.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = wte;
        sd["pos_embed.W_pos"] = Get("wpe.weight", [cfg.NCtx, d]);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = Get(hp + "ln_1.weight", [d]);
            sd[tp + "ln1.b"] = Get(hp + "ln_1.bias", [d]);
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = CheckpointTensors.HeadsIn(Get(hp + $"attn.attention.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = zeros(h, dh, dtype: wte.dtype);
            }
            sd[tp + "attn.W_O"] = CheckpointTensors.HeadsOut(Get(hp + "attn.attention.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = Get(hp + "attn.attention.out_proj.bias", [d]);
            sd[tp + "ln2.w"] = Get(hp + "ln_2.weight", [d]);
            sd[tp + "ln2.b"] = Get(hp + "ln_2.bias", [d]);
            sd[tp + "mlp.W_in"] = Get(hp + "mlp.c_fc.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = Get(hp + "mlp.c_fc.bias", [m]);
            sd[tp + "mlp.W_out"] = Get(hp + "mlp.c_proj.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = Get(hp + "mlp.c_proj.bias", [d]);
        }
        sd["ln_final.w"] = Get("ln_f.weight", [d]);
        sd["ln_final.b"] = Get("ln_f.bias", [d]);
        sd["unembed.W_U"] = (ck.Has("lm_head.weight") ? ck.Get("lm_head.weight", cfg.DVocabOut, d) : wte).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: wte.dtype);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer model", IsBuffer);
        return sd;
    }
}
