using SharpLens.Loading;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

public sealed class ModelErrorTests
{
    [Fact]
    public void TokenOutsideVocabularyIsNamed()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var tokens = Golden.Tokens.clone();
        tokens[1, 5] = 1000;
        var e = Assert.Throws<SharpLensException>(() => model.Forward(tokens));
        Assert.Contains("Token id 1000 at [batch 1, pos 5]", e.Message);
        Assert.Contains("[0, 1000)", e.Message);
    }

    [Fact]
    public void SequenceLongerThanContextIsRejected()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var e = Assert.Throws<SharpLensException>(() => model.Forward(zeros(1, 65, dtype: ScalarType.Int64)));
        Assert.Contains("65 tokens", e.Message);
        Assert.Contains("n_ctx = 64", e.Message);
    }

    [Fact]
    public void FolderWithoutConfigOrWeightsIsExplained()
    {
        var dir = Directory.CreateTempSubdirectory("sharplens-test").FullName;
        try
        {
            var e = Assert.Throws<SharpLensException>(() => HookedTransformer.FromFolder(dir, ProcessingOptions.Default));
            Assert.Contains("no config.json", e.Message);
            File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(dir, "config.json"));
            var e2 = Assert.ThrowsAny<SharpLensException>(() => HookedTransformer.FromFolder(dir, ProcessingOptions.Default));
            Assert.Contains("model.safetensors", e2.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void MissingAndUnexpectedParametersAreNamed()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model("none");
        var sd = model.StateDict.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        sd.Remove("blocks.1.mlp.W_out");
        var e = Assert.Throws<SharpLensException>(() => new HookedTransformer(model.Config.Clone(), sd));
        Assert.Contains("missing", e.Message);
        Assert.Contains("blocks.1.mlp.W_out", e.Message);

        var sd2 = model.StateDict.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        sd2["blocks.1.mlp.W_outt"] = zeros(2);
        var e2 = Assert.Throws<SharpLensException>(() => new HookedTransformer(model.Config.Clone(), sd2));
        Assert.Contains("unexpected", e2.Message);
        Assert.Contains("blocks.1.mlp.W_outt", e2.Message);

        var hf = new Dictionary<string, Tensor>();
        using (var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "model.safetensors")))
            foreach (var n in f.Names) hf[n] = f.Read(n);
        hf.Remove("h.1.ln_2.bias");
        var e3 = Assert.Throws<SharpLensException>(() => Gpt2Converter.Convert(hf, model.Config));
        Assert.Contains("'h.1.ln_2.bias'", e3.Message);
    }

    [Fact]
    public void InvalidConfigNamesTheField()
    {
        var e = Assert.Throws<SharpLensException>(() => new HookedTransformerConfig(nLayers: 2, dModel: 64, nCtx: 64, dHead: 16, nHeads: 0, dVocab: 10));
        Assert.Contains("n_heads must be a positive integer, got 0", e.Message);
        var e2 = Assert.Throws<SharpLensException>(() => new HookedTransformerConfig(2, 64, 64, 16, 4, 10, actFn: "gelu_nwe"));
        Assert.Contains("'gelu_new'", e2.Message);
    }
}

public sealed class LoadingSafetyTests
{
    [Fact]
    public void ProcessingInPlaceNeverChangesTheCheckpointFile()
    {
        string path = Path.Combine(Golden.Dir, "model.safetensors");
        var before = System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path));
        using (var model = Golden.Model("processed"))
        {
            // A second load from the same file still sees the original weights.
            using var raw = Golden.Model("none");
            Golden.AssertClose(Golden.Tensor("weights_none.safetensors", "embed.W_E"), raw.Parameter("embed.W_E"), "W_E unprocessed");
            Golden.AssertClose(Golden.Tensor("weights_processed.safetensors", "embed.W_E"), model.Parameter("embed.W_E"), "W_E processed");
        }
        Assert.Equal(before, System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));
    }
}

public sealed class LoadingLayoutTests
{
    [Theory]
    [InlineData("none")]
    [InlineData("processed")]
    public void QkvWeightsShareOneFusedBufferWithoutACopy(string variant)
    {
        using var model = Golden.Model(variant);
        long q = model.Parameter("blocks.1.attn.W_Q").DataAddress(), k = model.Parameter("blocks.1.attn.W_K").DataAddress(),
            v = model.Parameter("blocks.1.attn.W_V").DataAddress();
        Assert.Equal(4 * 16 * sizeof(float), k - q); // [d, 3, h, dh]: K starts one (h·dh) block after Q
        Assert.Equal(2 * 4 * 16 * sizeof(float), v - q);
    }
}
