using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class PatchGenerateCommandTests
{
    [Theory]
    [InlineData("resid_pre", "act_patch_resid_pre")]
    [InlineData("head_out_all_pos", "act_patch_attn_head_out_all_pos")]
    [InlineData("head_out_by_pos", "act_patch_attn_head_out_by_pos")]
    public void PatchReproducesTransformerLensAndWritesJsonAndReport(string kind, string golden)
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
            var (code, stdout, stderr) = Run("patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", corrupted, "--kind", kind, "--json", json, "--report", report);
            Assert.True(code == 0, stderr);
            Assert.Contains("(100%)", stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            Assert.Equal(kind, o["kind"]!.GetValue<string>());
            var g = Golden.Load("patching.safetensors");
            Assert.Equal(g["clean_metric"].item<float>(), o["clean_metric"]!.GetValue<float>(), 4);
            Assert.Equal(g["corrupted_metric"].item<float>(), o["corrupted_metric"]!.GetValue<float>(), 4);
            static IEnumerable<float> Flat(JsonNode n) => n is JsonArray a ? a.SelectMany(x => Flat(x!)) : [n.GetValue<float>()];
            Golden.AssertClose(g[golden], tensor(Flat(o["values"]!).ToArray()).reshape(g[golden].shape), kind);
            Assert.True(File.Exists(report));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void PatchRejectsMismatchedSetsAndUnknownKinds()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
            string clean = TokenPromptFile(dir, "clean.json", Golden.Tokens, answers);
            string shorter = TokenPromptFile(dir, "short.json", Golden.Tokens.narrow(1, 0, 8), answers);
            string fewer = TokenPromptFile(dir, "fewer.json", Golden.Tokens.narrow(0, 0, 2), answers.narrow(0, 0, 2));
            Assert.Contains("must have 12 tokens", Run("patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", shorter, "--kind", "resid_pre").Err);
            Assert.Contains("has 4 prompts but", Run("patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", fewer, "--kind", "resid_pre").Err);
            var bad = Run("patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", clean, "--kind", "resid_pr");
            Assert.Equal(2, bad.Code);
            Assert.Contains("Did you mean 'resid_pre'", bad.Err);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GenerateGreedyMatchesTransformerLens()
    {
        using var scope = NewDisposeScope();
        var expected = Golden.Tensor("generate.safetensors", "generate_no_tokenizer_kv_cache_false").data<long>().ToArray();
        var input = string.Join(",", Golden.Tensor("inputs.safetensors", "generate_input").data<long>().ToArray());
        var (code, stdout, stderr) = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy");
        Assert.True(code == 0, stderr);
        Assert.Equal(string.Join(", ", expected), stdout.Trim());
        var noKv = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy", "--no-kv-cache");
        Assert.Equal(stdout, noKv.Out);
        var sampled1 = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--seed", "3", "--top-k", "5");
        var sampled2 = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--seed", "3", "--top-k", "5");
        Assert.Equal(sampled1.Out, sampled2.Out);
    }
}
