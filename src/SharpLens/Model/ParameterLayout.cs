namespace SharpLens.Model;

/// <summary>
/// TransformerLens state-dict names and shapes for a config, in TransformerLens's parameter order. Derived from the
/// parts the config selects: a weighted norm (LN: w, b; RMS: w) has parameters, a folded one (LNPre, RMSPre) none;
/// learned positions add <c>pos_embed.W_pos</c>; grouped-query attention names its key/value parameters
/// <c>attn._W_K</c> ... with n_key_value_heads; a gated MLP adds <c>mlp.W_gate</c>; q/k norms and sandwich norms add
/// their weights (never folded).
/// </summary>
public static class ParameterLayout
{
    /// <summary>The key weight's name suffix: <c>W_K</c>, or <c>_W_K</c> under grouped-query attention (likewise V and the biases).</summary>
    public static string KeyValueName(HookedTransformerConfig cfg, string name) => cfg.UsesGroupedQueryNames ? "_" + name : name;

    /// <summary>Every parameter the model needs: name → shape.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> For(HookedTransformerConfig cfg)
    {
        long d = cfg.DModel, h = cfg.NHeads, kv = cfg.KvHeads, dh = cfg.DHead, m = cfg.DMlp;
        var list = new List<(string, long[])> { ("embed.W_E", [cfg.DVocab, d]) };
        if (cfg.PositionalEmbeddingType == "standard") list.Add(("pos_embed.W_pos", [cfg.NCtx, d]));
        void Norm(string prefix, long width, string? kind)
        {
            if (kind is "LN" or "RMS") list.Add((prefix + ".w", [width]));
            if (kind is "LN") list.Add((prefix + ".b", [width]));
        }
        // Norms that are never folded keep their weights when the block norms become LNPre/RMSPre.
        string? weighted = cfg.NormalizationType switch { "LNPre" => "LN", "RMSPre" => "RMS", var k => k };
        string K(string n) => KeyValueName(cfg, n);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            Norm(p + "ln1", d, cfg.NormalizationType);
            if (!cfg.AttnOnly) Norm(p + "ln2", d, cfg.NormalizationType);
            if (cfg.UseNormalizationBeforeAndAfter)
            {
                Norm(p + "ln1_post", d, weighted);
                if (!cfg.AttnOnly) Norm(p + "ln2_post", d, weighted);
            }
            list.Add((p + "attn.W_Q", [h, d, dh])); list.Add((p + "attn.W_O", [h, dh, d]));
            list.Add((p + "attn.b_Q", [h, dh])); list.Add((p + "attn.b_O", [d]));
            list.Add((p + "attn." + K("W_K"), [kv, d, dh])); list.Add((p + "attn." + K("W_V"), [kv, d, dh]));
            list.Add((p + "attn." + K("b_K"), [kv, dh])); list.Add((p + "attn." + K("b_V"), [kv, dh]));
            if (cfg.UseQkNorm) { Norm(p + "attn.q_norm", dh, weighted); Norm(p + "attn.k_norm", dh, weighted); }
            if (cfg.UseQkNormOverProjection) { Norm(p + "attn.q_norm", h * dh, weighted); Norm(p + "attn.k_norm", kv * dh, weighted); }
            if (!cfg.AttnOnly)
            {
                list.Add((p + "mlp.W_in", [d, m]));
                if (cfg.GatedMlp) list.Add((p + "mlp.W_gate", [d, m]));
                list.Add((p + "mlp.b_in", [m]));
                list.Add((p + "mlp.W_out", [m, d])); list.Add((p + "mlp.b_out", [d]));
            }
        }
        Norm("ln_final", d, cfg.NormalizationType);
        list.Add(("unembed.W_U", [d, cfg.DVocabOut])); list.Add(("unembed.b_U", [cfg.DVocabOut]));
        return list;
    }
}
