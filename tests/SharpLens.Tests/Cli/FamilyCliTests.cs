using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tests.Families;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary><c>sharplens run</c> / <c>dla</c> / <c>generate</c> on the Gemma, Phi-3 and OLMo-2 goldens (token-id prompts, no tokenizer).</summary>
public sealed class FamilyCliTests
{
    [Theory]
    [InlineData("tiny-gemma")]
    [InlineData("tiny-gemma2")]
    [InlineData("tiny-gemma3")]
    [InlineData("tiny-phi3")]
    [InlineData("tiny-olmo2")]
    public void RunDlaAndGenerateMatchTheRealModel(string set)
    {
        var g = new FamilyFixture(set);
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            var tokens = g.Input("tokens");
            string tokensFile = Path.Combine(dir, "tokens.json");
            File.WriteAllText(tokensFile, JsonSerializer.Serialize(Enumerable.Range(0, (int)tokens.shape[0]).Select(b => tokens[b].data<long>().ToArray())));
            var logits = g.Load("logits.safetensors");

            // run, processed: the real model's processed logits and cache (TransformerLens's, with its bug fixed where flagged).
            string outPath = Path.Combine(dir, "acts.safetensors");
            var (code, _, err) = Run("run", "--model", g.Dir, "--tokens-file", tokensFile, "--out", outPath);
            Assert.True(code == 0, err);
            using (var f = SafetensorsFile.Open(outPath))
            {
                Golden.AssertClose(logits[g.HasTlBug ? "logits_processed_hf_semantics" : "logits_processed"], f.Read("logits"), $"{set} run logits");
                var cache = g.Load(g.HasTlBug ? "cache_processed_hf_semantics.safetensors" : "cache_processed.safetensors");
                foreach (var (name, t) in cache) Golden.AssertClose(t, f.Read(name), $"{set} run {name}");
            }
            if (set == "tiny-gemma2") Assert.Contains("center_unembed skipped", err);

            // run --no-processing: the raw model (Hugging Face's own logits where the set has them).
            (code, _, err) = Run("run", "--model", g.Dir, "--tokens-file", tokensFile, "--no-processing", "--out", outPath);
            Assert.True(code == 0, err);
            using (var f = SafetensorsFile.Open(outPath))
                Golden.AssertClose(logits[g.HasTlBug ? "hf_reference_logits" : "logits_none"], f.Read("logits"), $"{set} run --no-processing logits");

            // dla on token-id prompts: the real model's logit difference; notes where the architecture needs them.
            string prompts = TokenPromptFile(dir, "prompts.json", tokens, g.Input("answer_tokens"));
            string json = Path.Combine(dir, "dla.json");
            (code, var stdout, err) = Run("dla", "--model", g.Dir, "--prompts", prompts, "--json", json);
            Assert.True(code == 0, err);
            var o = JsonNode.Parse(File.ReadAllText(json))!;
            using (var real = g.Model())
            {
                var expected = SharpLens.Analysis.LogitDiff.Mean(real.Forward(tokens), g.Input("answer_tokens")).item<float>();
                Assert.Equal(expected, o["avg_logit_diff"]!.GetValue<float>(), 4);
                if (!g.HasTlBug) Assert.Equal(g.Tensor("dla.safetensors", "og_logit_diff_mean").item<float>(), o["avg_logit_diff"]!.GetValue<float>(), 4);
            }
            Assert.Equal(set is "tiny-gemma2" or "tiny-gemma3" or "tiny-olmo2", o["notes"]!.AsArray().Count > 0);
            if (set == "tiny-olmo2") Assert.Contains("Post-norm blocks", stdout);

            // generate, greedy, from token ids.
            var prompt = g.Input("generate_input")[0].data<long>().ToArray();
            var expectedIds = g.Tensor("generate.safetensors", g.HasTlBug ? "hf_reference_generate" : "generate_no_tokenizer_kv_cache_false")[0].data<long>().ToArray();
            (code, stdout, err) = Run("generate", "--model", g.Dir, "--tokens", string.Join(",", prompt), "--greedy",
                "--max-new-tokens", (expectedIds.Length - prompt.Length).ToString());
            Assert.True(code == 0, err);
            Assert.Equal(string.Join(", ", expectedIds), stdout.Trim());
        }
        finally { Directory.Delete(dir, true); }
    }
}
