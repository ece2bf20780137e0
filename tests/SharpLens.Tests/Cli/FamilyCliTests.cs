using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tests.Families;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary><c>sharplens run/dla/patch/generate</c> on LLaMA-line checkpoints against TransformerLens golden data.</summary>
public sealed class FamilyCliTests
{
    [Theory]
    [InlineData("tiny-qwen3", false)]
    [InlineData("tiny-qwen3", true)]
    [InlineData("tiny-mistral", true)]
    public void RunExportsEveryActivationProcessedAndUnprocessed(string fixture, bool noProcessing)
    {
        var fx = new FamilyFixture(fixture);
        string dir = TempDir();
        try
        {
            using var scope = NewDisposeScope();
            var tokens = fx.Input("tokens");
            string tokensFile = Path.Combine(dir, "tokens.json");
            File.WriteAllText(tokensFile, JsonSerializer.Serialize(Enumerable.Range(0, (int)tokens.shape[0]).Select(b => tokens[b].data<long>().ToArray())));
            string outPath = Path.Combine(dir, "acts.safetensors");
            string[] args = ["run", "--model", fx.Dir, "--tokens-file", tokensFile, "--out", outPath];
            var (code, _, stderr) = Run(noProcessing ? [.. args, "--no-processing"] : args);
            Assert.True(code == 0, stderr);
            using var f = SafetensorsFile.Open(outPath);
            Assert.Equal(new[] { "logits", "tokens" }.Concat(fx.Strings("hook_names_in_order")).Order(StringComparer.Ordinal), f.Names.Order(StringComparer.Ordinal));
            string variant = noProcessing ? "none" : "processed";
            Golden.AssertClose(fx.Load("logits.safetensors")[$"logits_{variant}"], f.Read("logits"), "logits");
            var cache = fx.Load($"cache_{variant}.safetensors");
            foreach (var name in fx.Valid($"cache_{variant}.safetensors")) Golden.AssertClose(cache[name], f.Read(name), $"{fixture}/{variant}: {name}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DlaPatchAndGenerateWorkOnLlama()
    {
        var fx = new FamilyFixture("tiny-llama");
        string dir = TempDir();
        try
        {
            using var scope = NewDisposeScope();
            var answers = fx.Input("answer_tokens");
            string prompts = TokenPromptFile(dir, "prompts.json", fx.Input("tokens"), answers);
            string json = Path.Combine(dir, "dla.json");
            var (code, _, stderr) = Run("dla", "--model", fx.Dir, "--prompts", prompts, "--json", json);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            var g = fx.Load("dla.safetensors");
            float[] F(JsonNode n) => n.AsArray().Select(x => x!.GetValue<float>()).ToArray();
            Golden.AssertClose(g["og_logit_diff_per_prompt"], tensor(o["prompts"]!.AsArray().Select(p => p!["logit_diff"]!.GetValue<float>()).ToArray()), "per prompt");
            Golden.AssertClose(g["accumulated_resid_logit_diffs"], tensor(F(o["accumulated_resid"]!["logit_diff"]!)), "accumulated");
            Golden.AssertClose(g["decompose_resid_logit_diffs"], tensor(F(o["decomposed_resid"]!["logit_diff"]!)), "decomposed (no pos_embed)");
            Assert.DoesNotContain("pos_embed", o["decomposed_resid"]!["labels"]!.AsArray().Select(x => x!.GetValue<string>()));
            Golden.AssertClose(g["per_head_logit_diffs"], tensor(o["head_logit_diff"]!.AsArray().SelectMany(r => F(r!)).ToArray()).reshape(2, 4), "heads");

            string corrupted = TokenPromptFile(dir, "corrupted.json", fx.Input("corrupted_tokens"), answers);
            string pjson = Path.Combine(dir, "patch.json");
            (code, _, stderr) = Run("patch", "--model", fx.Dir, "--clean", prompts, "--corrupted", corrupted, "--kind", "head_out_all_pos", "--json", pjson);
            Assert.True(code == 0, stderr);
            var p = JsonNode.Parse(File.ReadAllText(pjson))!.AsObject();
            var expected = fx.Load("patching.safetensors")["act_patch_attn_head_out_all_pos"];
            Golden.AssertClose(expected, tensor(p["values"]!.AsArray().SelectMany(r => F(r!)).ToArray()).reshape(expected.shape), "patch heads");

            var input = string.Join(",", fx.Input("generate_input").data<long>().ToArray());
            var gen = fx.Load("generate.safetensors")["generate_with_tokenizer_kv_cache_true"].data<long>().ToArray();
            var (gcode, stdout, gerr) = Run("generate", "--model", fx.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy");
            Assert.True(gcode == 0, gerr);
            Assert.Equal(string.Join(", ", gen), stdout.Trim());
            Assert.Equal(stdout, Run("generate", "--model", fx.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy", "--no-kv-cache").Out);
        }
        finally { Directory.Delete(dir, true); }
    }
}
