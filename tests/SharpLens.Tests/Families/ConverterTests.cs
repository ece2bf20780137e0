using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Families;

/// <summary>Each family converter's output equals TransformerLens's unprocessed state dict (weights_none).</summary>
public sealed class NeoxConverterTests
{
    private static string Fixture(string set, string file) => Path.Combine(AppContext.BaseDirectory, "fixtures", set, file);

    public static TheoryData<string> Sets => new() { "tiny-neox", "tiny-gptj", "tiny-neo", "tiny-opt" };

    [Theory]
    [MemberData(nameof(Sets))]
    public void ConverterEqualsWeightsNone(string set)
    {
        using var scope = NewDisposeScope();
        var cfg = new HookedTransformerConfig(nLayers: 2, dModel: 64, nCtx: 64, dHead: 16, nHeads: 4,
            dVocab: set switch { "tiny-neox" => 768, "tiny-gptj" => 640, "tiny-neo" => 800, _ => 720 }, dMlp: 256);
        var hf = Checkpoint.LoadStateDict(Path.Combine(AppContext.BaseDirectory, "fixtures", set));
        var sd = set switch
        {
            "tiny-neox" => GptNeoXConverter.Convert(hf, cfg),
            "tiny-gptj" => GptJConverter.Convert(hf, cfg),
            "tiny-neo" => GptNeoConverter.Convert(hf, cfg),
            _ => OptConverter.Convert(hf, cfg),
        };
        using var f = SafetensorsFile.Open(Fixture(set, "expected/weights_none.safetensors"));
        Assert.Equal(f.Names.Order(StringComparer.Ordinal), sd.Keys.Order(StringComparer.Ordinal));
        foreach (var n in f.Names)
        {
            var e = f.Read(n);
            Assert.True(e.shape.SequenceEqual(sd[n].shape) && e.eq(sd[n]).all().item<bool>(), $"{set} {n}");
        }
    }
}
