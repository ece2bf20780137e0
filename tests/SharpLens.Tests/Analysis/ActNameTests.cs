namespace SharpLens.Tests.Analysis;

public sealed class ActNameTests
{
    // Expected names are what TransformerLens's utils.get_act_name returns for the same arguments (derived from its source).
    [Theory]
    [InlineData("blocks.0.attn.hook_pattern", null, null, "blocks.0.attn.hook_pattern")]
    [InlineData("hook_embed", null, null, "hook_embed")]
    [InlineData("blocks.3.hook_resid_post", null, null, "blocks.3.hook_resid_post")]
    [InlineData("embed", null, null, "hook_embed")]
    [InlineData("pos_embed", null, null, "hook_pos_embed")]
    [InlineData("scale", null, null, "ln_final.hook_scale")]
    [InlineData("normalized", null, null, "ln_final.hook_normalized")]
    [InlineData("k6", null, null, "blocks.6.attn.hook_k")]
    [InlineData("pattern0", null, null, "blocks.0.attn.hook_pattern")]
    [InlineData("attn0", null, null, "blocks.0.attn.hook_pattern")]
    [InlineData("q3", null, null, "blocks.3.attn.hook_q")]
    [InlineData("z11", null, null, "blocks.11.attn.hook_z")]
    [InlineData("v2", null, null, "blocks.2.attn.hook_v")]
    [InlineData("scale4ln1", null, null, "blocks.4.ln1.hook_scale")]
    [InlineData("normalized27ln2", null, null, "blocks.27.ln2.hook_normalized")]
    [InlineData("pre5", null, null, "blocks.5.mlp.hook_pre")]
    [InlineData("post1", null, null, "blocks.1.mlp.hook_post")]
    [InlineData("mid2", null, null, "blocks.2.mlp.hook_mid")]
    [InlineData("result7", null, null, "blocks.7.attn.hook_result")]
    [InlineData("k6a", null, null, "blocks.6.attn.hook_k")]
    [InlineData("k", 6, "a", "blocks.6.attn.hook_k")]
    [InlineData("pre", 2, null, "blocks.2.mlp.hook_pre")]
    [InlineData("normalized", 27, "ln2", "blocks.27.ln2.hook_normalized")]
    [InlineData("scale", 0, "ln1", "blocks.0.ln1.hook_scale")]
    [InlineData("resid_pre", 5, null, "blocks.5.hook_resid_pre")]
    [InlineData("resid_mid", 0, null, "blocks.0.hook_resid_mid")]
    [InlineData("resid_post", 11, null, "blocks.11.hook_resid_post")]
    [InlineData("attn_out", 3, null, "blocks.3.hook_attn_out")]
    [InlineData("mlp_out", 3, null, "blocks.3.hook_mlp_out")]
    [InlineData("resid_pre", 5, "b", "blocks.5.hook_resid_pre")]
    [InlineData("resid_post", 1, "block", "blocks.1.hook_resid_post")]
    [InlineData("resid_post", 1, "blocks", "blocks.1.hook_resid_post")]
    [InlineData("attn_in", 2, null, "blocks.2.hook_attn_in")]
    [InlineData("q_input", 1, null, "blocks.1.hook_q_input")]
    [InlineData("k_input", 1, null, "blocks.1.hook_k_input")]
    [InlineData("v_input", 1, null, "blocks.1.hook_v_input")]
    [InlineData("mlp_in", 4, null, "blocks.4.hook_mlp_in")]
    [InlineData("q", 0, null, "blocks.0.attn.hook_q")]
    [InlineData("k", 0, "m", "blocks.0.attn.hook_k")]
    [InlineData("v", 0, "attention", "blocks.0.attn.hook_v")]
    [InlineData("z", 1, null, "blocks.1.attn.hook_z")]
    [InlineData("result", 1, null, "blocks.1.attn.hook_result")]
    [InlineData("attn", 1, null, "blocks.1.attn.hook_pattern")]
    [InlineData("pattern", 1, null, "blocks.1.attn.hook_pattern")]
    [InlineData("attn_scores", 1, null, "blocks.1.attn.hook_attn_scores")]
    [InlineData("attn_logits", 1, null, "blocks.1.attn.hook_attn_scores")]
    [InlineData("key", 2, null, "blocks.2.attn.hook_k")]
    [InlineData("query", 2, null, "blocks.2.attn.hook_q")]
    [InlineData("value", 2, null, "blocks.2.attn.hook_v")]
    [InlineData("rot_k", 2, null, "blocks.2.attn.hook_rot_k")]
    [InlineData("rot_q", 2, null, "blocks.2.attn.hook_rot_q")]
    [InlineData("pre", 0, null, "blocks.0.mlp.hook_pre")]
    [InlineData("post", 0, null, "blocks.0.mlp.hook_post")]
    [InlineData("mid", 0, null, "blocks.0.mlp.hook_mid")]
    [InlineData("pre_linear", 0, null, "blocks.0.mlp.hook_pre_linear")]
    [InlineData("mlp_pre", 0, null, "blocks.0.mlp.hook_pre")]
    [InlineData("mlp_post", 0, null, "blocks.0.mlp.hook_post")]
    [InlineData("mlp_mid", 0, null, "blocks.0.mlp.hook_mid")]
    [InlineData("post", 0, "a", "blocks.0.mlp.hook_post")]
    [InlineData("embed", null, "b", "hook_embed")]
    [InlineData("scale", null, "b", "ln_final.hook_scale")]
    [InlineData("in", null, "unembed", "unembed.hook_in")]
    [InlineData("out", null, "unembed", "unembed.hook_out")]
    [InlineData("expert_weights", 0, "m", "blocks.0.mlp.hook_expert_weights")]
    [InlineData("expert_indices", 0, "mlp", "blocks.0.mlp.hook_expert_indices")]
    public void MatchesTransformerLens(string name, int? layer, string? layerType, string expected)
    {
        Assert.Equal(expected, ActName.Get(name, layer, layerType));
        Assert.Equal(expected, ActName.Get(name, layer, layerType, nLayers: 28)); // in range: same answer
    }

    [Theory]
    [InlineData("resid_pre5", "blocks.5.hook_resid_pre")]   // TL: hook_resid_pre5 (its [a-z]+ stops at '_')
    [InlineData("attn_out0", "blocks.0.hook_attn_out")]
    [InlineData("mlp_out11", "blocks.11.hook_mlp_out")]
    [InlineData("resid_post3", "blocks.3.hook_resid_post")]
    [InlineData("attn_scores2", "blocks.2.attn.hook_attn_scores")]
    [InlineData("q_input1", "blocks.1.hook_q_input")]
    public void UnderscoreNamesWithALayerParse(string name, string expected) => Assert.Equal(expected, ActName.Get(name));

    [Theory]
    [InlineData("scale", "ln_final.hook_scale")]            // TL: ln_final.ln_final.hook_scale
    [InlineData("normalized", "ln_final.hook_normalized")]
    public void LnFinalLayerTypeIsNotDoubled(string name, string expected) => Assert.Equal(expected, ActName.Get(name, null, "ln_final"));

    [Theory]
    [InlineData("resid_post", -1, null, 12, "blocks.11.hook_resid_post")]
    [InlineData("resid_pre", -12, null, 12, "blocks.0.hook_resid_pre")]
    [InlineData("pattern", -2, null, 12, "blocks.10.attn.hook_pattern")]
    [InlineData("scale", -1, "ln2", 2, "blocks.1.ln2.hook_scale")]
    [InlineData("resid_post", 1, null, 2, "blocks.1.hook_resid_post")]
    public void NegativeLayersCountFromTheEnd(string name, int layer, string? layerType, int nLayers, string expected) =>
        Assert.Equal(expected, ActName.Get(name, layer, layerType, nLayers));

    [Fact]
    public void NegativeLayerWithoutLayerCountIsAnError()
    {
        var e = Assert.Throws<SharpLensException>(() => ActName.Get("resid_post", -1));
        Assert.Contains("nLayers", e.Message);
    }

    [Theory]
    [InlineData("resid_post", 12, null)]
    [InlineData("resid_post", -13, null)]
    [InlineData("k12", null, null)]
    [InlineData("blocks.12.hook_resid_pre", null, null)]   // full names are range-checked too
    public void LayerOutOfRangeStatesTheAllowedRange(string name, int? layer, string? layerType)
    {
        var e = Assert.Throws<SharpLensException>(() => ActName.Get(name, layer, layerType, nLayers: 12));
        Assert.Contains("[-12, 11]", e.Message);
        Assert.Contains("12 layers", e.Message);
    }

    [Fact]
    public void FullNamesPassThroughWithoutValidation()
    {
        Assert.Equal("blocks.0.mlp.hook_something_new", ActName.Get("blocks.0.mlp.hook_something_new"));
        Assert.Equal("hook_whatever", ActName.Get("hook_whatever", null, null, nLayers: 2));
        Assert.Equal("blocks.1.hook_resid_post", ActName.Get("blocks.1.hook_resid_post", null, null, nLayers: 2));
    }

    [Theory]
    [InlineData("resid_prex", 3, null, "'resid_pre'")]
    [InlineData("patern", 0, null, "'pattern'")]
    [InlineData("resid", null, null, "unknown activation name 'resid'")]
    [InlineData("atn_out", 1, null, "'attn_out'")]
    [InlineData("ln1", null, null, "unknown activation name 'ln'")]   // TL: "ln1" → blocks.1.hook_ln
    [InlineData("hook_resid_pre", 0, null, "'hook_resid_pre'")]     // a full name plus a layer is not a short name
    public void UnknownNamesSuggestTheClosest(string name, int? layer, string? layerType, string expectedInMessage)
    {
        var e = Assert.Throws<SharpLensException>(() => ActName.Get(name, layer, layerType));
        Assert.Contains(expectedInMessage, e.Message);
    }

    [Theory]
    [InlineData("k", null, null, "give a layer")]                      // TL: attn.hook_k
    [InlineData("resid_post", null, null, "give a layer")]             // TL: hook_resid_post
    [InlineData("scale", 2, null, "'ln1' or 'ln2'")]                   // TL: blocks.2.hook_scale
    [InlineData("embed", 3, null, "without a layer")]                  // TL: blocks.3.hook_embed
    [InlineData("resid_pre", 0, "attn", "leave the layer type out")]   // TL: blocks.0.attn.hook_resid_pre
    [InlineData("resid_pre", 0, "x", "unknown layer type 'x'")]        // TL: blocks.0.x.hook_resid_pre
    [InlineData("resid_pre", 0, "ml", "'mlp'")]
    [InlineData("in", 0, "unembed", "takes no layer")]
    [InlineData("", null, null, "empty")]
    public void NamesThatAreNoHookAreErrors(string name, int? layer, string? layerType, string expectedInMessage)
    {
        var e = Assert.Throws<SharpLensException>(() => ActName.Get(name, layer, layerType));
        Assert.Contains(expectedInMessage, e.Message);
    }

    [Fact]
    public void LayerInTheNameOverridesTheArguments()
    {
        // As TL: the regex groups replace layer and layer_type.
        Assert.Equal("blocks.6.attn.hook_k", ActName.Get("k6", 2, "mlp"));
        Assert.Equal("blocks.4.ln1.hook_scale", ActName.Get("scale4ln1", 0, "ln2"));
    }

    [Fact]
    public void EveryTinyGpt2HookIsReachableByShortName()
    {
        // Each hook TL records for tiny-gpt2 (with optional hooks) is produced from its short form.
        foreach (var hook in Golden.StringList("hook_names_with_optional_hooks"))
        {
            var parts = hook.Split('.');
            string shortName = parts[^1]["hook_".Length..];
            string got = parts[0] == "blocks"
                ? ActName.Get(shortName, int.Parse(parts[1]), parts.Length == 4 ? parts[2] : null, nLayers: 2)
                : ActName.Get(shortName, null, parts.Length == 2 ? parts[0] : null);
            Assert.Equal(hook, got);
        }
    }
}
