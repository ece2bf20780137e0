using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// Hugging Face decoder projections ([out, in] linear weights, no biases) → TransformerLens's head-major parameters,
/// shared by the families whose checkpoints differ only in names and fusions.
/// </summary>
public static class DecoderWeights
{
    /// <summary>
    /// q/k/v rows ([heads·d_head, d_model]) and o_proj ([d_model, heads·d_head]) → <c>W_Q</c> [h, d, dh], <c>W_K</c>/<c>W_V</c>
    /// (<c>_W_K</c>/<c>_W_V</c> under grouped-query names) [kv, d, dh], <c>W_O</c> [h, dh, d], and zero biases.
    /// </summary>
    public static void AddAttention(Dictionary<string, Tensor> sd, string tlPrefix, HookedTransformerConfig cfg, Tensor q, Tensor k, Tensor v, Tensor o)
    {
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead;
        string K(string n) => tlPrefix + ParameterLayout.KeyValueName(cfg, n);
        sd[tlPrefix + "W_Q"] = q.view(h, dh, d).permute(0, 2, 1);
        sd[K("W_K")] = k.view(kv, dh, d).permute(0, 2, 1);
        sd[K("W_V")] = v.view(kv, dh, d).permute(0, 2, 1);
        sd[tlPrefix + "W_O"] = o.view(d, h, dh).permute(1, 2, 0);
        sd[tlPrefix + "b_Q"] = zeros(h, dh, dtype: q.dtype);
        sd[K("b_K")] = zeros(kv, dh, dtype: q.dtype);
        sd[K("b_V")] = zeros(kv, dh, dtype: q.dtype);
        sd[tlPrefix + "b_O"] = zeros(d, dtype: q.dtype);
    }

    /// <summary>
    /// Separate <c>q_proj</c>/<c>k_proj</c>/<c>v_proj</c>/<c>o_proj</c> weights under <paramref name="hfPrefix"/> (LLaMA-style).
    /// With <paramref name="biasesIfPresent"/>, the projections' biases are read where the checkpoint has them (Qwen2's
    /// q/k/v biases); the others stay zero.
    /// </summary>
    public static void AddAttention(Dictionary<string, Tensor> sd, CheckpointTensors hf, string hfPrefix, string tlPrefix, HookedTransformerConfig cfg,
        bool biasesIfPresent = false)
    {
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead;
        AddAttention(sd, tlPrefix, cfg, hf.Get(hfPrefix + "q_proj.weight", h * dh, d), hf.Get(hfPrefix + "k_proj.weight", kv * dh, d),
            hf.Get(hfPrefix + "v_proj.weight", kv * dh, d), hf.Get(hfPrefix + "o_proj.weight", d, h * dh));
        if (!biasesIfPresent) return;
        void Bias(string tlName, string hfName, params long[] shape)
        {
            if (hf.Has(hfPrefix + hfName)) sd[tlPrefix + tlName] = hf.Get(hfPrefix + hfName, shape.Aggregate(1L, (a, x) => a * x)).view(shape);
        }
        Bias("b_Q", "q_proj.bias", h, dh);
        Bias(ParameterLayout.KeyValueName(cfg, "b_K"), "k_proj.bias", kv, dh);
        Bias(ParameterLayout.KeyValueName(cfg, "b_V"), "v_proj.bias", kv, dh);
        Bias("b_O", "o_proj.bias", d);
    }

    /// <summary>Gated MLP: gate and up [d_mlp, d_model], down [d_model, d_mlp] → <c>W_gate</c>, <c>W_in</c>, <c>W_out</c>, zero biases.</summary>
    public static void AddGatedMlp(Dictionary<string, Tensor> sd, string tlPrefix, HookedTransformerConfig cfg, Tensor gate, Tensor up, Tensor down)
    {
        sd[tlPrefix + "W_in"] = up.t();
        sd[tlPrefix + "W_gate"] = gate.t();
        sd[tlPrefix + "b_in"] = zeros(cfg.DMlp, dtype: up.dtype);
        sd[tlPrefix + "W_out"] = down.t();
        sd[tlPrefix + "b_out"] = zeros(cfg.DModel, dtype: up.dtype);
    }

    /// <summary>Separate <c>gate_proj</c>/<c>up_proj</c>/<c>down_proj</c> weights under <paramref name="hfPrefix"/> (LLaMA-style).</summary>
    public static void AddGatedMlp(Dictionary<string, Tensor> sd, CheckpointTensors hf, string hfPrefix, string tlPrefix, HookedTransformerConfig cfg)
    {
        long d = cfg.DModel, m = cfg.DMlp;
        AddGatedMlp(sd, tlPrefix, cfg, hf.Get(hfPrefix + "gate_proj.weight", m, d), hf.Get(hfPrefix + "up_proj.weight", m, d),
            hf.Get(hfPrefix + "down_proj.weight", d, m));
    }

    /// <summary>
    /// The unembedding: <c>lm_head.weight</c>ᵀ when the checkpoint has it, else the tied embedding ᵀ; plus zero <c>b_U</c>.
    /// With <paramref name="headRequired"/> (config.json does not tie them) a missing <c>lm_head.weight</c> is an error
    /// rather than a silent tie: the checkpoint is incomplete or the config is not its own.
    /// </summary>
    public static void AddUnembed(Dictionary<string, Tensor> sd, CheckpointTensors hf, HookedTransformerConfig cfg, Tensor embed, bool headRequired = false)
    {
        if (headRequired && !hf.Has("lm_head.weight"))
            throw new SharpLensException($"{cfg.OriginalArchitecture} checkpoint has no 'lm_head.weight' but config.json does not set " +
                "tie_word_embeddings = true. Set it if the model ties its unembedding to the token embedding.");
        var head = hf.Has("lm_head.weight") ? hf.Get("lm_head.weight", cfg.DVocabOut, cfg.DModel) : embed;
        sd["unembed.W_U"] = head.t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: embed.dtype);
    }
}
