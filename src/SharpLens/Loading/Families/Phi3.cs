using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Phi-3 (<c>Phi3ForCausalLM</c>): LLaMA-like with fused <c>qkv_proj</c> (rows [q | k | v]) and <c>gate_up_proj</c>
/// (rows [gate | up]). Unlike TransformerLens, the config's <c>sliding_window</c> and <c>partial_rotary_factor</c> are
/// applied as the real model applies them; scaled rotary (LongRoPE of the 128k models) is rejected by name.
/// </summary>
public sealed class Phi3Family : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["Phi3ForCausalLM", "phi3"];

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var c = new HfConfig(hfConfig, modelName);
        int d = c.Int("hidden_size"), h = c.Int("num_attention_heads"), layers = c.Int("num_hidden_layers");
        int dh = c.HeadDim(d, h);
        if (c.RopeScalingType() is { } scaling)
            throw c.Error($"rope_scaling type '{scaling}' is not supported (the 128k-context Phi-3 models use LongRoPE). " +
                "Supported: no rope_scaling, as in microsoft/Phi-3-mini-4k-instruct");
        double partial = c.OptDouble("partial_rotary_factor") ?? 1.0;
        if (!(partial > 0 && partial <= 1)) throw c.Error($"partial_rotary_factor must be in (0, 1], got {partial}");
        int? window = c.OptInt("sliding_window");
        return new HookedTransformerConfig(
            nLayers: layers, dModel: d, nCtx: c.Int("max_position_embeddings"), dHead: dh, nHeads: h,
            dVocab: c.Int("vocab_size"), dMlp: c.Int("intermediate_size"), actFn: c.OptString("hidden_act") ?? "silu",
            normalizationType: "RMS", eps: c.OptDouble("rms_norm_eps") ?? 1e-5, positionalEmbeddingType: "rotary",
            originalArchitecture: "Phi3ForCausalLM", tieWordEmbeddings: c.OptBool("tie_word_embeddings") ?? false, modelName: modelName, initializerRange: c.OptDouble("initializer_range") ?? 0.02,
            bosTokenId: c.TokenId("bos_token_id"), eosTokenId: c.TokenId("eos_token_id"), padTokenId: c.TokenId("pad_token_id"),
            nKeyValueHeads: c.OptInt("num_key_value_heads") ?? h, rotaryDim: (int)(dh * partial),
            rotaryBase: c.OptDouble("rope_theta") ?? 10000, gatedMlp: true,
            // Every layer attends to the last sliding_window keys (Hugging Face's Phi-3 mask); TransformerLens ignores it.
            useLocalAttn: window is not null, windowSize: window);
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig cfg)
    {
        var hf = new CheckpointTensors(hfWeights, "Phi-3");
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = hf.Get("model.embed_tokens.weight", cfg.DVocab, d);
        sd["embed.W_E"] = embed;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"model.layers.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = hf.Get(hp + "input_layernorm.weight", d);
            sd[tp + "ln2.w"] = hf.Get(hp + "post_attention_layernorm.weight", d);
            var qkv = hf.Get(hp + "self_attn.qkv_proj.weight", (h + 2 * kv) * dh, d);
            DecoderWeights.AddAttention(sd, tp + "attn.", cfg, qkv.narrow(0, 0, h * dh), qkv.narrow(0, h * dh, kv * dh),
                qkv.narrow(0, (h + kv) * dh, kv * dh), hf.Get(hp + "self_attn.o_proj.weight", d, h * dh));
            var gateUp = hf.Get(hp + "mlp.gate_up_proj.weight", 2 * m, d);
            DecoderWeights.AddGatedMlp(sd, tp + "mlp.", cfg, gateUp.narrow(0, 0, m), gateUp.narrow(0, m, m), hf.Get(hp + "mlp.down_proj.weight", d, m));
        }
        sd["ln_final.w"] = hf.Get("model.norm.weight", d);
        DecoderWeights.AddUnembed(sd, hf, cfg, embed, headRequired: !cfg.TieWordEmbeddings);
        hf.ThrowOnUnused($"a {cfg.NLayers}-layer model");
        return sd;
    }
}
