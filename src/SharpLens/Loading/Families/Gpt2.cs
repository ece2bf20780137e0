using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>GPT-2 and DistilGPT-2 (<c>GPT2LMHeadModel</c>).</summary>
public sealed class Gpt2Family : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["GPT2LMHeadModel", "GPT2Model", "gpt2"];

    /// <summary>
    /// The config TransformerLens derives from a GPT-2 <c>config.json</c> (<c>n_embd</c>, <c>n_layer</c>, <c>n_head</c>,
    /// <c>n_positions</c>, <c>vocab_size</c>, <c>n_inner</c>, <c>activation_function</c>, <c>layer_norm_epsilon</c>, ...).
    /// </summary>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var hf = new HfConfig(hfConfig, modelName);
        int dModel = hf.Int("n_embd"), nHeads = hf.Int("n_head");
        if (nHeads <= 0 || dModel % nHeads != 0)
            throw hf.Error($"n_embd {dModel} is not divisible by n_head {nHeads}");
        return new HookedTransformerConfig(
            nLayers: hf.Int("n_layer"), dModel: dModel, nCtx: hf.OptInt("n_positions") ?? hf.Int("n_ctx"), dHead: dModel / nHeads,
            nHeads: nHeads, dVocab: hf.Int("vocab_size"), dMlp: hf.OptInt("n_inner") ?? 4 * dModel,
            actFn: hf.OptString("activation_function") ?? "gelu_new", eps: hf.OptDouble("layer_norm_epsilon") ?? 1e-5,
            originalArchitecture: "GPT2LMHeadModel", modelName: modelName, tokenizerName: "gpt2",
            scaleAttnByInverseLayerIdx: hf.OptBool("scale_attn_by_inverse_layer_idx") ?? false,
            initializerRange: hf.OptDouble("initializer_range") ?? 0.02,
            bosTokenId: hf.OptInt("bos_token_id"), eosTokenId: hf.OptInt("eos_token_id"), padTokenId: hf.OptInt("pad_token_id"));
    }

    /// <inheritdoc/>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig config) =>
        Gpt2Converter.Convert(hfWeights, config);

    /// <inheritdoc/>
    public bool IsUnused(string checkpointName) => Gpt2Converter.IsMaskBuffer(checkpointName);
}

/// <summary>
/// Hugging Face GPT-2 (<c>GPT2LMHeadModel</c>) weights → TransformerLens names and head-major layouts
/// (TransformerLens's <c>convert_gpt2_weights</c>). HF uses Conv1D, i.e. [in, out] matrices; <c>c_attn</c>'s
/// columns are [q | k | v], each (head, d_head). Keys with or without the <c>transformer.</c> prefix are accepted;
/// causal-mask buffers (<c>attn.bias</c>, <c>attn.masked_bias</c>) and the tied <c>lm_head</c> are ignored.
/// </summary>
public static class Gpt2Converter
{
    /// <summary>GPT-2's causal-mask buffers (<c>h.N.attn.bias</c>, <c>h.N.attn.masked_bias</c>): not parameters.</summary>
    public static bool IsMaskBuffer(string name) => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal);

    /// <summary>Converts <paramref name="hf"/> into a new TransformerLens state dict (adds zero <c>unembed.b_U</c>).</summary>
    public static Dictionary<string, Tensor> Convert(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new CheckpointTensors(hf, "GPT-2");
        string prefix = hf.ContainsKey("transformer.wte.weight") ? "transformer." : "";
        Tensor Get(string key, params long[] shape) => ck.Get(prefix + key, shape);

        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = Get("wte.weight", cfg.DVocab, d);
        sd["embed.W_E"] = wte;
        sd["pos_embed.W_pos"] = Get("wpe.weight", cfg.NCtx, d);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = Get(hp + "ln_1.weight", d);
            sd[tp + "ln1.b"] = Get(hp + "ln_1.bias", d);
            sd[tp + "ln2.w"] = Get(hp + "ln_2.weight", d);
            sd[tp + "ln2.b"] = Get(hp + "ln_2.bias", d);

            var wAttn = Get(hp + "attn.c_attn.weight", d, 3 * d).view(d, 3, h, dh);
            var bAttn = Get(hp + "attn.c_attn.bias", 3 * d).view(3, h, dh);
            string[] w = ["W_Q", "W_K", "W_V"], b = ["b_Q", "b_K", "b_V"];
            for (int i = 0; i < 3; i++)
            {
                sd[tp + "attn." + w[i]] = wAttn.select(1, i).permute(1, 0, 2); // [d, h, dh] → [h, d, dh]
                sd[tp + "attn." + b[i]] = bAttn.select(0, i);
            }
            sd[tp + "attn.W_O"] = Get(hp + "attn.c_proj.weight", d, d).view(h, dh, d);
            sd[tp + "attn.b_O"] = Get(hp + "attn.c_proj.bias", d);
            sd[tp + "mlp.W_in"] = Get(hp + "mlp.c_fc.weight", d, m);
            sd[tp + "mlp.b_in"] = Get(hp + "mlp.c_fc.bias", m);
            sd[tp + "mlp.W_out"] = Get(hp + "mlp.c_proj.weight", m, d);
            sd[tp + "mlp.b_out"] = Get(hp + "mlp.c_proj.bias", d);
        }
        sd["ln_final.w"] = Get("ln_f.weight", d);
        sd["ln_final.b"] = Get("ln_f.bias", d);
        // GPT-2 ties the unembedding to wte; a checkpoint may also store lm_head.weight explicitly.
        sd["unembed.W_U"] = (ck.Has("lm_head.weight") ? ck.Get("lm_head.weight", cfg.DVocabOut, d) : wte).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: wte.dtype);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer model", IsMaskBuffer);
        return sd;
    }
}
