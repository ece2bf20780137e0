using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Hugging Face OPT (<c>OPTForCausalLM</c>, pre-LayerNorm without embedding projections) weights → TransformerLens
/// names and layouts (TransformerLens's <c>convert_opt_weights</c>). OPT's position table has two extra leading rows
/// (position p reads row p + 2), so <c>pos_embed.W_pos</c> is rows 2 onwards; <c>lm_head</c> is tied to
/// <c>embed_tokens</c> and usually not stored.
/// </summary>
public static class OptConverter
{
    /// <summary>Rows before position 0 in OPT's learned position table.</summary>
    public const int PositionOffset = 2;

    /// <summary>
    /// Converts <paramref name="hf"/> into a new TransformerLens state dict (adds zero <c>unembed.b_U</c>). Checkpoints
    /// saved with <c>enable_bias: false</c> (no projection / fc biases: zeros) or <c>layer_norm_elementwise_affine:
    /// false</c> (norms without weight and bias: 1 and 0) are recognised by layer 0; every layer must then agree.
    /// </summary>
    public static Dictionary<string, Tensor> Convert(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new HfCheckpoint(hf, "OPT", "model.decoder.", "embed_tokens.weight");
        bool biases = ck.Has("layers.0.self_attn.q_proj.bias"), affineNorms = ck.Has("layers.0.self_attn_layer_norm.weight");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = ck.Get("embed_tokens.weight", [cfg.DVocab, d]);
        var type = embed.dtype;
        Tensor Bias(string name, params long[] shape) => biases ? ck.Get(name, shape) : zeros(shape, dtype: type);
        void Norm(string hfName, string tlName)
        {
            sd[tlName + ".w"] = affineNorms ? ck.Get(hfName + ".weight", [d]) : ones(d, dtype: type);
            sd[tlName + ".b"] = affineNorms ? ck.Get(hfName + ".bias", [d]) : zeros(d, dtype: type);
        }

        sd["embed.W_E"] = embed;
        sd["pos_embed.W_pos"] = ck.Get("embed_positions.weight", [cfg.NCtx + PositionOffset, d])[PositionOffset..];
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"layers.{l}.", tp = $"blocks.{l}.";
            Norm(hp + "self_attn_layer_norm", tp + "ln1");
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = HfCheckpoint.HeadsIn(ck.Get(hp + $"self_attn.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = Bias(hp + $"self_attn.{name}.bias", h * dh).view(h, dh);
            }
            sd[tp + "attn.W_O"] = HfCheckpoint.HeadsOut(ck.Get(hp + "self_attn.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = Bias(hp + "self_attn.out_proj.bias", d);
            Norm(hp + "final_layer_norm", tp + "ln2");
            sd[tp + "mlp.W_in"] = ck.Get(hp + "fc1.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = Bias(hp + "fc1.bias", m);
            sd[tp + "mlp.W_out"] = ck.Get(hp + "fc2.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = Bias(hp + "fc2.bias", d);
        }
        Norm("final_layer_norm", "ln_final");
        sd["unembed.W_U"] = (ck.GetOptional("lm_head.weight", [cfg.DVocabOut, d], root: true) ?? embed).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: type);
        ck.RejectUnused(cfg.NLayers, _ => false);
        return sd;
    }
}
