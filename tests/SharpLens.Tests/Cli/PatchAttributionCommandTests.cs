using System.Text.Json.Nodes;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class PatchAttributionCommandTests
{
    [Theory]
    [InlineData("denoising")]
    [InlineData("noising")]
    public void PatchAttributionCompareWritesBothMethodsAndTheirCorrelation(string direction)
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
            string clean = TokenPromptFile(dir, "clean.json", Golden.Tokens, answers);
            string corrupted = TokenPromptFile(dir, "corrupted.json", Golden.Tensor("inputs.safetensors", "corrupted_tokens"), answers);
            string json = Path.Combine(dir, "p.json"), report = Path.Combine(dir, "p.html");
            var (code, stdout, stderr) = Run("patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", corrupted, "--kind", "resid_pre",
                "--method", "attribution", "--direction", direction, "--compare", "--json", json, "--report", report);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            Assert.Equal("attribution", o["method"]!.GetValue<string>());
            Assert.Equal(direction, o["direction"]!.GetValue<string>());
            static IEnumerable<float> Flat(JsonNode n) => n is JsonArray a ? a.SelectMany(x => Flat(x!)) : [n.GetValue<float>()];
            var baseMetric = Golden.Grads[direction == "denoising" ? "corrupted_metric" : "clean_metric"];
            Golden.AssertClose(Golden.Grads[$"attr_patch.{direction}.resid_pre"] + baseMetric, tensor(Flat(o["values"]!).ToArray()).reshape(2, 12), "values");
            Golden.AssertClose(Golden.Grads[$"act_patch.{direction}.resid_pre"], tensor(Flat(o["exact_values"]!).ToArray()).reshape(2, 12), "exact_values");
            double pearson = Golden.GradsManifest["sanity_checks"]![$"attr_vs_act_patch_{direction}_resid_pre_pearson"]!.GetValue<double>();
            Assert.Equal(pearson, o["correlation"]!["pearson"]!.GetValue<double>(), 3);
            Assert.Contains("exact", File.ReadAllText(report));
        }
        finally { Directory.Delete(dir, true); }
    }
}
