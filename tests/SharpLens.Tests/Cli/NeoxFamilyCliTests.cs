using System.Text.Json;
using SharpLens.Loading;
using SharpLens.Tests.Families;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>`sharplens run` and `generate` on NeoX-line fixtures, compared with TransformerLens's golden caches.</summary>
public sealed class NeoxFamilyCliTests
{
    [Theory]
    [InlineData("tiny-neox", false)]
    [InlineData("tiny-neox", true)]
    [InlineData("tiny-opt", false)]
    [InlineData("tiny-opt", true)]
    public void RunExportsTransformerLensActivations(string set, bool noProcessing)
    {
        var fx = new FamilyFixture(set);
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var tokens = fx.Input("tokens");
            string tokensPath = Path.Combine(dir, "tokens.json");
            File.WriteAllText(tokensPath, JsonSerializer.Serialize(Enumerable.Range(0, 4).Select(b => tokens[b].data<long>().ToArray())));
            string outPath = Path.Combine(dir, "acts.safetensors");
            var args = new List<string> { "run", "--model", fx.Dir, "--tokens-file", tokensPath, "--out", outPath };
            if (noProcessing) args.Add("--no-processing");
            var (code, _, stderr) = Run([.. args]);
            Assert.True(code == 0, stderr);
            string cacheFile = noProcessing ? "cache_none.safetensors" : "cache_processed.safetensors";
            var expected = fx.Load(cacheFile);
            using var f = SafetensorsFile.Open(outPath);
            foreach (var name in fx.Strings("hook_names_in_order"))
                Golden.AssertClose(expected[name], f.Read(name), $"{set} run {name}");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("tiny-gptj")]
    [InlineData("tiny-neo")]
    public void GenerateGreedyMatchesTheReference(string set)
    {
        var fx = new FamilyFixture(set);
        using var scope = NewDisposeScope();
        var prompt = fx.Input("generate_input")[0].data<long>().ToArray();
        var expected = fx.Load("generate.safetensors")["hf_reference_greedy"][0].data<long>().ToArray();
        var (code, stdout, stderr) = Run("generate", "--model", fx.Dir, "--tokens", string.Join(",", prompt), "--greedy",
            "--max-new-tokens", (expected.Length - prompt.Length).ToString());
        Assert.True(code == 0, stderr);
        Assert.Contains(string.Join(", ", expected), stdout);
    }

    [Theory]
    [InlineData("tiny-gptj")]
    [InlineData("tiny-neo")]
    public void DlaWithTokenIdsGivesTransformerLensLogitDiffs(string set)
    {
        var fx = new FamilyFixture(set);
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var tokens = fx.Input("tokens"); var answers = fx.Input("answer_tokens");
            var prompts = Enumerable.Range(0, 4).Select(b => new
            {
                tokens = tokens[b].data<long>().ToArray(), correct_id = answers[b, 0].item<long>(), incorrect_id = answers[b, 1].item<long>(),
            });
            string promptsPath = Path.Combine(dir, "prompts.json"), jsonPath = Path.Combine(dir, "dla.json");
            File.WriteAllText(promptsPath, JsonSerializer.Serialize(prompts));
            var (code, _, stderr) = Run("dla", "--model", fx.Dir, "--prompts", promptsPath, "--json", jsonPath);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(File.ReadAllText(jsonPath));
            var actual = doc.RootElement.GetProperty("prompts").EnumerateArray().Select(p => p.GetProperty("logit_diff").GetDouble()).ToArray();
            var expected = fx.Load("dla.safetensors")["og_logit_diff_per_prompt"];
            Golden.AssertClose(expected, tensor(actual.Select(x => (float)x).ToArray()), $"{set} dla logit diffs");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
