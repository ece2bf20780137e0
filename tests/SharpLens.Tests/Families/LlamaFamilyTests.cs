using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using SharpLens.Model;
using SharpLens.Tests.Hub;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>LLaMA-line behaviour beyond the golden sets: config.json edge cases, errors, rope scaling, padding.</summary>
public sealed class LlamaFamilyTests
{
    /// <summary>A copy of a fixture folder whose config.json is changed by <paramref name="edit"/>; deleted on dispose.</summary>
    private sealed class EditedFixture : IDisposable
    {
        public EditedFixture(string fixture, Action<JsonObject> edit, Func<string, bool>? keepTensor = null)
        {
            var src = new FamilyFixture(fixture).Dir;
            Dir = Directory.CreateTempSubdirectory("sharplens-llama-").FullName;
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
            edit(cfg);
            File.WriteAllText(Path.Combine(Dir, "config.json"), cfg.ToJsonString());
            if (keepTensor is null) File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(Dir, "model.safetensors"));
            else
            {
                using var scope = NewDisposeScope();
                using var f = SafetensorsFile.Open(Path.Combine(src, "model.safetensors"));
                SafetensorsWriter.Write(Path.Combine(Dir, "model.safetensors"), f.Names.Where(keepTensor).ToDictionary(n => n, n => f.Read(n)));
            }
        }

        public string Dir { get; }

        public HookedTransformer Load(ProcessingOptions? o = null) => HookedTransformer.FromFolder(Dir, o ?? ProcessingOptions.None, "edited");

        public void Dispose() => Directory.Delete(Dir, recursive: true);
    }

    private static SharpLensException LoadError(string fixture, Action<JsonObject> edit, Func<string, bool>? keep = null)
    {
        using var f = new EditedFixture(fixture, edit, keep);
        return Assert.ThrowsAny<SharpLensException>(() => f.Load());
    }

    [Fact]
    public void InconsistentOrMissingConfigFieldsAreNamed()
    {
        var e = LoadError("tiny-llama", c => c["num_key_value_heads"] = 3);
        Assert.Contains("num_attention_heads 4 is not divisible by num_key_value_heads 3", e.Message);
        e = LoadError("tiny-qwen2", c => c.Remove("intermediate_size"));
        Assert.Contains("'intermediate_size' is missing", e.Message);
        e = LoadError("tiny-mistral", c => c["hidden_size"] = "64");
        Assert.Contains("'hidden_size' must be an integer", e.Message);
        e = LoadError("tiny-qwen2", c => c["tie_word_embeddings"] = false);
        Assert.Contains("tie_word_embeddings", e.Message);
    }

    [Theory]
    [InlineData("yarn")]
    [InlineData("linear")]
    [InlineData("dynamic")]
    public void UnsupportedRopeScalingIsRejectedByName(string type)
    {
        var e = LoadError("tiny-llama", c => c["rope_scaling"] = new JsonObject { ["rope_type"] = type, ["factor"] = 4.0 });
        Assert.Contains($"rope_scaling type '{type}' is not supported", e.Message);
        Assert.Contains("llama3", e.Message);
    }

    [Fact]
    public void CheckpointTensorWithWrongShapeIsNamed()
    {
        using var scope = NewDisposeScope();
        using var f = new EditedFixture("tiny-qwen3", c => c["head_dim"] = 16); // weights were made for head_dim 32
        var e = Assert.ThrowsAny<SharpLensException>(() => f.Load());
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", e.Message);
        Assert.Contains("[128, 64]", e.Message); // what it has, and
        Assert.Contains("[64, 64]", e.Message);  // what config.json implies
        var missing = LoadError("tiny-llama", _ => { }, keep: n => n != "model.layers.1.mlp.up_proj.weight");
        Assert.Contains("'model.layers.1.mlp.up_proj.weight'", missing.Message);
    }

    [Fact]
    public void ArchitectureValidationHasSpecificMessages()
    {
        SharpLensException Bad(Func<HookedTransformerConfig> make) => Assert.Throws<SharpLensException>(() => make());
        Assert.Contains("n_heads 4 is not divisible by n_key_value_heads 3",
            Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, nKeyValueHeads: 3)).Message);
        Assert.Contains("rotary_dim must be an even number in 2..d_head (16), got 5",
            Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, positionalEmbeddingType: "rotary", rotaryDim: 5)).Message);
        Assert.Contains("got 32", Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, positionalEmbeddingType: "rotary", rotaryDim: 32)).Message);
        Assert.Contains("window_size is missing",
            Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, useLocalAttn: true, attnTypes: ["global", "local"])).Message);
        Assert.Contains("'rotray'", Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, positionalEmbeddingType: "rotray")).Message);
        Assert.Contains("attn_types has 1 entries", Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, useLocalAttn: true, windowSize: 4, attnTypes: ["local"])).Message);
        Assert.Contains("'RMS'", Bad(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, normalizationType: "RMSS")).Message);
    }

    [Fact]
    public void Llama3RopeScalingRotatesWithTheScaledFrequencies()
    {
        using var scope = NewDisposeScope();
        // original context 64 puts the 8 frequencies of d_head 16 (theta 500000) into all three bands.
        using var f = new EditedFixture("tiny-llama", c => c["rope_scaling"] = new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64,
        });
        using var model = f.Load();
        Assert.True(model.Config.UseNTKByPartsRope);
        var (_, cache) = model.RunWithCache(new FamilyFixture("tiny-llama").Input("tokens"));
        using var _ = cache;
        var q = cache["blocks.0.attn.hook_q"].to_type(ScalarType.Float64);   // [b, p, h, 16]
        // Hugging Face's _compute_llama3_parameters, in double precision.
        int dh = 16;
        double theta = 500000, factor = 8, low = 1, high = 4, orig = 64;
        var inv = new double[dh / 2];
        int bands = 0;
        for (int i = 0; i < dh / 2; i++)
        {
            double f0 = 1 / Math.Pow(theta, 2.0 * i / dh), wavelen = 2 * Math.PI / f0;
            if (wavelen < orig / high) { inv[i] = f0; bands |= 1; }
            else if (wavelen > orig / low) { inv[i] = f0 / factor; bands |= 2; }
            else { double s = (orig / wavelen - low) / (high - low); inv[i] = (1 - s) * f0 / factor + s * f0; bands |= 4; }
        }
        Assert.Equal(7, bands); // all three bands exercised
        var freq = tensor(inv.Concat(inv).ToArray());
        var angles = arange(12, dtype: ScalarType.Float64).unsqueeze(-1) * freq;      // [p, 16]
        var cos = angles.cos().unsqueeze(1); var sin = angles.sin().unsqueeze(1);      // [p, 1, 16]
        var rotated = cat([-q[.., .., .., 8..], q[.., .., .., ..8]], -1);
        Golden.AssertClose(q * cos + rotated * sin, cache["blocks.0.attn.hook_rot_q"], "llama3-scaled rotary", 1e-5);
    }

    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-mistral")]
    [InlineData("tiny-qwen3")]
    public void LeftPaddedPromptsMatchUnpaddedOnesAndGenerationWithTheKeyValueCache(string fixture)
    {
        var fx = new FamilyFixture(fixture);
        using var scope = NewDisposeScope();
        using var model = fx.Model();
        var tokens = fx.Input("tokens");
        // Prompt 0 shortened to 9 tokens and left-padded by 3; rotary positions must count from its first real token.
        var shortPrompt = tokens[0, 3..];
        var padded = tokens.clone();
        padded[0, ..3] = zeros(3, dtype: ScalarType.Int64);
        padded[0, 3..] = shortPrompt;
        var mask = ones_like(padded);
        mask[0, ..3] = zeros(3, dtype: ScalarType.Int64);
        var paddedLogits = model.Forward(padded, mask);
        var alone = model.Forward(shortPrompt.unsqueeze(0));
        Golden.AssertClose(alone[0], paddedLogits[0, 3..], $"{fixture}: left-padded prompt");
        Golden.AssertClose(model.Forward(tokens)[1..], paddedLogits[1..], $"{fixture}: other prompts unchanged");

        // Key/value cache: step-by-step logits equal one full forward (positions continue after the cache).
        using var kv = new KeyValueCache(model.Config.NLayers);
        var first = model.Forward(tokens[.., ..7], kv);
        var rest = Enumerable.Range(7, 5).Select(p => model.Forward(tokens[.., p..(p + 1)], kv)).ToArray();
        var stepwise = cat([first, .. rest], 1);
        Golden.AssertClose(model.Forward(tokens), stepwise, $"{fixture}: key/value cache");
    }

    [Fact]
    public void RegistryHasTheLineWithHubReposCountsAndGatedFlags()
    {
        var llama = ModelRegistry.Resolve("meta-llama-3-8b");
        Assert.Equal("meta-llama/Meta-Llama-3-8B", llama.RepoId);
        Assert.True(llama.Gated);
        Assert.Equal(7_784_628_224, llama.NonEmbeddingParameters);   // TransformerLens n_params
        Assert.Equal(8_030_261_248, llama.TotalParameters);          // the checkpoint's 8.03B
        var qwen = ModelRegistry.Resolve("qwen2.5-0.5b");
        Assert.False(qwen.Gated);
        Assert.Equal(494_032_768, qwen.TotalParameters);              // Qwen2.5-0.5B's published count (tied, q/k/v biases)
        Assert.Equal(1_235_814_400, ModelRegistry.Resolve("Llama-3.2-1B").TotalParameters);
        foreach (var name in new[] { "Llama-2-7b", "Llama-2-13b-chat", "Llama-3.1-8B", "Llama-3.2-3B-Instruct", "Mistral-7B-v0.1", "Mistral-7B-Instruct-v0.3",
                     "Qwen2-0.5B", "Qwen2-1.5B", "Qwen2-7B", "Qwen2.5-7B-Instruct", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B" })
            Assert.True(ModelRegistry.Resolve(name).IsOfficial, name);
    }
}

/// <summary>Gated repositories through the fake Hub.</summary>
public sealed class GatedRepositoryTests : HubTestBase
{
    [Fact]
    public void GatedRepoWithoutTokenSaysToSetHfTokenAndLoadsWithOne()
    {
        var fx = new FamilyFixture("tiny-llama");
        Hub.Repos["test-org/tiny-llama"] = new()
        {
            ["config.json"] = new(File.ReadAllBytes(Path.Combine(fx.Dir, "config.json")), Lfs: false),
            ["model.safetensors"] = new(File.ReadAllBytes(Path.Combine(fx.Dir, "model.safetensors")), Lfs: true),
        };
        string name = "test-gated-llama-" + Guid.NewGuid().ToString("N")[..8];
        ModelRegistry.Register(new ModelInfo(name, "test-org/tiny-llama", [], "tiny", null, null) { Gated = true });

        var e = Assert.Throws<HubAuthException>(() => HookedTransformer.FromPretrained(name, null, new LoadOptions { Hub = Options() with { Token = null } }));
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.Contains("gated", e.Message);
        Assert.Contains("test-org/tiny-llama", e.Message);
        Assert.Empty(Hub.Log); // refused before any request

        using var model = HookedTransformer.FromPretrained(name, null, new LoadOptions { Hub = Options() });
        Assert.Equal("LlamaForCausalLM", model.Config.OriginalArchitecture);
        // Once cached, the gated model loads without a token.
        using var again = HookedTransformer.FromPretrained(name, null, new LoadOptions { Hub = Options() with { Token = null } });
        Assert.Equal(2, again.Config.NLayers);
    }
}
