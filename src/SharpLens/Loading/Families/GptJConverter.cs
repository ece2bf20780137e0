using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Hugging Face GPT-J (<c>GPTJForCausalLM</c>) weights → TransformerLens names and layouts (TransformerLens's
/// <c>convert_gptj_weights</c>). GPT-J's parallel block reads one <c>ln_1</c> for attention and MLP: it becomes both
/// <c>ln1</c> and <c>ln2</c>, as in TransformerLens. q/k/v/out projections have no biases (zeros); the untied
/// <c>lm_head</c> has one, which becomes <c>unembed.b_U</c>.
/// </summary>
public static class GptJConverter
{
    /// <summary>Buffers real GPT-J checkpoints may hold (causal mask, sinusoidal positions): not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal) ||
        name.EndsWith(".attn.embed_positions", StringComparison.Ordinal);

    /// <summary>Converts <paramref name="hf"/> into a new TransformerLens state dict.</summary>
    public static Dictionary<string, Tensor> Convert(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new HfCheckpoint(hf, "GPT-J", "transformer.", "wte.weight");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = ck.Get("wte.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = wte;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            var lnW = ck.Get(hp + "ln_1.weight", [d]);
            var lnB = ck.Get(hp + "ln_1.bias", [d]);
            // The same tensors feed both norms; weight processing only reads norm weights, so sharing is safe.
            (sd[tp + "ln1.w"], sd[tp + "ln1.b"], sd[tp + "ln2.w"], sd[tp + "ln2.b"]) = (lnW, lnB, lnW, lnB);
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = HfCheckpoint.HeadsIn(ck.Get(hp + $"attn.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = zeros(h, dh, dtype: wte.dtype);
            }
            sd[tp + "attn.W_O"] = HfCheckpoint.HeadsOut(ck.Get(hp + "attn.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = zeros(d, dtype: wte.dtype);
            sd[tp + "mlp.W_in"] = ck.Get(hp + "mlp.fc_in.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = ck.Get(hp + "mlp.fc_in.bias", [m]);
            sd[tp + "mlp.W_out"] = ck.Get(hp + "mlp.fc_out.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = ck.Get(hp + "mlp.fc_out.bias", [d]);
        }
        sd["ln_final.w"] = ck.Get("ln_f.weight", [d]);
        sd["ln_final.b"] = ck.Get("ln_f.bias", [d]);
        sd["unembed.W_U"] = ck.Get("lm_head.weight", [cfg.DVocabOut, d], root: true).t();
        sd["unembed.b_U"] = ck.Get("lm_head.bias", [cfg.DVocabOut], root: true);
        ck.RejectUnused(cfg.NLayers, IsBuffer);
        return sd;
    }
}
