using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharplens-ckpt-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private string P(string name) => Path.Combine(_dir, name);

    private static void WriteIndex(string path, params (string Name, string Shard)[] map) =>
        File.WriteAllText(path, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {" +
            string.Join(", ", map.Select(m => $"\"{m.Name}\": \"{m.Shard}\"")) + "}}");

    [Fact]
    public void LoadsTinyGpt2Folder()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(Path.Combine(Golden.Dir, "model.safetensors"), Checkpoint.FindWeights(Golden.Dir));
        var sd = Checkpoint.LoadStateDict(Golden.Dir);
        Assert.Equal(28, sd.Count);
        Assert.Equal([1000L, 64L], sd["wte.weight"].shape);
    }

    [Fact]
    public void ConfigWithMoreLayersThanTheWeightsSaysSo()
    {
        // Found by the config.json fuzzer on a fast CI machine: the error named only the missing tensor.
        File.Copy(Path.Combine(Golden.Dir, "model.safetensors"), P("model.safetensors"));
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Golden.Dir, "config.json")))!;
        int layers = cfg["n_layer"]!.GetValue<int>();
        cfg["n_layer"] = layers + 3;
        File.WriteAllText(P("config.json"), cfg.ToJsonString());
        var e = Assert.Throws<SharpLensException>(() => SharpLens.Model.HookedTransformer.FromFolder(_dir, ProcessingOptions.None, "t").Dispose());
        Assert.Contains($"missing tensor 'h.{layers}.ln_1.weight'", e.Message);
        Assert.Contains($"The checkpoint has {layers} layer(s); config.json asks for at least {layers + 1}.", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void PrefersSafetensorsOverBin()
    {
        using var scope = NewDisposeScope();
        PytorchCheckpointTests.Sample().Save(P("pytorch_model.bin"));
        Assert.Equal(P("pytorch_model.bin"), Checkpoint.FindWeights(_dir));
        Assert.Equal(6, Checkpoint.LoadStateDict(_dir).Count);

        SafetensorsWriter.Write(P("model.safetensors"), [new("only", ones(1))]);
        Assert.Equal(P("model.safetensors"), Checkpoint.FindWeights(_dir));
        Assert.Equal(["only"], Checkpoint.LoadStateDict(_dir).Keys);
    }

    [Fact]
    public void LoadsShardedSafetensors()
    {
        using var scope = NewDisposeScope();
        SafetensorsWriter.Write(P("model-00001-of-00002.safetensors"), [new("a", full(2, 1f)), new("b", full(3, 2f))]);
        SafetensorsWriter.Write(P("model-00002-of-00002.safetensors"), [new("c", full(1, 3L))]);
        WriteIndex(P("model.safetensors.index.json"), ("a", "model-00001-of-00002.safetensors"),
            ("b", "model-00001-of-00002.safetensors"), ("c", "model-00002-of-00002.safetensors"));
        Assert.Equal(P("model.safetensors.index.json"), Checkpoint.FindWeights(_dir));
        var sd = Checkpoint.LoadStateDict(_dir);
        Assert.Equal(["a", "b", "c"], sd.Keys.Order());
        Assert.Equal([2f, 2f, 2f], sd["b"].data<float>().ToArray());
        Assert.Equal(3L, sd["c"].item<long>());
    }

    [Fact]
    public void LoadsShardedBin()
    {
        using var scope = NewDisposeScope();
        PytorchCheckpointTests.Sample().Save(P("pytorch_model-00001-of-00001.bin"));
        WriteIndex(P("pytorch_model.bin.index.json"), ("embed.weight", "pytorch_model-00001-of-00001.bin"), ("ln.bias", "pytorch_model-00001-of-00001.bin"));
        var sd = Checkpoint.LoadStateDict(_dir);
        Assert.Equal([2.5f, 3f, 3.5f], sd["ln.bias"].data<float>().ToArray());
    }

    [Fact]
    public void MissingShardIsNamed()
    {
        SafetensorsWriter.Write(P("s1.safetensors"), [new("a", ones(1))]);
        WriteIndex(P("model.safetensors.index.json"), ("a", "s1.safetensors"), ("b", "s2.safetensors"));
        var e = Assert.Throws<SharpLensException>(() => Checkpoint.LoadStateDict(_dir));
        Assert.Contains("1 of 2 shard files are missing: s2.safetensors", e.Message);
        Assert.Contains("'b'", e.Message);
    }

    [Fact]
    public void NameInTwoShardsIsRejected()
    {
        SafetensorsWriter.Write(P("s1.safetensors"), [new("a", ones(1)), new("b", ones(1))]);
        SafetensorsWriter.Write(P("s2.safetensors"), [new("b", ones(1))]);
        WriteIndex(P("model.safetensors.index.json"), ("a", "s1.safetensors"), ("b", "s2.safetensors"));
        var e = Assert.Throws<SafetensorsFormatException>(() => Checkpoint.LoadStateDict(_dir));
        Assert.Contains("tensor 'b' is in two shards, 's1.safetensors' and 's2.safetensors'", e.Message);
    }

    [Fact]
    public void NameMissingFromItsShardIsRejected()
    {
        SafetensorsWriter.Write(P("s1.safetensors"), [new("a", ones(1))]);
        WriteIndex(P("model.safetensors.index.json"), ("a", "s1.safetensors"), ("z", "s1.safetensors"));
        var e = Assert.Throws<SafetensorsFormatException>(() => Checkpoint.LoadStateDict(_dir));
        Assert.Contains("weight_map puts 'z' in 's1.safetensors', but no shard has it", e.Message);
    }

    [Fact]
    public void FromFolderWithoutOptionsProcessesLikeFromPretrained()
    {
        // README: FromFolder(folder, useWeightsCache: false) — options default to TransformerLens's processing.
        using var plain = SharpLens.Model.HookedTransformer.FromFolder(Golden.Dir, useWeightsCache: false);
        using var none = SharpLens.Model.HookedTransformer.FromFolder(Golden.Dir, ProcessingOptions.None, useWeightsCache: false);
        Assert.Equal("LNPre", plain.Config.NormalizationType);
        Assert.Equal("LN", none.Config.NormalizationType);
    }

    [Fact]
    public void FolderErrors()
    {
        var missing = P("nope");
        Assert.Contains($"Model folder '{missing}' does not exist", Assert.Throws<SharpLensException>(() => Checkpoint.LoadStateDict(missing)).Message);

        File.WriteAllText(P("config.json"), "{}");
        File.WriteAllText(P("model.ckpt"), "");
        Assert.Null(Checkpoint.FindWeights(_dir));
        var e = Assert.Throws<SharpLensException>(() => Checkpoint.LoadStateDict(_dir));
        Assert.Contains("looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json", e.Message);
        Assert.Contains("the folder contains config.json, model.ckpt", e.Message);
    }
}
