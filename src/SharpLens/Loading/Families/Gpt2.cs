using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

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
        var used = new HashSet<string>(StringComparer.Ordinal);
        string prefix = hf.ContainsKey("transformer.wte.weight") ? "transformer." : "";
        Tensor Get(string key)
        {
            if (!hf.TryGetValue(prefix + key, out var t))
                throw new SharpLensException($"GPT-2 checkpoint is missing parameter '{prefix + key}'." +
                    NameSuggestions.DidYouMean(prefix + key, hf.Keys));
            used.Add(prefix + key);
            return t;
        }
        Tensor Expect(Tensor t, string key, params long[] shape)
        {
            if (!t.shape.SequenceEqual(shape))
                throw new SharpLensException($"GPT-2 checkpoint parameter '{prefix + key}' has shape {TensorExtensions.ShapeText(t.shape)}, " +
                    $"expected {TensorExtensions.ShapeText(shape)} from config.json.");
            return t;
        }

        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = Expect(Get("wte.weight"), "wte.weight", cfg.DVocab, d);
        sd["embed.W_E"] = wte;
        sd["pos_embed.W_pos"] = Expect(Get("wpe.weight"), "wpe.weight", cfg.NCtx, d);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            sd[tp + "ln1.w"] = Expect(Get(hp + "ln_1.weight"), hp + "ln_1.weight", d);
            sd[tp + "ln1.b"] = Expect(Get(hp + "ln_1.bias"), hp + "ln_1.bias", d);
            sd[tp + "ln2.w"] = Expect(Get(hp + "ln_2.weight"), hp + "ln_2.weight", d);
            sd[tp + "ln2.b"] = Expect(Get(hp + "ln_2.bias"), hp + "ln_2.bias", d);

            var wAttn = Expect(Get(hp + "attn.c_attn.weight"), hp + "attn.c_attn.weight", d, 3 * d).view(d, 3, h, dh);
            var bAttn = Expect(Get(hp + "attn.c_attn.bias"), hp + "attn.c_attn.bias", 3 * d).view(3, h, dh);
            string[] w = ["W_Q", "W_K", "W_V"], b = ["b_Q", "b_K", "b_V"];
            for (int i = 0; i < 3; i++)
            {
                sd[tp + "attn." + w[i]] = wAttn.select(1, i).permute(1, 0, 2); // [d, h, dh] → [h, d, dh]
                sd[tp + "attn." + b[i]] = bAttn.select(0, i);
            }
            sd[tp + "attn.W_O"] = Expect(Get(hp + "attn.c_proj.weight"), hp + "attn.c_proj.weight", d, d).view(h, dh, d);
            sd[tp + "attn.b_O"] = Expect(Get(hp + "attn.c_proj.bias"), hp + "attn.c_proj.bias", d);
            sd[tp + "mlp.W_in"] = Expect(Get(hp + "mlp.c_fc.weight"), hp + "mlp.c_fc.weight", d, m);
            sd[tp + "mlp.b_in"] = Expect(Get(hp + "mlp.c_fc.bias"), hp + "mlp.c_fc.bias", m);
            sd[tp + "mlp.W_out"] = Expect(Get(hp + "mlp.c_proj.weight"), hp + "mlp.c_proj.weight", m, d);
            sd[tp + "mlp.b_out"] = Expect(Get(hp + "mlp.c_proj.bias"), hp + "mlp.c_proj.bias", d);
        }
        sd["ln_final.w"] = Expect(Get("ln_f.weight"), "ln_f.weight", d);
        sd["ln_final.b"] = Expect(Get("ln_f.bias"), "ln_f.bias", d);
        // GPT-2 ties the unembedding to wte; a checkpoint may also store lm_head.weight explicitly.
        sd["unembed.W_U"] = (hf.TryGetValue("lm_head.weight", out var head) ? head : wte).t();
        used.Add("lm_head.weight");
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: wte.dtype);

        var unexpected = hf.Keys.Where(k => !used.Contains(k) && !IsMaskBuffer(k)).ToList();
        if (unexpected.Count > 0)
            throw new SharpLensException($"GPT-2 checkpoint has {unexpected.Count} unexpected parameter(s) for a {cfg.NLayers}-layer model: " +
                string.Join(", ", unexpected.Take(8)) + (unexpected.Count > 8 ? ", ..." : "") + ".");
        return sd;
    }
}
