using System.Text.Json;
using SharpLens.Loading;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class RunBackwardCommandTests
{
    [Fact]
    public void RunBackwardWritesEveryGradientMatchingTransformerLens()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var t = Golden.Tokens;
            string tokens = Path.Combine(dir, "tokens.json"), answers = Path.Combine(dir, "answers.json"), outPath = Path.Combine(dir, "g.safetensors");
            File.WriteAllText(tokens, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => t[b].data<long>().ToArray()).ToArray()));
            var a = Golden.Tensor("inputs.safetensors", "answer_tokens");
            File.WriteAllText(answers, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => a[b].data<long>().ToArray()).ToArray()));
            var (code, stdout, stderr) = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--backward", "logit-diff", "--answers", answers);
            Assert.True(code == 0, stderr);
            using var f = SafetensorsFile.Open(outPath);
            var grads = Golden.GradsManifest["labels"]!["grad_names_in_backward_order"]!.AsArray().Select(x => x!.GetValue<string>()).ToList();
            Assert.Equal(2 + 40 + 40, f.Names.Count());
            foreach (var g in grads)
                Golden.AssertGradClose(Golden.Grads[g.Contains(".ln1.") ? g + "_total" : g], f.Read(g), g);

            Assert.Contains("--answers", Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--backward", "logit-diff").Err);
            File.WriteAllText(answers, "[[5, 7]]");
            Assert.Contains("1 pairs but there are 4 prompts", Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--backward", "logit-diff", "--answers", answers).Err);
        }
        finally { Directory.Delete(dir, true); }
    }
}
