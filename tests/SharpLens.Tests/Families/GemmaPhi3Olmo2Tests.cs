using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using SharpLens.Model;
using SharpLens.Tests.Hub;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>
/// What the Gemma / Phi-3 / OLMo-2 goldens cannot show on their own: config.json mapping (also older config layouts),
/// the settings TransformerLens ignores (Phi-3's window and partial rotary), errors, load warnings, DLA notes and the
/// registry rows.
/// </summary>
public sealed class GemmaPhi3Olmo2Tests
{
    private static string Fixture(string set) => Path.Combine(AppContext.BaseDirectory, "fixtures", set);

    private static JsonObject Config(string set) => JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(set), "config.json")))!.AsObject();

    private static HookedTransformerConfig Map(JsonObject hf) => ModelFamilies.ForConfig(hf, "config.json").CreateConfig(hf, "test");

    /// <summary>A copy of a fixture with an edited config.json; the caller deletes the folder.</summary>
    private static string EditedFixture(string set, Action<JsonObject> edit)
    {
        string dir = Directory.CreateTempSubdirectory("sharplens-family-").FullName;
        var cfg = Config(set);
        edit(cfg);
        File.WriteAllText(Path.Combine(dir, "config.json"), cfg.ToJsonString());
        File.Copy(Path.Combine(Fixture(set), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        return dir;
    }

    [Theory]
    [InlineData("tiny-gemma")]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    [InlineData("tiny-phi3")]
    [InlineData("tiny-olmo2")]
    public void ConfigFromConfigJsonIsTransformerLensConfigWithItsBugsFixed(string set)
    {
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(set), "expected", "manifest.json")))!.AsObject();
        var tl = manifest["tl_config_unprocessed"]!.AsObject();
        // Where TransformerLens is wrong, the manifest's fix is what the real model uses.
        if (manifest["tl_bug"]?["tl_config_fix"] is JsonObject fix)
            foreach (var (k, v) in fix) tl[k] = v!.DeepClone();
        var ours = JsonNode.Parse(Map(Config(set)).ToJson())!.AsObject();
        string[] fields = ["n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "n_ctx", "act_fn", "normalization_type", "eps",
            "positional_embedding_type", "n_key_value_heads", "rotary_dim", "rotary_base", "rotary_base_local", "gated_mlp", "attn_scale",
            "attn_scores_soft_cap", "output_logits_soft_cap", "use_normalization_before_and_after", "use_qk_norm", "n_params"];
        foreach (var f in fields)
            Assert.True(JsonNode.DeepEquals(Normalize(tl[f]), Normalize(ours[f])), $"{set}: {f} is {ours[f]?.ToJsonString()}, TransformerLens {tl[f]?.ToJsonString()}");
        // Phi-3's sliding window is applied (TransformerLens ignores it).
        if (set == "tiny-phi3") tl["use_local_attn"] = true;
        Assert.Equal(tl["use_local_attn"]!.GetValue<bool>(), ours["use_local_attn"]!.GetValue<bool>());
        if (set == "tiny-phi3") Assert.Equal(32, ours["window_size"]!.GetValue<int>());
        else if (tl["use_local_attn"]!.GetValue<bool>())
        {
            Assert.Equal(tl["window_size"]!.GetValue<int>(), ours["window_size"]!.GetValue<int>());
            Assert.True(JsonNode.DeepEquals(tl["attn_types"], ours["attn_types"]), $"{set}: attn_types {ours["attn_types"]?.ToJsonString()}");
        }
        static JsonNode? Normalize(JsonNode? n) => n is JsonValue v && v.TryGetValue(out double d) ? JsonValue.Create(d) : n;
    }

    [Fact]
    public void OlderConfigLayoutsMapAsTheRealModels()
    {
        // Gemma 2 configs before layer_types: the sliding window is on even layers (layer 0 local).
        var g2 = Config("tiny-gemma2");
        g2.Remove("layer_types");
        g2["num_hidden_layers"] = 4;
        Assert.Equal(["local", "global", "local", "global"], Map(g2).AttnTypes!.ToArray());
        // Gemma 3 configs before layer_types: every sliding_window_pattern-th layer is global.
        var g3 = Config("tiny-gemma3");
        g3.Remove("layer_types");
        g3["num_hidden_layers"] = 6;
        g3["sliding_window_pattern"] = 3;
        Assert.Equal(["local", "local", "global", "local", "local", "global"], Map(g3).AttnTypes!.ToArray());
        // Gemma 1.0 Hub configs say hidden_act "gelu" and no hidden_activation: Gemma's GELU is the tanh one.
        var g1 = Config("tiny-gemma");
        g1.Remove("hidden_activation");
        g1["hidden_act"] = "gelu";
        Assert.Equal("gelu_pytorch_tanh", Map(g1).ActFn);
        // Phi-3 partial rotary and OLMo-2 grouped-query attention (neither in TransformerLens).
        var phi = Config("tiny-phi3");
        phi["partial_rotary_factor"] = 0.5;
        Assert.Equal(8, Map(phi).RotaryDim);
        var olmo = Config("tiny-olmo2");
        olmo["num_key_value_heads"] = 2;
        Assert.Equal(2, Map(olmo).NKeyValueHeads);
        Assert.Null(Map(Config("tiny-olmo2")).NKeyValueHeads); // TransformerLens's plain W_K/W_V names when not grouped
    }

    [Theory]
    [InlineData("tiny-phi3", "rope_scaling", """{"type": "longrope", "short_factor": [1.0], "long_factor": [1.0]}""", "rope_scaling type 'longrope'")]
    [InlineData("tiny-gemma3", "rope_scaling", """{"rope_type": "linear", "factor": 8.0}""", "rope_scaling type 'linear'")]
    [InlineData("tiny-olmo2", "rope_scaling", """{"rope_type": "yarn", "factor": 4.0}""", "rope_scaling type 'yarn'")]
    [InlineData("tiny-gemma2", "layer_types", """["sliding_attention"]""", "layer_types has 1 entries for 2 layers")]
    [InlineData("tiny-gemma3", "layer_types", """["sliding_attention", "chunked_attention"]""", "'chunked_attention'")]
    [InlineData("tiny-gemma2", "sliding_window", "null", "'sliding_window' is missing")]
    [InlineData("tiny-phi3", "partial_rotary_factor", "1.5", "partial_rotary_factor must be in (0, 1]")]
    [InlineData("tiny-olmo2", "hidden_size", "\"64\"", "'hidden_size' must be an integer")]
    public void BadConfigFieldsFailWithTheField(string set, string field, string json, string message)
    {
        var cfg = Config(set);
        cfg[field] = JsonNode.Parse(json);
        var e = Assert.Throws<SharpLensException>(() => Map(cfg));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void CheckpointThatDoesNotFitItsConfigFailsWithTheTensorName()
    {
        // Gemma 3 weights under a Gemma 2 config: the q/k norm tensors are left over.
        string dir = EditedFixture("tiny-gemma3", c => { c["architectures"] = new JsonArray("Gemma2ForCausalLM"); c["model_type"] = "gemma2"; });
        try
        {
            var e = Assert.Throws<SharpLensException>(() => HookedTransformer.FromFolder(dir, ProcessingOptions.None));
            Assert.Contains("self_attn.k_norm.weight", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Phi3AppliesItsSlidingWindowAndPartialRotaryAsTheRealModel()
    {
        string dir = EditedFixture("tiny-phi3", c => { c["sliding_window"] = 4; c["partial_rotary_factor"] = 0.5; });
        try
        {
            using var scope = NewDisposeScope();
            using var model = HookedTransformer.FromFolder(dir, ProcessingOptions.Default);
            using var f = SafetensorsFile.Open(Path.Combine(Fixture("tiny-phi3"), "expected", "inputs.safetensors"));
            var (_, cache) = model.RunWithCache(f.Read("tokens"));
            using var _ = cache;
            // Query q sees keys q-3..q only.
            var pattern = cache["blocks.1.attn.hook_pattern"];                              // [b, h, q, k]
            var distance = arange(12).unsqueeze(1) - arange(12).unsqueeze(0);               // q - k
            Assert.Equal(0f, pattern.masked_select((distance >= 4).expand_as(pattern)).abs().max().item<float>());
            Assert.True(pattern.masked_select((distance == 3).expand_as(pattern)).min().item<float>() > 0);
            // Only the first half of each head rotates.
            var q = cache["blocks.0.attn.hook_q"]; var rot = cache["blocks.0.attn.hook_rot_q"];
            Assert.Equal(0f, (q[.., .., .., 8..] - rot[.., .., .., 8..]).abs().max().item<float>());
            Assert.True((q[.., 1.., .., ..8] - rot[.., 1.., .., ..8]).abs().max().item<float>() > 1e-3);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ProcessingStepsAnArchitectureCannotTakeAreSkippedWithAMessage()
    {
        using var gemma2 = HookedTransformer.FromFolder(Fixture("tiny-gemma2"), ProcessingOptions.Default);
        Assert.Contains(gemma2.LoadWarnings, w => w.StartsWith("center_unembed skipped", StringComparison.Ordinal) && w.Contains("soft-capped"));
        Assert.Single(gemma2.LoadWarnings);
        using var olmo = HookedTransformer.FromFolder(Fixture("tiny-olmo2"), ProcessingOptions.Default);
        Assert.Equal(["fold_ln", "center_writing_weights"], olmo.LoadWarnings.Select(w => w.Split(' ')[0]));
        Assert.Equal("RMS", olmo.Config.NormalizationType); // nothing folded
        using var gemma3 = HookedTransformer.FromFolder(Fixture("tiny-gemma3"), ProcessingOptions.Default);
        Assert.Empty(gemma3.LoadWarnings);
        using var none = HookedTransformer.FromFolder(Fixture("tiny-olmo2"), ProcessingOptions.None);
        Assert.Empty(none.LoadWarnings); // nothing requested, nothing skipped
    }

    [Theory]
    [InlineData("tiny-gemma2", true, true, false)]
    [InlineData("tiny-gemma3", false, true, false)]
    [InlineData("tiny-olmo2", false, false, true)]
    [InlineData("tiny-phi3", false, false, false)]
    public void DlaSaysWhatDoesNotAddUp(string set, bool softCap, bool sandwich, bool postNorm)
    {
        using var scope = NewDisposeScope();
        using var model = HookedTransformer.FromFolder(Fixture(set), ProcessingOptions.Default);
        using var f = SafetensorsFile.Open(Path.Combine(Fixture(set), "expected", "inputs.safetensors"));
        var r = DirectLogitAttribution.Run(model, f.Read("tokens"), f.Read("answer_tokens"), topK: 3);
        // The identity is exact for the uncapped logits once the final norm is folded; OLMo-2's cannot be (post-norm),
        // and the output says so (0.1315 is TransformerLens's own value, manifest sanity_checks).
        if (postNorm)
        {
            Assert.Equal(0.13153, r.IdentityErrorWithBiasUncapped, 3);
            Assert.Contains(r.Notes, n => n.StartsWith("The final norm's weight is not folded", StringComparison.Ordinal));
        }
        else Assert.True(Math.Abs(r.IdentityErrorWithBiasUncapped) < 1e-4, $"uncapped identity error {r.IdentityErrorWithBiasUncapped}");
        Assert.Equal(softCap, r.LogitSoftCap is not null);
        Assert.Equal(softCap, r.Notes.Any(n => n.Contains("soft-capped")));
        if (softCap) Assert.True(Math.Abs(r.UncappedAvgLogitDiff - r.AvgLogitDiff) > 1e-3, "capping should change the logit difference");
        else Assert.Equal(r.AvgLogitDiff, r.UncappedAvgLogitDiff, 5);
        Assert.Equal(sandwich, r.Notes.Any(n => n.StartsWith("Sandwich norms", StringComparison.Ordinal)));
        Assert.True(sandwich == r.HeadSumError > 1e-2, $"head sum error {r.HeadSumError}");
        Assert.Equal(postNorm, r.Notes.Any(n => n.StartsWith("Post-norm blocks", StringComparison.Ordinal)));
        Assert.True(postNorm == r.DecompositionSumError > 1e-2, $"decomposition sum error {r.DecompositionSumError}");
        if (!softCap && !sandwich && !postNorm) Assert.Empty(r.Notes);
    }

    [Fact]
    public void RegistryHasTheFamiliesAndGemmaNeedsAToken()
    {
        foreach (var name in new[] { "gemma-2b", "gemma-7b", "gemma-2-2b", "gemma-2-2b-it", "gemma-2-9b", "gemma-2-9b-it", "gemma-2-27b",
                     "gemma-2-27b-it", "gemma-3-270m", "gemma-3-1b-pt", "gemma-3-1b-it" })
        {
            var info = ModelRegistry.Resolve(name);
            Assert.Equal("google/" + name, info.RepoId);
            Assert.True(info.Gated, name);
        }
        Assert.False(ModelRegistry.Resolve("Phi-3-mini-4k-instruct").Gated);
        Assert.Equal("allenai/OLMo-2-1124-7B", ModelRegistry.Resolve("olmo-2-7b").RepoId);
        // The row's n_params is what the mapped config computes (TransformerLens's count).
        var gemma2 = Config("tiny-gemma2");
        foreach (var (k, v) in new (string, int)[] { ("hidden_size", 2304), ("intermediate_size", 9216), ("num_hidden_layers", 26),
                     ("num_attention_heads", 8), ("num_key_value_heads", 4), ("head_dim", 256), ("vocab_size", 256000) })
            gemma2[k] = v;
        gemma2["layer_types"] = new JsonArray(Enumerable.Range(0, 26).Select(l => (JsonNode?)(l % 2 == 0 ? "sliding_attention" : "full_attention")).ToArray());
        Assert.Equal(ModelRegistry.Resolve("gemma-2-2b").NonEmbeddingParameters, Map(gemma2).NParams);

        using var hub = new FakeHub { Always401 = true };
        var options = new LoadOptions { Hub = new HubOptions { Endpoint = hub.Endpoint, CacheDir = Directory.CreateTempSubdirectory("sharplens-hub-").FullName, MaxRetries = 0 } };
        try
        {
            var e = Assert.Throws<HubAuthException>(() => PretrainedSource.ResolveFolder("gemma-2-2b", options));
            Assert.Contains("gated", e.Message);
            Assert.Contains("HF_TOKEN", e.Message);
            Assert.Contains("google/gemma-2-2b", e.Message);
        }
        finally { Directory.Delete(options.Hub.CacheDir, true); }
    }
}
