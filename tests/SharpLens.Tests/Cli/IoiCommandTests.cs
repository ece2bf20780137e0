using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>A random checkpoint with GPT-2's vocabulary (so the real tokenizer applies) but a tiny width.</summary>
internal static class RandomGpt2Checkpoint
{
    private static readonly Lazy<string> Folder = new(Create);
    public static string Dir => Folder.Value;

    private const string Prefix = "sharplens-random-gpt2-";

    private static string Create()
    {
        // Folders of earlier test runs that ended without cleaning up (killed): their process is gone.
        foreach (var stale in Directory.GetDirectories(Path.GetTempPath(), Prefix + "*"))
            if (int.TryParse(Path.GetFileName(stale)[Prefix.Length..], out int pid) && !IsRunning(pid))
                try { Directory.Delete(stale, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        string dir = Path.Combine(Path.GetTempPath(), $"{Prefix}{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        // Shared by every test of this run (it is created once), so it goes when the test process ends.
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
        const int d = 32, layers = 2, vocab = 50257, ctx = 64;
        File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"), ["model_type"] = "gpt2", ["n_embd"] = d, ["n_layer"] = layers,
            ["n_head"] = 4, ["n_positions"] = ctx, ["n_ctx"] = ctx, ["vocab_size"] = vocab, ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = 1e-5, ["bos_token_id"] = 50256, ["eos_token_id"] = 50256,
        }.ToJsonString());
        using var scope = NewDisposeScope();
        var g = new Generator(1234);
        Tensor R(params long[] shape) => randn(shape, generator: g) * 0.2f;
        var t = new Dictionary<string, Tensor> { ["wte.weight"] = R(vocab, d), ["wpe.weight"] = R(ctx, d), ["ln_f.weight"] = 1 + R(d), ["ln_f.bias"] = R(d) };
        for (int l = 0; l < layers; l++)
        {
            string p = $"h.{l}.";
            t[p + "ln_1.weight"] = 1 + R(d); t[p + "ln_1.bias"] = R(d); t[p + "ln_2.weight"] = 1 + R(d); t[p + "ln_2.bias"] = R(d);
            t[p + "attn.c_attn.weight"] = R(d, 3 * d); t[p + "attn.c_attn.bias"] = R(3 * d);
            t[p + "attn.c_proj.weight"] = R(d, d); t[p + "attn.c_proj.bias"] = R(d);
            t[p + "mlp.c_fc.weight"] = R(d, 4 * d); t[p + "mlp.c_fc.bias"] = R(4 * d);
            t[p + "mlp.c_proj.weight"] = R(4 * d, d); t[p + "mlp.c_proj.bias"] = R(d);
        }
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), t);
        return dir;
    }

    private static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }
}

public sealed class IoiCommandTests
{
    [Fact]
    public void IoiRunsEndToEndWithTablesJsonAndReport()
    {
        string dir = TempDir();
        try
        {
            string json = Path.Combine(dir, "ioi.json"), report = Path.Combine(dir, "ioi.html");
            var (code, stdout, stderr) = Run("ioi", "--model", RandomGpt2Checkpoint.Dir, "--json", json, "--report", report, "--top-k", "3");
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
        string dir = TempDir();
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
        string dir = TempDir();
        try
        {
            string prompts = Path.Combine(dir, "prompts.json"), json = Path.Combine(dir, "out.json");
            File.WriteAllText(prompts, """
                [{"prompt": "When John and Mary went to the shops, John gave the bag to", "correct": " Mary", "incorrect": " John"},
                 {"prompt": "After Martin and Amy went to the park, Amy gave a drink to", "correct": " Martin", "incorrect": " Amy"},
                 {"prompt": "Alice met Bob. Bob thanked", "correct": " Alice", "incorrect": " Bob"}]
                """);
            var (code, _, stderr) = Run("dla", "--model", RandomGpt2Checkpoint.Dir, "--prompts", prompts, "--json", json);
            Assert.True(code == 0, stderr);
            var o = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
            // The short prompt read at its own last position equals running it alone.
            string single = Path.Combine(dir, "single.json"), singleJson = Path.Combine(dir, "single-out.json");
            File.WriteAllText(single, """[{"prompt": "Alice met Bob. Bob thanked", "correct": " Alice", "incorrect": " Bob"}]""");
            Assert.Equal(0, Run("dla", "--model", RandomGpt2Checkpoint.Dir, "--prompts", single, "--json", singleJson).Code);
            var alone = JsonNode.Parse(File.ReadAllText(singleJson))!["prompts"]![0]!["logit_diff"]!.GetValue<double>();
            Assert.Equal(alone, o["prompts"]![2]!["logit_diff"]!.GetValue<double>(), 4);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadPromptFilesFailSpecificallyAndWriteNothing()
    {
        string dir = TempDir();
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
                var (code, _, stderr) = Run("dla", "--model", RandomGpt2Checkpoint.Dir, "--prompts", prompts, "--json", json, "--report", report);
                Assert.NotEqual(0, code);
                Assert.Contains(expected, stderr);
                Assert.False(File.Exists(report));
                Assert.False(File.Exists(json));
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
