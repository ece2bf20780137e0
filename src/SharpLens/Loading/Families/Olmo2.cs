using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// OLMo-2 (<c>Olmo2ForCausalLM</c>): post-norm blocks (attention and MLP read the residual directly; their outputs
/// are RMS-normalised by <c>ln1</c>/<c>ln2</c> = Hugging Face's post_attention / post_feedforward norms before being
/// added) and q/k RMSNorms over the whole projection. Grouped-query checkpoints (OLMo-2 32B) load with their key/value
/// head count, which TransformerLens's OLMo-2 path does not support.
/// </summary>
public sealed class Olmo2Family : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["Olmo2ForCausalLM", "olmo2"];

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var c = new HfConfig(hfConfig, modelName);
        int d = c.Int("hidden_size"), h = c.Int("num_attention_heads");
        if (c.RopeScalingType() is { } scaling)
            throw c.Error($"rope_scaling type '{scaling}' is not supported for OLMo-2 (its released checkpoints use none). Supported: no rope_scaling");
        int kv = c.OptInt("num_key_value_heads") ?? h;
        return new HookedTransformerConfig(
            nLayers: c.Int("num_hidden_layers"), dModel: d, nCtx: c.Int("max_position_embeddings"), dHead: c.HeadDim(d, h), nHeads: h,
            dVocab: c.Int("vocab_size"), dMlp: c.Int("intermediate_size"), actFn: c.OptString("hidden_act") ?? "silu",
            normalizationType: "RMS", eps: c.OptDouble("rms_norm_eps") ?? 1e-6, positionalEmbeddingType: "rotary",
            originalArchitecture: "Olmo2ForCausalLM", tieWordEmbeddings: c.OptBool("tie_word_embeddings") ?? false, modelName: modelName, initializerRange: c.OptDouble("initializer_range") ?? 0.02,
            bosTokenId: c.TokenId("bos_token_id"), eosTokenId: c.TokenId("eos_token_id"), padTokenId: c.TokenId("pad_token_id"),
            // TransformerLens's OLMo-2 models have no n_key_value_heads (plain W_K/W_V names); keep that unless grouped.
            nKeyValueHeads: kv == h ? null : kv, rotaryBase: c.OptDouble("rope_theta") ?? 10000, gatedMlp: true,
            useQkNormOverProjection: true, usePostNormBlock: true);
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig cfg)
    {
        var hf = new CheckpointTensors(hfWeights, "OLMo-2");
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = hf.Get("model.embed_tokens.weight", cfg.DVocab, d);
        sd["embed.W_E"] = embed;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"model.layers.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = hf.Get(hp + "post_attention_layernorm.weight", d);
            sd[tp + "ln2.w"] = hf.Get(hp + "post_feedforward_layernorm.weight", d);
            DecoderWeights.AddAttention(sd, hf, hp + "self_attn.", tp + "attn.", cfg);
            sd[tp + "attn.q_norm.w"] = hf.Get(hp + "self_attn.q_norm.weight", h * dh);
            sd[tp + "attn.k_norm.w"] = hf.Get(hp + "self_attn.k_norm.weight", kv * dh);
            DecoderWeights.AddGatedMlp(sd, hf, hp + "mlp.", tp + "mlp.", cfg);
        }
        sd["ln_final.w"] = hf.Get("model.norm.weight", d);
        DecoderWeights.AddUnembed(sd, hf, cfg, embed, headRequired: !cfg.TieWordEmbeddings);
        hf.ThrowOnUnused($"a {cfg.NLayers}-layer model");
        return sd;
    }
}
