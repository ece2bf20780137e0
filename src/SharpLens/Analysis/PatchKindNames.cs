namespace SharpLens.Analysis;

/// <summary>The command-line / JSON names of <see cref="PatchKind"/> (TransformerLens's patching function suffixes).</summary>
public static class PatchKindNames
{
    /// <summary>Every kind by name, in the order help texts list them.</summary>
    public static IReadOnlyDictionary<string, PatchKind> ByName { get; } = new Dictionary<string, PatchKind>(StringComparer.Ordinal)
    {
        ["resid_pre"] = PatchKind.ResidPre, ["resid_mid"] = PatchKind.ResidMid, ["attn_out"] = PatchKind.AttnOut, ["mlp_out"] = PatchKind.MlpOut,
        ["head_out_all_pos"] = PatchKind.HeadOutAllPos, ["head_out_by_pos"] = PatchKind.HeadOutByPos,
        ["head_q_all_pos"] = PatchKind.HeadQAllPos, ["head_k_all_pos"] = PatchKind.HeadKAllPos, ["head_v_all_pos"] = PatchKind.HeadVAllPos,
        ["head_pattern_all_pos"] = PatchKind.HeadPatternAllPos,
    };

    /// <summary>The kind named <paramref name="name"/>; an unknown name fails listing the allowed ones and the closest.</summary>
    public static PatchKind Parse(string name, string what = "patching kind") =>
        ByName.TryGetValue(name, out var kind) ? kind
        : throw new SharpLensException($"Unknown {what} '{name}'. Allowed: {string.Join(", ", ByName.Keys)}." + NameSuggestions.DidYouMean(name, ByName.Keys));
}
