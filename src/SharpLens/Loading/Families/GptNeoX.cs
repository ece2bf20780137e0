using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// GPT-NeoX / Pythia (<c>GPTNeoXForCausalLM</c>): parallel attention + MLP blocks, rotary embeddings on the first
/// <c>rotary_pct</c> of each head (rotate-half pairing), untied <c>embed_out</c> without a bias.
/// Config as TransformerLens's <c>convert_hf_model_config</c>, except that SharpLens follows the real model where
/// TransformerLens ignores a field: <c>rotary_emb_base</c> / <c>rope_theta</c> (TL: always 10000),
/// <c>use_parallel_residual: false</c> (TL: always parallel) and <c>rotary_dim = int(d_head·rotary_pct)</c> (TL rounds).
/// </summary>
public sealed class GptNeoXFamily : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["GPTNeoXForCausalLM", "GPTNeoXModel", "gpt_neox"];

    /// <summary>
    /// Pythia (standard and <c>-deduped</c>; training checkpoints are revisions such as <c>step143000</c>) and
    /// GPT-NeoX-20B, with TransformerLens's aliases (including the names EleutherAI used before renaming the sizes).
    /// </summary>
    internal static IReadOnlyList<ModelInfo> RegistryRows { get; } =
    [
        .. Pythia("70m", layers: 6, d: 512, vocab: 50304, oldName: "19m", extra: ["pythia"]),
        .. Pythia("160m", layers: 12, d: 768, vocab: 50304, oldName: "125m"),
        .. Pythia("410m", layers: 24, d: 1024, vocab: 50304, oldName: "350m"),
        .. Pythia("1b", layers: 16, d: 2048, vocab: 50304, oldName: "800m"),
        .. Pythia("1.4b", layers: 24, d: 2048, vocab: 50304, oldName: "1.3b"),
        .. Pythia("2.8b", layers: 32, d: 2560, vocab: 50304, oldName: "2.7b"),
        .. Pythia("6.9b", layers: 32, d: 4096, vocab: 50432, oldName: "6.7b"),
        .. Pythia("12b", layers: 36, d: 5120, vocab: 50688, oldName: "13b"),
        Row("gpt-neox-20b", "EleutherAI/gpt-neox-20b", "20B", layers: 44, d: 6144, vocab: 50432, ["gpt-neox", "neox"]),
    ];

    private static IEnumerable<ModelInfo> Pythia(string size, int layers, int d, int vocab, string oldName, string[]? extra = null)
    {
        yield return Row($"pythia-{size}", $"EleutherAI/pythia-{size}", size.ToUpperInvariant(), layers, d, vocab, [.. extra ?? [], $"pythia-{oldName}"]);
        yield return Row($"pythia-{size}-deduped", $"EleutherAI/pythia-{size}-deduped", size.ToUpperInvariant(), layers, d, vocab, [$"pythia-{oldName}-deduped"]);
    }

    /// <summary>A row with counts from the shape: untied embed_in/embed_out, d_mlp = 4·d_model, biases everywhere.</summary>
    private static ModelInfo Row(string name, string repo, string size, int layers, int d, int vocab, string[] aliases)
    {
        long dm = d, m = 4L * d;
        long perLayer = 4 * dm + (4 * dm * dm + 4 * dm) + (2 * dm * m + m + dm); // two LayerNorms, qkv + dense, MLP
        return new ModelInfo(name, repo, aliases, size, 2L * vocab * dm + layers * perLayer + 2 * dm, layers * (4 * dm * dm + 2 * dm * m));
    }

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var r = new HfConfig(hfConfig, modelName);
        int d = r.Int("hidden_size"), heads = r.Int("num_attention_heads");
        int dHead = r.HeadDim("hidden_size", "num_attention_heads");
        if (hfConfig["rope_scaling"] is JsonObject scaling && scaling["rope_type"]?.ToString() is not (null or "default"))
            throw r.Error($"rope_scaling {scaling.ToJsonString()} is not supported; SharpLens runs GPT-NeoX with plain rotary embeddings (as every Pythia model)");
        // transformers v5 moved rotary settings into rope_parameters; older configs have rotary_pct / rotary_emb_base / rope_theta.
        double? RopeParameter(string key) => hfConfig["rope_parameters"] is JsonObject rope ? new HfConfig(rope, modelName).OptDouble(key) : null;
        double pct = r.OptDouble("rotary_pct") ?? RopeParameter("partial_rotary_factor") ?? 0.25;
        double theta = r.OptDouble("rope_theta") ?? r.OptDouble("rotary_emb_base") ?? RopeParameter("rope_theta") ?? 10000;
        return new HookedTransformerConfig(
            nLayers: r.Int("num_hidden_layers"), dModel: d, nCtx: r.Int("max_position_embeddings"), dHead: dHead, nHeads: heads,
            dVocab: r.Int("vocab_size"), dMlp: r.Int("intermediate_size"), actFn: r.OptString("hidden_act") ?? "gelu",
            eps: r.OptDouble("layer_norm_eps") ?? 1e-5, positionalEmbeddingType: "rotary", originalArchitecture: "GPTNeoXForCausalLM",
            defaultPrependBos: false, modelName: modelName,
            rotaryDim: (int)(dHead * pct), rotaryBase: theta, rotaryAdjacentPairs: false,
            parallelAttnMlp: r.OptBool("use_parallel_residual") ?? true,
            bosTokenId: r.OptInt("bos_token_id"), eosTokenId: r.OptInt("eos_token_id"), padTokenId: r.OptInt("pad_token_id"));
    }

    /// <inheritdoc/>
    public bool IsUnused(string checkpointName) => IsBuffer(checkpointName);

    /// <summary>Buffers real Pythia checkpoints may hold (causal mask, rotary frequencies): not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attention.bias", StringComparison.Ordinal) || name.EndsWith(".attention.masked_bias", StringComparison.Ordinal) ||
        name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    /// <summary>
    /// Weights → TransformerLens names and layouts (TransformerLens's <c>convert_neox_weights</c>): the fused
    /// <c>query_key_value</c> rows are ordered (head, [q|k|v], d_head); zero <c>unembed.b_U</c> is added. Checkpoints of
    /// <c>attention_bias: false</c> models (no q/k/v/dense biases, recognised by layer 0) get zero biases.
    /// </summary>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new CheckpointTensors(hf, "GPT-NeoX");
        string p = hf.ContainsKey("gpt_neox.embed_in.weight") ? "gpt_neox." : ""; // causal-LM checkpoints prefix the base model's weights
        Tensor Get(string name, params long[] shape) => ck.Get(p + name, shape);
        bool biases = ck.Has(p + "layers.0.attention.query_key_value.bias");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = Get("embed_in.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = embed;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"layers.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = Get(hp + "input_layernorm.weight", [d]);
            sd[tp + "ln1.b"] = Get(hp + "input_layernorm.bias", [d]);
            sd[tp + "ln2.w"] = Get(hp + "post_attention_layernorm.weight", [d]);
            sd[tp + "ln2.b"] = Get(hp + "post_attention_layernorm.bias", [d]);

            // Rows (head, [q|k|v], d_head): view as [head, 3, d_head, d_model] and take q, k, v per head.
            var qkv = Get(hp + "attention.query_key_value.weight", [3 * d, d]).view(h, 3, dh, d);
            var qkvBias = biases ? Get(hp + "attention.query_key_value.bias", [3 * d]).view(h, 3, dh) : null;
            string[] w = ["W_Q", "W_K", "W_V"], b = ["b_Q", "b_K", "b_V"];
            for (int i = 0; i < 3; i++)
            {
                sd[tp + "attn." + w[i]] = qkv.select(1, i).permute(0, 2, 1); // [h, dh, d] → [h, d, dh]
                sd[tp + "attn." + b[i]] = qkvBias?.select(1, i) ?? zeros(h, dh, dtype: embed.dtype);
            }
            sd[tp + "attn.W_O"] = CheckpointTensors.HeadsOut(Get(hp + "attention.dense.weight", [d, d]), h, dh);
            sd[tp + "attn.b_O"] = biases ? Get(hp + "attention.dense.bias", [d]) : zeros(d, dtype: embed.dtype);
            sd[tp + "mlp.W_in"] = Get(hp + "mlp.dense_h_to_4h.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = Get(hp + "mlp.dense_h_to_4h.bias", [m]);
            sd[tp + "mlp.W_out"] = Get(hp + "mlp.dense_4h_to_h.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = Get(hp + "mlp.dense_4h_to_h.bias", [d]);
        }
        sd["ln_final.w"] = Get("final_layer_norm.weight", [d]);
        sd["ln_final.b"] = Get("final_layer_norm.bias", [d]);
        sd["unembed.W_U"] = ck.Get("embed_out.weight", cfg.DVocabOut, d).t(); // untied in every NeoX model
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: embed.dtype);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer model", IsBuffer);
        return sd;
    }
}
