using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Gemma 1, 2 and 3 (text) — <c>GemmaForCausalLM</c>, <c>Gemma2ForCausalLM</c>, <c>Gemma3ForCausalLM</c>. TransformerLens
/// hard-codes these configs by official model name; the mapping here reads config.json, so fine-tunes and new sizes
/// load too, and it follows the real models where TransformerLens does not (Gemma 2's first layer is sliding-window;
/// Gemma's MLP uses the tanh GELU).
/// </summary>
public sealed class GemmaFamily : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } =
        ["GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "gemma", "gemma2", "gemma3_text"];

    /// <summary>1, 2 or 3, from the architecture (else model_type).</summary>
    private static int Generation(HfConfig c)
    {
        var arch = (c.Json["architectures"] as JsonArray)?.FirstOrDefault()?.GetValue<string>();
        return (arch, c.OptString("model_type")) switch
        {
            ("Gemma3ForCausalLM", _) or (_, "gemma3_text") => 3,
            ("Gemma2ForCausalLM", _) or (_, "gemma2") => 2,
            _ => 1,
        };
    }

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var c = new HfConfig(hfConfig, modelName);
        int gen = Generation(c);
        int d = c.Int("hidden_size"), h = c.Int("num_attention_heads"), layers = c.Int("num_hidden_layers");
        int dh = c.HeadDim(d, h);
        if (c.RopeScalingType() is { } scaling)
            throw c.Error($"rope_scaling type '{scaling}' is not supported for Gemma (the text-only Gemma checkpoints use none). " +
                "Supported: no rope_scaling");

        // Gemma is defined with the tanh GELU. Gemma 1.0 Hub configs say hidden_act "gelu", which Hugging Face
        // overrides through hidden_activation (TransformerLens keeps the erf "gelu" — a known difference).
        string act = c.OptString("hidden_activation") ?? "gelu_pytorch_tanh";

        // Which layers use the sliding window: layer_types when given; older Gemma 2 configs mean even layers
        // (layer 0 local, as Hugging Face and Google's reference — TransformerLens inverts it); older Gemma 3
        // configs every layer but each sliding_window_pattern-th.
        IReadOnlyList<string>? attnTypes = null;
        if (c.OptStringList("layer_types") is { } types)
        {
            if (types.Count != layers) throw c.Error($"layer_types has {types.Count} entries for {layers} layers");
            attnTypes = types.Select(t => t switch
            {
                "sliding_attention" => "local",
                "full_attention" => "global",
                _ => throw c.Error($"layer_types entry '{t}' is not supported; allowed: sliding_attention, full_attention"),
            }).ToList();
        }
        else if (gen == 2) attnTypes = Enumerable.Range(0, layers).Select(l => l % 2 == 0 ? "local" : "global").ToList();
        else if (gen == 3)
        {
            int pattern = c.OptInt("sliding_window_pattern") ?? 6;
            if (pattern <= 0) throw c.Error($"sliding_window_pattern must be positive, got {pattern}");
            attnTypes = Enumerable.Range(0, layers).Select(l => (l + 1) % pattern != 0 ? "local" : "global").ToList();
        }
        bool anyLocal = attnTypes?.Contains("local") == true;
        int? window = anyLocal ? c.OptInt("sliding_window") ?? throw c.Error("field 'sliding_window' is missing; its sliding-window layers need it") : null;

        // Scores are divided by sqrt(query_pre_attn_scalar) (Gemma 2/3), which need not equal sqrt(head_dim).
        double attnScale = Math.Sqrt(c.OptDouble("query_pre_attn_scalar") ?? dh);
        return new HookedTransformerConfig(
            nLayers: layers, dModel: d, nCtx: c.Int("max_position_embeddings"), dHead: dh, nHeads: h,
            dVocab: c.Int("vocab_size"), dMlp: c.Int("intermediate_size"), actFn: act, normalizationType: "RMS",
            eps: c.OptDouble("rms_norm_eps") ?? 1e-6, positionalEmbeddingType: "rotary",
            originalArchitecture: gen switch { 3 => "Gemma3ForCausalLM", 2 => "Gemma2ForCausalLM", _ => "GemmaForCausalLM" },
            modelName: modelName, attnScale: attnScale, initializerRange: c.OptDouble("initializer_range") ?? 0.02,
            bosTokenId: c.TokenId("bos_token_id"), eosTokenId: c.TokenId("eos_token_id"), padTokenId: c.TokenId("pad_token_id"),
            nKeyValueHeads: c.OptInt("num_key_value_heads") ?? h, rotaryDim: dh, rotaryBase: c.OptDouble("rope_theta") ?? 10000,
            rotaryBaseLocal: gen == 3 ? c.OptDouble("rope_local_base_freq") ?? 10000 : null,
            gatedMlp: true, useLocalAttn: anyLocal, windowSize: window, attnTypes: anyLocal ? attnTypes : null,
            attnScoresSoftCap: c.OptDouble("attn_logit_softcapping"), outputLogitsSoftCap: c.OptDouble("final_logit_softcapping"),
            useNormalizationBeforeAndAfter: gen >= 2, useQkNorm: gen == 3);
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig cfg)
    {
        var hf = new CheckpointTensors(hfWeights, "Gemma");
        long d = cfg.DModel, dh = cfg.DHead;
        bool sandwich = cfg.UseNormalizationBeforeAndAfter;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        // Gemma's RMSNorm multiplies by (1 + w); TransformerLens stores 1 + w so its RMSNorm stays x·w.
        Tensor Norm(string name, long width) => hf.Get(name, width).to_type(ScalarType.Float32) + 1;

        var embed = hf.Get("model.embed_tokens.weight", cfg.DVocab, d);
        // Gemma scales embeddings by sqrt(d_model) (a float32 constant, as Hugging Face); the tied unembedding is not scaled.
        sd["embed.W_E"] = embed * tensor((float)Math.Sqrt(d), dtype: embed.dtype);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"model.layers.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = Norm(hp + "input_layernorm.weight", d);
            if (sandwich)
            {
                sd[tp + "ln1_post.w"] = Norm(hp + "post_attention_layernorm.weight", d);
                sd[tp + "ln2.w"] = Norm(hp + "pre_feedforward_layernorm.weight", d);
                sd[tp + "ln2_post.w"] = Norm(hp + "post_feedforward_layernorm.weight", d);
            }
            else sd[tp + "ln2.w"] = Norm(hp + "post_attention_layernorm.weight", d);
            DecoderWeights.AddAttention(sd, hf, hp + "self_attn.", tp + "attn.", cfg);
            if (cfg.UseQkNorm)
            {
                sd[tp + "attn.q_norm.w"] = Norm(hp + "self_attn.q_norm.weight", dh);
                sd[tp + "attn.k_norm.w"] = Norm(hp + "self_attn.k_norm.weight", dh);
            }
            DecoderWeights.AddGatedMlp(sd, hf, hp + "mlp.", tp + "mlp.", cfg);
        }
        sd["ln_final.w"] = Norm("model.norm.weight", d);
        // Tied: W_U is the unscaled embedding; a checkpoint may also store lm_head explicitly.
        DecoderWeights.AddUnembed(sd, hf, cfg, embed);
        hf.ThrowOnUnused($"a {cfg.NLayers}-layer model");
        return sd;
    }
}
