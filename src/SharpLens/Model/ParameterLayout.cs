namespace SharpLens.Model;

/// <summary>TransformerLens state-dict names and shapes for a config, in TransformerLens's parameter order.</summary>
public static class ParameterLayout
{
    /// <summary>Every parameter the model needs: name → shape.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> For(HookedTransformerConfig cfg)
    {
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        bool ln = cfg.NormalizationType == "LN";
        var list = new List<(string, long[])> { ("embed.W_E", [cfg.DVocab, d]), ("pos_embed.W_pos", [cfg.NCtx, d]) };
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            if (ln) { list.Add((p + "ln1.w", [d])); list.Add((p + "ln1.b", [d])); }
            if (ln && !cfg.AttnOnly) { list.Add((p + "ln2.w", [d])); list.Add((p + "ln2.b", [d])); }
            list.Add((p + "attn.W_Q", [h, d, dh])); list.Add((p + "attn.W_O", [h, dh, d]));
            list.Add((p + "attn.b_Q", [h, dh])); list.Add((p + "attn.b_O", [d]));
            list.Add((p + "attn.W_K", [h, d, dh])); list.Add((p + "attn.W_V", [h, d, dh]));
            list.Add((p + "attn.b_K", [h, dh])); list.Add((p + "attn.b_V", [h, dh]));
            if (!cfg.AttnOnly)
            {
                list.Add((p + "mlp.W_in", [d, m])); list.Add((p + "mlp.b_in", [m]));
                list.Add((p + "mlp.W_out", [m, d])); list.Add((p + "mlp.b_out", [d]));
            }
        }
        if (ln) { list.Add(("ln_final.w", [d])); list.Add(("ln_final.b", [d])); }
        list.Add(("unembed.W_U", [d, cfg.DVocabOut])); list.Add(("unembed.b_U", [cfg.DVocabOut]));
        return list;
    }
}
