using System.Text.Json.Nodes;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Core;

/// <summary>The dtype plumbing: config, loading, CLI <c>--dtype</c> (values; numerics are in PrecisionTests).</summary>
public sealed class DtypeTests
{
    [Theory]
    [InlineData("float32", ScalarType.Float32)]
    [InlineData("FP32", ScalarType.Float32)]
    [InlineData("bfloat16", ScalarType.BFloat16)]
    [InlineData("bf16", ScalarType.BFloat16)]
    [InlineData("float16", ScalarType.Float16)]
    [InlineData("fp16", ScalarType.Float16)]
    public void NamesAndAliasesParse(string name, ScalarType expected)
    {
        Assert.Equal(expected, ModelDtype.Parse(name));
        Assert.Equal(name.ToLowerInvariant() switch { "fp32" => "float32", "bf16" => "bfloat16", "fp16" => "float16", var n => n }, ModelDtype.Name(expected));
    }

    [Fact]
    public void OtherDtypesAreRejectedWithTheAllowedOnes()
    {
        var e = Assert.Throws<SharpLensException>(() => ModelDtype.Parse("float64"));
        Assert.Contains("float32, bfloat16, float16", e.Message);
        var c = Assert.Throws<SharpLensException>(() => new HookedTransformerConfig(1, 8, 4, 4, 2, 10, dtype: ScalarType.Float64));
        Assert.Contains("float32, bfloat16, float16", c.Message);
        Assert.Throws<SharpLensException>(() => HookedTransformer.FromFolder(Golden.Dir, Golden.Options("processed"), dtype: ScalarType.Int32));
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void FromFolderStoresEveryParameterInTheRequestedDtype(ScalarType dtype)
    {
        using var model = HookedTransformer.FromFolder(Golden.Dir, Golden.Options("processed"), "tiny-gpt2", dtype);
        Assert.Equal(dtype, model.Dtype);
        Assert.Equal(dtype, model.Config.Dtype);
        Assert.All(model.StateDict, kv => Assert.Equal(dtype, kv.Value.dtype));
        Assert.Equal(ModelDtype.Name(dtype), JsonNode.Parse(model.Config.ToJson())!["dtype"]!.GetValue<string>());
    }

    [Fact]
    public void DefaultIsFloat32()
    {
        using var model = Golden.Model();
        Assert.Equal(ScalarType.Float32, model.Dtype);
    }

    public static TheoryData<string[]> ModelCommands => new()
    {
        new[] { "run", "--model", "M", "--out", "o.safetensors", "--tokens-file", "t.json" },
        new[] { "dla", "--model", "M", "--prompts", "p.json" },
        new[] { "ioi" },
        new[] { "patch", "--model", "M", "--clean", "a.json", "--corrupted", "b.json", "--kind", "resid_pre" },
        new[] { "generate", "--model", "M", "--tokens", "1,2" },
        new[] { "attribute", "--model", "M", "--answers", "a.json", "--prompt", "x" },
        new[] { "sae", "--model", "M", "--sae", "S", "--prompt", "x" },
    };

    [Theory]
    [MemberData(nameof(ModelCommands))]
    public void EveryModelCommandRejectsAnUnknownDtypeWithExitCode2(string[] args)
    {
        var (code, _, err) = Run([.. args, "--dtype", "float64"]);
        Assert.Equal(2, code);
        Assert.Contains("--dtype 'float64'", err);
        Assert.Contains("float32, bfloat16, float16", err);
        var help = Run(args[0], "--help");
        Assert.Contains("--dtype", help.Out);
        Assert.Contains("very slow on CPU", help.Out);
    }

    [Fact]
    public void DlaReportsTheDtypeInItsHeaderAndJson()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
            string prompts = TokenPromptFile(dir, "p.json", Golden.Tokens, answers), json = Path.Combine(dir, "d.json");
            var (code, _, err) = Run("dla", "--model", Golden.Dir, "--prompts", prompts, "--json", json, "--dtype", "fp32");
            Assert.True(code == 0, err);
            Assert.Contains("4 heads, float32)", err);
            var o = JsonNode.Parse(File.ReadAllText(json))!;
            Assert.Equal("float32", o["dtype"]!.GetValue<string>());
        }
        finally { Directory.Delete(dir, true); }
    }
}
