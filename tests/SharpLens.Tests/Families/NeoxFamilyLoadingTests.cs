using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>
/// GPT-NeoX, GPT-J, GPT-Neo and OPT: config mapping equals TransformerLens's config, the converter equals
/// TransformerLens's unprocessed state dict, and unsupported variants / mismatched checkpoints fail clearly.
/// </summary>
public sealed class NeoxFamilyLoadingTests
{
    private static string Dir(string set) => Path.Combine(AppContext.BaseDirectory, "fixtures", set);
    private static JsonObject Json(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();
    private static JsonObject HfConfig(string set) => Json(Path.Combine(Dir(set), "config.json"));

    private static IModelFamily Family(string set) => set switch
    {
        "tiny-neox" => new GptNeoXFamily(),
        "tiny-gptj" => new GptJFamily(),
        "tiny-neo" => new GptNeoFamily(),
        _ => new OptFamily(),
    };

    public static TheoryData<string> Sets => new() { "tiny-neox", "tiny-gptj", "tiny-neo", "tiny-opt" };

    [Theory]
    [MemberData(nameof(Sets))]
    public void ConfigMatchesTransformerLens(string set)
    {
        var tl = Json(Path.Combine(Dir(set), "expected", "manifest.json"))["tl_config_unprocessed"]!.AsObject();
        var ours = JsonNode.Parse(Family(set).CreateConfig(HfConfig(set), set).ToJson())!.AsObject();
        // model_name / tokenizer_name name the checkpoint; initializer_range is informational (TL derives its own).
        string[] skip = ["model_name", "tokenizer_name", "initializer_range"];
        var compared = new List<string>();
        foreach (var (key, value) in ours)
        {
            if (skip.Contains(key) || !tl.ContainsKey(key)) continue;
            if (key == "attn_scale" && tl["use_attn_scale"]!.GetValue<bool>() == false) continue; // unused (TL stores -1)
            if (key == "dtype") // TransformerLens prints the torch dtype: "torch.float32"
            {
                Assert.Equal(tl[key]!.GetValue<string>(), "torch." + value!.GetValue<string>());
                compared.Add(key);
                continue;
            }
            Assert.True(JsonNode.DeepEquals(Normalize(tl[key]), Normalize(value)), $"{set}: {key} is {value?.ToJsonString()}, TL has {tl[key]?.ToJsonString()}");
            compared.Add(key);
        }
        foreach (var key in new[] { "positional_embedding_type", "rotary_dim", "rotary_adjacent_pairs", "parallel_attn_mlp", "use_attn_scale",
                     "use_local_attn", "window_size", "attn_types", "d_mlp", "eps", "act_fn", "default_prepend_bos", "n_params", "rotary_base" })
            Assert.Contains(key, compared);
    }

    /// <summary>Numbers as doubles, so 4 and 4.0 compare equal.</summary>
    private static JsonNode? Normalize(JsonNode? n) =>
        n is JsonValue v && v.TryGetValue(out double d) ? JsonValue.Create(d) : n?.DeepClone();

    [Theory]
    [MemberData(nameof(Sets))]
    public void ConverterEqualsWeightsNone(string set)
    {
        using var scope = NewDisposeScope();
        var family = Family(set);
        var cfg = family.CreateConfig(HfConfig(set), set);
        var sd = family.ConvertWeights(Checkpoint.LoadStateDict(Dir(set)), cfg);
        using var f = SafetensorsFile.Open(Path.Combine(Dir(set), "expected", "weights_none.safetensors"));
        Assert.Equal(f.Names.Order(StringComparer.Ordinal), sd.Keys.Order(StringComparer.Ordinal));
        foreach (var n in f.Names)
        {
            var e = f.Read(n);
            Assert.True(e.shape.SequenceEqual(sd[n].shape) && e.eq(sd[n]).all().item<bool>(), $"{set} {n}");
        }
    }

    private static SharpLensException ConfigError(string set, Action<JsonObject> edit)
    {
        var json = HfConfig(set);
        edit(json);
        return Assert.Throws<SharpLensException>(() => Family(set).CreateConfig(json, "m"));
    }

    [Fact]
    public void UnsupportedVariantsAreRejectedByName()
    {
        Assert.Contains("post-LayerNorm OPT", ConfigError("tiny-opt", j => j["do_layer_norm_before"] = false).Message);
        var proj = ConfigError("tiny-opt", j => j["word_embed_proj_dim"] = 32).Message;
        Assert.Contains("word_embed_proj_dim 32 differs from hidden_size 64", proj);
        Assert.Contains("project_in/project_out", proj);
        Assert.Contains("_remove_final_layer_norm", ConfigError("tiny-opt", j => j["_remove_final_layer_norm"] = true).Message);
        Assert.Contains("rope_scaling", ConfigError("tiny-neox", j => j["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 }).Message);
        Assert.Contains("give 3 kinds for num_layers 2",
            ConfigError("tiny-neo", j => j["attention_layers"] = new JsonArray("global", "local", "global")).Message);
        Assert.Contains("attn_types entry 'lokal'", ConfigError("tiny-neo", j => j["attention_layers"] = new JsonArray("global", "lokal")).Message);
        Assert.Contains("hidden_size 64 is not divisible by num_attention_heads 5",
            ConfigError("tiny-neox", j => j["num_attention_heads"] = 5).Message);
        Assert.Contains("field 'n_embd' is missing", ConfigError("tiny-gptj", j => j.Remove("n_embd")).Message);
        Assert.Contains("rotary_dim must be an even number", ConfigError("tiny-gptj", j => j["rotary_dim"] = 7).Message);
    }

    [Fact]
    public void RealModelFieldsTransformerLensIgnoresAreRead()
    {
        var neox = HfConfig("tiny-neox");
        neox["rotary_emb_base"] = 500.0; neox["use_parallel_residual"] = false; neox["rotary_pct"] = 0.3;
        var c = new GptNeoXFamily().CreateConfig(neox, "m");
        Assert.Equal(500.0, c.RotaryBase);
        Assert.False(c.ParallelAttnMlp);
        Assert.Equal(4, c.RotaryDim); // HF: int(16 * 0.3) = 4 (TL would round 4.8 to 5)
        var gptj = HfConfig("tiny-gptj");
        gptj["layer_norm_epsilon"] = 1e-6; gptj["n_inner"] = 128;
        var j = new GptJFamily().CreateConfig(gptj, "m");
        Assert.Equal((1e-6, 128), (j.Eps, j.DMlp));
        var neo = HfConfig("tiny-neo");
        neo.Remove("attention_layers");
        neo["attention_types"] = JsonNode.Parse("""[[["local"], 1], [["global"], 1]]""");
        neo["intermediate_size"] = 96;
        var n = new GptNeoFamily().CreateConfig(neo, "m");
        Assert.Equal(["local", "global"], n.AttnTypes!);
        Assert.Equal(96, n.DMlp);
    }

    [Fact]
    public void MismatchedCheckpointsFailWithTheTensorName()
    {
        using var scope = NewDisposeScope();
        // NeoX weights under a GPT-J config: the first expected tensor is missing.
        var gptj = new GptJFamily();
        var neoxWeights = Checkpoint.LoadStateDict(Dir("tiny-neox"));
        var e = Assert.Throws<SharpLensException>(() => gptj.ConvertWeights(neoxWeights, gptj.CreateConfig(HfConfig("tiny-gptj"), "m")));
        Assert.Contains("GPT-J checkpoint is missing tensor 'wte.weight'", e.Message);

        // A config.json that disagrees with the weights (wider MLP): the shape error names tensor, shape and expectation.
        var neox = new GptNeoXFamily();
        var wide = HfConfig("tiny-neox");
        wide["intermediate_size"] = 512;
        e = Assert.Throws<SharpLensException>(() => neox.ConvertWeights(neoxWeights, neox.CreateConfig(wide, "m")));
        Assert.Contains("'gpt_neox.layers.0.mlp.dense_h_to_4h.weight' has shape [256, 64], expected [512, 64]", e.Message);

        // Fewer layers in config.json than in the checkpoint: the leftover layer is reported.
        var oneLayer = HfConfig("tiny-opt");
        oneLayer["num_hidden_layers"] = 1;
        var opt = new OptFamily();
        e = Assert.Throws<SharpLensException>(() => opt.ConvertWeights(Checkpoint.LoadStateDict(Dir("tiny-opt")), opt.CreateConfig(oneLayer, "m")));
        Assert.Contains("unexpected tensor(s) for a 1-layer model", e.Message);
        Assert.Contains("model.decoder.layers.1.", e.Message);
    }

    [Fact]
    public void KnownBuffersAreIgnoredAndOptionalBiasesBecomeZeros()
    {
        using var scope = NewDisposeScope();
        var family = new GptNeoXFamily();
        var cfg = family.CreateConfig(HfConfig("tiny-neox"), "m");
        var hf = Checkpoint.LoadStateDict(Dir("tiny-neox"));
        var withBuffers = new Dictionary<string, Tensor>(hf)
        {
            ["gpt_neox.layers.0.attention.bias"] = ones(1, 1, 64, 64, dtype: ScalarType.Bool),
            ["gpt_neox.layers.0.attention.masked_bias"] = tensor(-1e9f),
            ["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = ones(2),
        };
        Assert.True(family.IsUnused("gpt_neox.layers.0.attention.rotary_emb.inv_freq"));
        Assert.Equal(37, family.ConvertWeights(withBuffers, cfg).Count);

        // attention_bias=false NeoX checkpoints have no q/k/v/dense biases: zeros, like an nn.Linear without bias.
        var noBias = hf.Where(kv => !kv.Key.Contains("attention.query_key_value.bias") && !kv.Key.Contains("attention.dense.bias"))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        var sd = family.ConvertWeights(noBias, cfg);
        Assert.Equal(0.0, sd["blocks.1.attn.b_K"].abs().max().item<float>());
        Assert.Equal(0.0, sd["blocks.1.attn.b_O"].abs().max().item<float>());
    }
}

/// <summary>Registry rows of the NeoX-line families: names, aliases, repositories and parameter counts.</summary>
public sealed class NeoxFamilyRegistryTests
{
    [Theory]
    // Totals as Hugging Face counts them (published: pythia-70m 70,426,624; gpt-neo-125M 125,198,592; opt-125m 125,239,296).
    [InlineData("pythia-70m", "EleutherAI/pythia-70m", 70_426_624L, 18_874_368L)]
    [InlineData("pythia-19m", "EleutherAI/pythia-70m", 70_426_624L, 18_874_368L)]
    [InlineData("pythia-70m-deduped", "EleutherAI/pythia-70m-deduped", 70_426_624L, 18_874_368L)]
    [InlineData("gpt-neo-125M", "EleutherAI/gpt-neo-125M", 125_198_592L, 84_934_656L)]
    [InlineData("opt-125m", "facebook/opt-125m", 125_239_296L, 84_934_656L)]
    [InlineData("gpt-j", "EleutherAI/gpt-j-6B", 6_050_882_784L, 5_637_144_576L)]
    public void RowsResolveWithCounts(string name, string repo, long total, long nParams)
    {
        var m = ModelRegistry.Resolve(name);
        Assert.Equal((repo, total, nParams), (m.RepoId, m.TotalParameters, m.NonEmbeddingParameters));
        Assert.True(m.IsOfficial);
    }

    [Fact]
    public void EverySizeTheIssueNamesIsListed()
    {
        string[] names = ["pythia-70m", "pythia-160m", "pythia-410m", "pythia-1b", "pythia-1.4b", "pythia-2.8b", "pythia-6.9b", "pythia-12b",
            "pythia-12b-deduped", "gpt-j-6b", "gpt-neo-125m", "gpt-neo-1.3b", "gpt-neo-2.7b", "TinyStories-1M", "TinyStories-33M",
            "TinyStories-Instruct-8M", "TinyStories-2Layers-33M", "opt-125m", "opt-1.3b", "opt-2.7b", "opt-6.7b"];
        foreach (var n in names) Assert.True(ModelRegistry.Resolve(n).IsOfficial, n);
        Assert.Equal("roneneldan/TinyStories-33M", ModelRegistry.Resolve("tinystories-33m").RepoId);
        Assert.Throws<SharpLensException>(() => ModelRegistry.Resolve("opt-350m")); // post-LN + projections: not supported
    }
}

/// <summary>Analysis functions on parallel-block and rotary models.</summary>
public sealed class NeoxFamilyAnalysisTests
{
    [Theory]
    [InlineData("tiny-neox")]
    [InlineData("tiny-gptj")]
    public void ParallelModelsHaveNoResidMidAndSayWhy(string set)
    {
        using var scope = NewDisposeScope();
        using var model = HookedTransformer.FromFolder(Path.Combine(AppContext.BaseDirectory, "fixtures", set), ProcessingOptions.Default, set);
        var (_, cache) = model.RunWithCache(tensor(new long[] { 1, 5, 9, 3 }).unsqueeze(0));
        using (cache)
        {
            Assert.DoesNotContain(cache.Keys, k => k.EndsWith("hook_resid_mid", StringComparison.Ordinal));
            var e = Assert.Throws<SharpLensException>(() => cache.AccumulatedResid(-1, inclMid: true));
            Assert.Contains("parallel attention + MLP blocks", e.Message);
            Assert.Contains("inclMid: false", e.Message);
            Assert.Throws<SharpLensException>(() => cache.AccumulatedResid(1, mlpInput: true));
            Assert.Equal(["0_pre", "1_pre", "final_post"], cache.AccumulatedResid(-1).Labels);
            // Rotary: no positional embedding, so no pos_embed row.
            Assert.Equal(["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"], cache.DecomposeResid(-1).Labels);
        }
    }
}
