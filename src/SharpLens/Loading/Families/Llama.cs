using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// The LLaMA line: <c>LlamaForCausalLM</c> (Llama 2, 3, 3.1, 3.2), <c>MistralForCausalLM</c>, <c>Qwen2ForCausalLM</c>
/// (Qwen2, Qwen2.5) and <c>Qwen3ForCausalLM</c>. RMSNorm, rotary positions, grouped-query attention and a SwiGLU MLP;
/// Mistral adds a sliding window, Qwen2 q/k/v biases, Qwen3 per-head q/k norms and a free head_dim.
/// The config is read from <c>config.json</c> as Hugging Face reads it (<c>rope_theta</c>, <c>rope_scaling</c>,
/// <c>head_dim</c>, <c>sliding_window</c>, <c>tie_word_embeddings</c>, biases), also for local folders and fine-tunes,
/// where TransformerLens v3.5.1 falls back to defaults for Llama.
/// </summary>
public sealed class LlamaFamily : IModelFamily
{
    /// <summary>One member of the line: what its Hugging Face class hard-codes.</summary>
    private sealed record Variant(string Architecture, string ModelType, bool AlwaysGroupedQueryNames, bool QkvBias, bool QkNorm,
        bool DefaultPrependBos, int DefaultContext);

    // TransformerLens sets n_key_value_heads for Mistral and Qwen2 even when it equals n_heads (so their parameters are
    // named _W_K ...), for Llama and Qwen3 only when it differs. Qwen prompts get no BOS by default.
    private static readonly Variant[] Variants =
    [
        new("LlamaForCausalLM", "llama", AlwaysGroupedQueryNames: false, QkvBias: false, QkNorm: false, DefaultPrependBos: true, DefaultContext: 2048),
        new("MistralForCausalLM", "mistral", AlwaysGroupedQueryNames: true, QkvBias: false, QkNorm: false, DefaultPrependBos: true, DefaultContext: 131072),
        new("Qwen2ForCausalLM", "qwen2", AlwaysGroupedQueryNames: true, QkvBias: true, QkNorm: false, DefaultPrependBos: false, DefaultContext: 32768),
        new("Qwen3ForCausalLM", "qwen3", AlwaysGroupedQueryNames: false, QkvBias: false, QkNorm: true, DefaultPrependBos: false, DefaultContext: 32768),
    ];

    /// <summary>Registry rows of the line's official checkpoints (Llama repositories are gated).</summary>
    internal static IEnumerable<ModelInfo> RegistryRows =>
    [
        Row("Llama-2-7b", "meta-llama/Llama-2-7b-hf", "7B", 32, 4096, 32, 32, 128, 11008, 32000, tied: false, gated: true, "Llama-2-7b-hf"),
        Row("Llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "7B", 32, 4096, 32, 32, 128, 11008, 32000, tied: false, gated: true, "Llama-2-7b-chat-hf"),
        Row("Llama-2-13b", "meta-llama/Llama-2-13b-hf", "13B", 40, 5120, 40, 40, 128, 13824, 32000, tied: false, gated: true, "Llama-2-13b-hf"),
        Row("Llama-2-13b-chat", "meta-llama/Llama-2-13b-chat-hf", "13B", 40, 5120, 40, 40, 128, 13824, 32000, tied: false, gated: true, "Llama-2-13b-chat-hf"),
        Row("Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B", "8B", 32, 4096, 32, 8, 128, 14336, 128256, tied: false, gated: true, "Llama-3-8B"),
        Row("Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B-Instruct", "8B", 32, 4096, 32, 8, 128, 14336, 128256, tied: false, gated: true, "Llama-3-8B-Instruct"),
        Row("Llama-3.1-8B", "meta-llama/Llama-3.1-8B", "8B", 32, 4096, 32, 8, 128, 14336, 128256, tied: false, gated: true, "Meta-Llama-3.1-8B"),
        Row("Llama-3.2-1B", "meta-llama/Llama-3.2-1B", "1.2B", 16, 2048, 32, 8, 64, 8192, 128256, tied: true, gated: true),
        Row("Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "1.2B", 16, 2048, 32, 8, 64, 8192, 128256, tied: true, gated: true),
        Row("Llama-3.2-3B", "meta-llama/Llama-3.2-3B", "3.2B", 28, 3072, 24, 8, 128, 8192, 128256, tied: true, gated: true),
        Row("Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "3.2B", 28, 3072, 24, 8, 128, 8192, 128256, tied: true, gated: true),
        Row("Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1", "7B", 32, 4096, 32, 8, 128, 14336, 32000, tied: false, gated: false, "mistral-7b"),
        Row("Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.1", "7B", 32, 4096, 32, 8, 128, 14336, 32000, tied: false, gated: false, "mistral-7b-instruct"),
        Row("Mistral-7B-v0.3", "mistralai/Mistral-7B-v0.3", "7B", 32, 4096, 32, 8, 128, 14336, 32768, tied: false, gated: false),
        Row("Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", "7B", 32, 4096, 32, 8, 128, 14336, 32768, tied: false, gated: false),
        Row("Qwen2-0.5B", "Qwen/Qwen2-0.5B", "0.5B", 24, 896, 14, 2, 64, 4864, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2-1.5B", "Qwen/Qwen2-1.5B", "1.5B", 28, 1536, 12, 2, 128, 8960, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2-7B", "Qwen/Qwen2-7B", "7B", 28, 3584, 28, 4, 128, 18944, 152064, tied: false, gated: false, qkvBias: true),
        Row("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", "0.5B", 24, 896, 14, 2, 64, 4864, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "0.5B", 24, 896, 14, 2, 64, 4864, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B", "1.5B", 28, 1536, 12, 2, 128, 8960, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "1.5B", 28, 1536, 12, 2, 128, 8960, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-3B", "Qwen/Qwen2.5-3B", "3B", 36, 2048, 16, 2, 128, 11008, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-3B-Instruct", "3B", 36, 2048, 16, 2, 128, 11008, 151936, tied: true, gated: false, qkvBias: true),
        Row("Qwen2.5-7B", "Qwen/Qwen2.5-7B", "7B", 28, 3584, 28, 4, 128, 18944, 152064, tied: false, gated: false, qkvBias: true),
        Row("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "7B", 28, 3584, 28, 4, 128, 18944, 152064, tied: false, gated: false, qkvBias: true),
        Row("Qwen3-0.6B", "Qwen/Qwen3-0.6B", "0.6B", 28, 1024, 16, 8, 128, 3072, 151936, tied: true, gated: false, qkNorm: true),
        Row("Qwen3-1.7B", "Qwen/Qwen3-1.7B", "1.7B", 28, 2048, 16, 8, 128, 6144, 151936, tied: true, gated: false, qkNorm: true),
        Row("Qwen3-4B", "Qwen/Qwen3-4B", "4B", 36, 2560, 32, 8, 128, 9728, 151936, tied: true, gated: false, qkNorm: true),
        Row("Qwen3-8B", "Qwen/Qwen3-8B", "8B", 36, 4096, 32, 8, 128, 12288, 151936, tied: false, gated: false, qkNorm: true),
    ];

    /// <summary>
    /// A row with its parameter counts derived from the shape: every checkpoint tensor (embeddings, projections, q/k/v
    /// biases, q/k norms, RMSNorm weights, an untied head), and TransformerLens's <c>n_params</c> (attention matrices
    /// counted with n_heads for keys and values, plus the three MLP matrices).
    /// </summary>
    private static ModelInfo Row(string name, string repo, string size, long layers, long d, long heads, long kvHeads, long dHead,
        long dMlp, long vocab, bool tied, bool gated, string? alias = null, bool qkvBias = false, bool qkNorm = false)
    {
        long attention = 2 * d * heads * dHead + 2 * d * kvHeads * dHead + (qkvBias ? (heads + 2 * kvHeads) * dHead : 0) + (qkNorm ? 2 * dHead : 0);
        long perLayer = attention + 3 * d * dMlp + 2 * d;
        long total = vocab * d * (tied ? 1 : 2) + layers * perLayer + d;
        long nParams = layers * (4 * d * heads * dHead + 3 * d * dMlp);
        return new ModelInfo(name, repo, alias is null ? [] : [alias], size, total, nParams) { Gated = gated };
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = [.. Variants.Select(v => v.Architecture), .. Variants.Select(v => v.ModelType)];

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var hf = new HfConfig(hfConfig, modelName);
        var variant = VariantOf(hfConfig);
        int dModel = hf.Int("hidden_size"), nHeads = hf.Int("num_attention_heads"), nLayers = hf.Int("num_hidden_layers");
        int kvHeads = hf.OptInt("num_key_value_heads") ?? nHeads;
        if (nHeads <= 0 || kvHeads <= 0) throw hf.Error($"num_attention_heads ({nHeads}) and num_key_value_heads ({kvHeads}) must be positive");
        if (nHeads % kvHeads != 0)
            throw hf.Error($"num_attention_heads {nHeads} is not divisible by num_key_value_heads {kvHeads}");
        int? headDim = hf.OptInt("head_dim");
        if (headDim is null && dModel % nHeads != 0)
            throw hf.Error($"hidden_size {dModel} is not divisible by num_attention_heads {nHeads} and no head_dim is given");
        if (hf.OptBool("mlp_bias") == true)
            throw hf.Error("mlp_bias = true is not supported (the gated MLP has no gate bias in TransformerLens's layout)");

        // transformers 5 moves rope_theta / rope_scaling into rope_parameters; both spellings are read.
        var rope = hfConfig["rope_parameters"] as JsonObject;
        double theta = (rope is null ? null : new HfConfig(rope, modelName).OptDouble("rope_theta")) ?? hf.OptDouble("rope_theta") ?? 10000;
        var scaling = hfConfig["rope_scaling"] as JsonObject ?? rope;
        var ntk = Llama3Scaling(scaling, hf);

        var (localLayers, window) = SlidingWindow(hf, variant, nLayers);
        return new HookedTransformerConfig(
            nLayers: nLayers, dModel: dModel, nCtx: hf.OptInt("max_position_embeddings") ?? variant.DefaultContext,
            dHead: headDim ?? dModel / nHeads, nHeads: nHeads, dVocab: hf.Int("vocab_size"), dMlp: hf.Int("intermediate_size"),
            actFn: hf.OptString("hidden_act") ?? "silu", normalizationType: "RMS", eps: hf.OptDouble("rms_norm_eps") ?? 1e-6,
            positionalEmbeddingType: "rotary", originalArchitecture: variant.Architecture, defaultPrependBos: variant.DefaultPrependBos,
            modelName: modelName, initializerRange: hf.OptDouble("initializer_range") ?? 0.02,
            bosTokenId: hf.TokenId("bos_token_id"), eosTokenId: hf.TokenId("eos_token_id"), padTokenId: hf.TokenId("pad_token_id"),
            nKeyValueHeads: variant.AlwaysGroupedQueryNames || kvHeads != nHeads ? kvHeads : null,
            rotaryBase: theta, useNTKByPartsRope: ntk is not null,
            nTKByPartsFactor: ntk?.Factor ?? 8, nTKByPartsLowFreqFactor: ntk?.Low ?? 1, nTKByPartsHighFreqFactor: ntk?.High ?? 4,
            nTKOriginalCtxLen: ntk?.Original ?? 8192,
            gatedMlp: true, useLocalAttn: window is not null, windowSize: window, attnTypes: localLayers,
            useQkNorm: variant.QkNorm, tieWordEmbeddings: hf.OptBool("tie_word_embeddings") ?? false);
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig cfg)
    {
        var variant = Variants.First(v => v.Architecture == cfg.OriginalArchitecture);
        var ck = new CheckpointTensors(hfWeights, cfg.OriginalArchitecture);
        long d = cfg.DModel, dh = cfg.DHead;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = ck.Get("model.embed_tokens.weight", cfg.DVocab, d);
        sd["embed.W_E"] = embed;
        bool attnBias = variant.QkvBias || ck.Has("model.layers.0.self_attn.q_proj.bias");
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"model.layers.{l}.", tp = $"blocks.{l}.", a = hp + "self_attn.";
            sd[tp + "ln1.w"] = ck.Get(hp + "input_layernorm.weight", d);
            if (attnBias && !ck.Has(a + "q_proj.bias"))
                throw new SharpLensException($"{cfg.OriginalArchitecture} checkpoint is missing tensor '{a}q_proj.bias' (this architecture has q/k/v biases).");
            DecoderWeights.AddAttention(sd, ck, a, tp + "attn.", cfg, biasesIfPresent: true);
            if (cfg.UseQkNorm)
            {
                sd[tp + "attn.q_norm.w"] = ck.Get(a + "q_norm.weight", dh);
                sd[tp + "attn.k_norm.w"] = ck.Get(a + "k_norm.weight", dh);
            }
            sd[tp + "ln2.w"] = ck.Get(hp + "post_attention_layernorm.weight", d);
            DecoderWeights.AddGatedMlp(sd, ck, hp + "mlp.", tp + "mlp.", cfg);
        }
        sd["ln_final.w"] = ck.Get("model.norm.weight", d);
        // Tied models (e.g. Qwen2-0.5B, Llama-3.2-1B) read the unembedding from the token embedding, as Hugging Face does.
        bool tied = cfg.TieWordEmbeddings;
        if (tied) ck.Ignore("lm_head.weight");
        else if (!ck.Has("lm_head.weight"))
            throw new SharpLensException($"{cfg.OriginalArchitecture} checkpoint has no 'lm_head.weight' but config.json does not set " +
                "tie_word_embeddings = true. Set it if the model ties its unembedding to the token embedding.");
        sd["unembed.W_U"] = (tied ? embed : ck.Get("lm_head.weight", cfg.DVocabOut, d)).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: embed.dtype);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer {cfg.OriginalArchitecture}", IsUnused);
        return sd;
    }

    /// <inheritdoc/>
    public bool IsUnused(string checkpointName) => checkpointName.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    private static Variant VariantOf(JsonObject hf)
    {
        var names = (hf["architectures"] as JsonArray)?.Select(a => a?.GetValue<string>()).ToList() ?? [];
        names.Add(hf["model_type"]?.GetValue<string>());
        return Variants.First(v => names.Contains(v.Architecture) || names.Contains(v.ModelType));
    }


    private sealed record NtkScaling(double Factor, double Low, double High, int Original);

    /// <summary>
    /// <c>rope_scaling</c>: null / <c>default</c> → none; <c>llama3</c> → NTK-by-parts with its four parameters; any
    /// other type is rejected by name (its frequencies differ, so running it unscaled would be silently wrong).
    /// </summary>
    private static NtkScaling? Llama3Scaling(JsonObject? scaling, HfConfig hf)
    {
        if (scaling is null) return null;
        var s = new HfConfig(scaling, hf.ModelName);
        string? type = s.OptString("rope_type") ?? s.OptString("type");
        if (type is null or "default") return null;
        if (type != "llama3")
            throw hf.Error($"rope_scaling type '{type}' is not supported; supported: llama3 (Llama 3.1 NTK-by-parts) or none (default)");
        double Need(string key) => s.OptDouble(key) ?? throw hf.Error($"rope_scaling of type llama3 needs '{key}'");
        return new NtkScaling(Need("factor"), Need("low_freq_factor"), Need("high_freq_factor"),
            s.OptInt("original_max_position_embeddings") ?? throw hf.Error("rope_scaling of type llama3 needs 'original_max_position_embeddings'"));
    }

    /// <summary>
    /// Which layers use a sliding window, as Hugging Face decides: <c>layer_types</c> when the config lists them;
    /// Mistral: every layer when <c>sliding_window</c> is set; Qwen2/3: layers from <c>max_window_layers</c> on, only
    /// with <c>use_sliding_window</c>; Llama: none.
    /// </summary>
    private static (string[]? Types, int? Window) SlidingWindow(HfConfig hf, Variant variant, int nLayers)
    {
        int? window = hf.OptInt("sliding_window");
        if (variant.ModelType == "llama" || window is null) return (null, null);
        string[] types;
        if (hf.Json["layer_types"] is JsonArray lt)
        {
            if (lt.Count != nLayers) throw hf.Error($"layer_types has {lt.Count} entries, expected num_hidden_layers = {nLayers}");
            types = [.. lt.Select(t => t?.GetValue<string>() == "sliding_attention" ? "local" : "global")];
        }
        else if (variant.ModelType == "mistral")
        {
            types = [.. Enumerable.Repeat("local", nLayers)];
        }
        else
        {
            if (hf.OptBool("use_sliding_window") != true) return (null, null);
            int from = hf.OptInt("max_window_layers") ?? nLayers;
            types = [.. Enumerable.Range(0, nLayers).Select(l => l >= from ? "local" : "global")];
        }
        if (window <= 0) throw hf.Error($"sliding_window must be a positive integer, got {window}");
        return types.Contains("local") ? (types, window) : (null, null);
    }
}
