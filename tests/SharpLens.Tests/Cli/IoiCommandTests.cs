using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class IoiCommandTests(RandomGpt2Checkpoint checkpoint) : IClassFixture<RandomGpt2Checkpoint>
{
    [Fact]
    public void IoiRunsEndToEndWithTablesJsonAndReport()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string json = Path.Combine(dir, "ioi.json"), report = Path.Combine(dir, "ioi.html");
            var (code, stdout, stderr) = Run("ioi", "--model", checkpoint.Dir, "--json", json, "--report", report, "--top-k", "3");
            Assert.True(code == 0, stderr + stdout);
            Assert.Contains("prompts and answers", stdout);
            Assert.Contains("Logit differences", stdout);
            Assert.Contains("When John and Mary went to the shops, John gave the bag to", stdout);
            Assert.Contains("Seed check", stdout);

            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            foreach (var key in new[] { "model", "n_layers", "n_heads", "prompts", "avg_logit_diff", "dla_identity_error", "dla_identity_error_with_bias",
                         "accumulated_resid", "decomposed_resid", "head_logit_diff", "top_heads" })
                Assert.True(o.ContainsKey(key), $"missing key {key}");
            var prompts = o["prompts"]!.AsArray();
            Assert.Equal(8, prompts.Count);
            Assert.Equal(5335, prompts[0]!["correct_id"]!.GetValue<int>());   // " Mary"
            Assert.Equal(1757, prompts[0]!["incorrect_id"]!.GetValue<int>()); // " John"
            foreach (var key in new[] { "prompt", "correct", "incorrect", "logit_diff" }) Assert.NotNull(prompts[0]![key]);
            Assert.Equal(3, o["top_heads"]!.AsArray().Count);
            Assert.Equal(2, o["head_logit_diff"]!.AsArray().Count);
            Assert.Equal(["0_pre", "0_mid", "1_pre", "1_mid", "final_post"], o["accumulated_resid"]!["labels"]!.AsArray().Select(x => x!.GetValue<string>()));
            double avg = o["avg_logit_diff"]!.GetValue<double>();
            Assert.Equal(avg, prompts.Average(p => p!["logit_diff"]!.GetValue<double>()), 4);
            // The identity holds with the bias term; the final accumulated component equals the full logit diff minus it.
            Assert.True(Math.Abs(o["dla_identity_error_with_bias"]!.GetValue<double>()) < 1e-4);

            string html = File.ReadAllText(report);
            Assert.DoesNotContain("http://", html);
            Assert.DoesNotContain("https://", html);
            Assert.Contains("Direct logit attribution per head", html);
            if (SharpLens.Tests.Visualization.BrowserCheck.Available)
            {
                var (browserCode, text) = SharpLens.Tests.Visualization.BrowserCheck.Run(report);
                Assert.True(browserCode == 0, $"the report did not render: {text}");
                Assert.Contains("OK (3 figures", text);
                Assert.Contains("1 attention view", text);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DlaOnTokenPromptsReproducesGoldenValues()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            using var scope = NewDisposeScope();
            string prompts = TokenPromptFile(dir, "prompts.json", Golden.Tokens, Golden.Tensor("inputs.safetensors", "answer_tokens"));
            string json = Path.Combine(dir, "out.json");
            var (code, _, stderr) = Run("dla", "--model", Golden.Dir, "--prompts", prompts, "--json", json);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            var g = Golden.Load("dla.safetensors");
            float[] F(JsonNode n) => n.AsArray().Select(x => x!.GetValue<float>()).ToArray();
            Golden.AssertClose(g["og_logit_diff_per_prompt"], tensor(o["prompts"]!.AsArray().Select(p => p!["logit_diff"]!.GetValue<float>()).ToArray()), "per prompt");
            Golden.AssertClose(g["accumulated_resid_logit_diffs"], tensor(F(o["accumulated_resid"]!["logit_diff"]!)), "accumulated");
            Golden.AssertClose(g["decompose_resid_logit_diffs"], tensor(F(o["decomposed_resid"]!["logit_diff"]!)), "decomposed");
            var heads = o["head_logit_diff"]!.AsArray().SelectMany(r => F(r!)).ToArray();
            Golden.AssertClose(g["per_head_logit_diffs"], tensor(heads).reshape(2, 4), "heads");
            double expectedIdentity = g["scaled_residual_logit_diff_mean"].item<float>() - g["og_logit_diff_mean"].item<float>();
            Assert.Equal(expectedIdentity, o["dla_identity_error"]!.GetValue<double>(), 4);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DlaAllowsPromptsOfDifferentLengths()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string prompts = Path.Combine(dir, "prompts.json"), json = Path.Combine(dir, "out.json");
            File.WriteAllText(prompts, """
                [{"prompt": "When John and Mary went to the shops, John gave the bag to", "correct": " Mary", "incorrect": " John"},
                 {"prompt": "After Martin and Amy went to the park, Amy gave a drink to", "correct": " Martin", "incorrect": " Amy"},
                 {"prompt": "Alice met Bob. Bob thanked", "correct": " Alice", "incorrect": " Bob"}]
                """);
            var (code, _, stderr) = Run("dla", "--model", checkpoint.Dir, "--prompts", prompts, "--json", json);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            // The short prompt read at its own last position equals running it alone.
            string single = Path.Combine(dir, "single.json"), singleJson = Path.Combine(dir, "single-out.json");
            File.WriteAllText(single, """[{"prompt": "Alice met Bob. Bob thanked", "correct": " Alice", "incorrect": " Bob"}]""");
            Assert.Equal(0, Run("dla", "--model", checkpoint.Dir, "--prompts", single, "--json", singleJson).Code);
            var alone = JsonNode.Parse(File.ReadAllText(singleJson))!["prompts"]![0]!["logit_diff"]!.GetValue<double>();
            Assert.Equal(alone, o["prompts"]![2]!["logit_diff"]!.GetValue<double>(), 4);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadPromptFilesFailSpecificallyAndWriteNothing()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string report = Path.Combine(dir, "r.html"), json = Path.Combine(dir, "r.json");
            (string Content, string Expected)[] cases =
            [
                ("[]", "prompt list is empty"),
                ("[{\"prompt\": \"x\", \"correct\": \" Mary Ann\", \"incorrect\": \" John\"}]", "entry 0: the correct answer must be a single token"),
                ("[{\"prompt\": \"x\",\n \"correct\": }]", "not valid JSON at line 2"),
                ("[{\"tokens\": [1, 2, 99999], \"correct_id\": 1, \"incorrect_id\": 2}]", "token id 99999 is outside the vocabulary"),
            ];
            foreach (var (content, expected) in cases)
            {
                string prompts = Path.Combine(dir, "p.json");
                File.WriteAllText(prompts, content);
                var (code, _, stderr) = Run("dla", "--model", checkpoint.Dir, "--prompts", prompts, "--json", json, "--report", report);
                Assert.NotEqual(0, code);
                Assert.Contains(expected, stderr);
                Assert.False(File.Exists(report));
                Assert.False(File.Exists(json));
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
