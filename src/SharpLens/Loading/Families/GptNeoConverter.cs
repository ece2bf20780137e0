using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Hugging Face GPT-Neo (<c>GPTNeoForCausalLM</c>) weights → TransformerLens names and layouts (TransformerLens's
/// <c>convert_neo_weights</c>). q/k/v projections have no biases (zeros); MLP weights are nn.Linear (not GPT-2's
/// Conv1D); <c>lm_head</c> is tied to <c>wte</c> and usually not stored.
/// </summary>
public static class GptNeoConverter
{
    /// <summary>Causal / local-window mask buffers older GPT-Neo checkpoints hold: not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attn.attention.bias", StringComparison.Ordinal) || name.EndsWith(".attn.attention.masked_bias", StringComparison.Ordinal);

    /// <summary>Converts <paramref name="hf"/> into a new TransformerLens state dict (adds zero <c>unembed.b_U</c>).</summary>
    public static Dictionary<string, Tensor> Convert(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new HfCheckpoint(hf, "GPT-Neo", "transformer.", "wte.weight");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = ck.Get("wte.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = wte;
        sd["pos_embed.W_pos"] = ck.Get("wpe.weight", [cfg.NCtx, d]);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = ck.Get(hp + "ln_1.weight", [d]);
            sd[tp + "ln1.b"] = ck.Get(hp + "ln_1.bias", [d]);
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = HfCheckpoint.HeadsIn(ck.Get(hp + $"attn.attention.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = zeros(h, dh, dtype: wte.dtype);
            }
            sd[tp + "attn.W_O"] = HfCheckpoint.HeadsOut(ck.Get(hp + "attn.attention.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = ck.Get(hp + "attn.attention.out_proj.bias", [d]);
            sd[tp + "ln2.w"] = ck.Get(hp + "ln_2.weight", [d]);
            sd[tp + "ln2.b"] = ck.Get(hp + "ln_2.bias", [d]);
            sd[tp + "mlp.W_in"] = ck.Get(hp + "mlp.c_fc.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = ck.Get(hp + "mlp.c_fc.bias", [m]);
            sd[tp + "mlp.W_out"] = ck.Get(hp + "mlp.c_proj.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = ck.Get(hp + "mlp.c_proj.bias", [d]);
        }
        sd["ln_final.w"] = ck.Get("ln_f.weight", [d]);
        sd["ln_final.b"] = ck.Get("ln_f.bias", [d]);
        sd["unembed.W_U"] = (ck.GetOptional("lm_head.weight", [cfg.DVocabOut, d], root: true) ?? wte).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: wte.dtype);
        ck.RejectUnused(cfg.NLayers, IsBuffer);
        return sd;
    }
}
