using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Hugging Face GPT-NeoX / Pythia (<c>GPTNeoXForCausalLM</c>) weights → TransformerLens names and layouts
/// (TransformerLens's <c>convert_neox_weights</c>). The fused <c>query_key_value</c> rows are ordered
/// (head, [q|k|v], d_head); <c>embed_out</c> is the untied unembedding without a bias.
/// </summary>
public static class GptNeoXConverter
{
    /// <summary>Buffers real Pythia checkpoints may hold (causal mask, rotary frequencies): not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attention.bias", StringComparison.Ordinal) || name.EndsWith(".attention.masked_bias", StringComparison.Ordinal) ||
        name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal);

    /// <summary>Converts <paramref name="hf"/> into a new TransformerLens state dict (adds zero <c>unembed.b_U</c>).</summary>
    public static Dictionary<string, Tensor> Convert(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new HfCheckpoint(hf, "GPT-NeoX", "gpt_neox.", "embed_in.weight");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = ck.Get("embed_in.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = embed;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"layers.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = ck.Get(hp + "input_layernorm.weight", [d]);
            sd[tp + "ln1.b"] = ck.Get(hp + "input_layernorm.bias", [d]);
            sd[tp + "ln2.w"] = ck.Get(hp + "post_attention_layernorm.weight", [d]);
            sd[tp + "ln2.b"] = ck.Get(hp + "post_attention_layernorm.bias", [d]);

            // Rows (head, [q|k|v], d_head): view as [head, 3, d_head, d_model] and take q, k, v per head.
            var qkv = ck.Get(hp + "attention.query_key_value.weight", [3 * d, d]).view(h, 3, dh, d);
            // attention_bias=false checkpoints (newer NeoX configs) have no q/k/v or dense bias: zeros, as nn.Linear(bias=False) means.
            var qkvBias = ck.GetOptional(hp + "attention.query_key_value.bias", [3 * d])?.view(h, 3, dh);
            string[] w = ["W_Q", "W_K", "W_V"], b = ["b_Q", "b_K", "b_V"];
            for (int i = 0; i < 3; i++)
            {
                sd[tp + "attn." + w[i]] = qkv.select(1, i).permute(0, 2, 1); // [h, dh, d] → [h, d, dh]
                sd[tp + "attn." + b[i]] = qkvBias?.select(1, i) ?? zeros(h, dh, dtype: embed.dtype);
            }
            sd[tp + "attn.W_O"] = HfCheckpoint.HeadsOut(ck.Get(hp + "attention.dense.weight", [d, d]), h, dh);
            sd[tp + "attn.b_O"] = ck.GetOptional(hp + "attention.dense.bias", [d]) ?? zeros(d, dtype: embed.dtype);
            sd[tp + "mlp.W_in"] = ck.Get(hp + "mlp.dense_h_to_4h.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = ck.Get(hp + "mlp.dense_h_to_4h.bias", [m]);
            sd[tp + "mlp.W_out"] = ck.Get(hp + "mlp.dense_4h_to_h.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = ck.Get(hp + "mlp.dense_4h_to_h.bias", [d]);
        }
        sd["ln_final.w"] = ck.Get("final_layer_norm.weight", [d]);
        sd["ln_final.b"] = ck.Get("final_layer_norm.bias", [d]);
        sd["unembed.W_U"] = ck.Get("embed_out.weight", [cfg.DVocabOut, d], root: true).t(); // untied in every NeoX model
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: embed.dtype);
        ck.RejectUnused(cfg.NLayers, IsBuffer);
        return sd;
    }
}
