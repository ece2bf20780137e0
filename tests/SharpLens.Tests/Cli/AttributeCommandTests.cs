using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class AttributeCommandTests
{
    [Fact]
    public void AttributeWritesPerTokenIntegratedGradientsMatchingTheGolden()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var t = Golden.Tokens;
            var a = Golden.Tensor("inputs.safetensors", "answer_tokens");
            string tokens = Path.Combine(dir, "t.json"), answers = Path.Combine(dir, "a.json"), json = Path.Combine(dir, "ig.json"), report = Path.Combine(dir, "ig.html");
            File.WriteAllText(tokens, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => t[b].data<long>().ToArray()).ToArray()));
            File.WriteAllText(answers, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => a[b].data<long>().ToArray()).ToArray()));
            var (code, stdout, stderr) = Run("attribute", "--model", Golden.Dir, "--tokens-file", tokens, "--answers", answers, "--json", json, "--report", report);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            Assert.Equal(20, o["steps"]!.GetValue<int>());
            var attr = tensor(o["prompts"]!.AsArray().SelectMany(p => p!["attributions"]!.AsArray().Select(v => v!.GetValue<float>())).ToArray()).reshape(4, 12);
            Golden.AssertClose(Golden.Grads["ig.token_embed.attributions"] * 4, attr, "per-token IG (logit-difference units)");
            Assert.True(File.Exists(report));
            Assert.Contains("--steps", Run("attribute", "--model", Golden.Dir, "--tokens-file", tokens, "--answers", answers, "--steps", "0").Err);
        }
        finally { Directory.Delete(dir, true); }
    }
}
