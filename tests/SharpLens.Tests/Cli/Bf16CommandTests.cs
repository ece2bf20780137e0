using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tests.Core;
using SharpLens.Tests.Sae;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>Every model-loading command in bfloat16 on the golden model: runs, says so, and stays near the float32 numbers.</summary>
public sealed class Bf16CommandTests : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private static double Tol(double expected) => PrecisionTests.Bf16Tolerance * Math.Max(1, Math.Abs(expected));

    private (string Clean, string Corrupted) PromptFiles()
    {
        using var scope = NewDisposeScope();
        var answers = Golden.Tensor("inputs.safetensors", "answer_tokens");
        return (TokenPromptFile(_dir, "clean.json", Golden.Tokens, answers),
            TokenPromptFile(_dir, "corrupted.json", Golden.Tensor("inputs.safetensors", "corrupted_tokens"), answers));
    }

    private JsonNode Json(string[] args, string dtype)
    {
        string json = Path.Combine(_dir, $"{args[0]}-{dtype}.json");
        var (code, _, err) = Run([.. args, "--json", json, "--dtype", dtype]);
        Assert.True(code == 0, err);
        Assert.Contains($", {(dtype == "bf16" ? "bfloat16" : "float32")}) in", err); // the header line
        var o = JsonNode.Parse(File.ReadAllText(json))!;
        Assert.Equal(dtype == "bf16" ? "bfloat16" : "float32", o["dtype"]!.GetValue<string>());
        return o;
    }

    [Fact]
    public void DlaAndPatchInBf16StayNearFloat32()
    {
        var (clean, corrupted) = PromptFiles();
        string[] dla = ["dla", "--model", Golden.Dir, "--prompts", clean];
        var d32 = Json(dla, "fp32");
        var d16 = Json(dla, "bf16");
        foreach (var key in new[] { "avg_logit_diff", "dla_identity_error" })
            Assert.InRange(Math.Abs(d16[key]!.GetValue<double>() - d32[key]!.GetValue<double>()), 0, Tol(d32[key]!.GetValue<double>()));

        using var scope = NewDisposeScope();
        var g = Golden.Load("patching.safetensors");
        foreach (var method in new[] { "exact", "attribution" })
        {
            var p = Json(["patch", "--model", Golden.Dir, "--clean", clean, "--corrupted", corrupted, "--kind", "resid_pre", "--method", method], "bf16");
            Assert.InRange(Math.Abs(p["clean_metric"]!.GetValue<double>() - g["clean_metric"].item<float>()), 0, Tol(g["clean_metric"].item<float>()));
            static IEnumerable<float> Flat(JsonNode n) => n is JsonArray a ? a.SelectMany(x => Flat(x!)) : [n.GetValue<float>()];
            if (method == "exact")
                Golden.AssertClose(g["act_patch_resid_pre"], tensor(Flat(p["values"]!).ToArray()).reshape(g["act_patch_resid_pre"].shape), "bf16 patch", PrecisionTests.Bf16Tolerance);
        }
    }

    [Fact]
    public void GenerateAttributeRunAndSaeWorkInBf16()
    {
        using var scope = NewDisposeScope();
        // Generation: the key/value cache (in bfloat16) gives the same greedy tokens as recomputing every position.
        var input = string.Join(",", Golden.Tensor("inputs.safetensors", "generate_input").data<long>().ToArray());
        var kv = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy", "--dtype", "bf16");
        var noKv = Run("generate", "--model", Golden.Dir, "--tokens", input, "--max-new-tokens", "6", "--greedy", "--dtype", "bf16", "--no-kv-cache");
        Assert.True(kv.Code == 0, kv.Err);
        Assert.Equal(noKv.Out, kv.Out);
        Assert.Equal(string.Join(", ", Golden.Tensor("generate.safetensors", "generate_no_tokenizer_kv_cache_false").data<long>().ToArray()), kv.Out.Trim());

        // Integrated gradients through a bfloat16 model: completeness holds to bfloat16 accuracy.
        string tokens = Path.Combine(_dir, "t.json"), answers = Path.Combine(_dir, "a.json");
        var t = Golden.Tokens; var a = Golden.Tensor("inputs.safetensors", "answer_tokens");
        File.WriteAllText(tokens, JsonSerializer.Serialize(Enumerable.Range(0, (int)t.shape[0]).Select(b => t[b].data<long>().ToArray())));
        File.WriteAllText(answers, JsonSerializer.Serialize(Enumerable.Range(0, (int)a.shape[0]).Select(b => a[b].data<long>().ToArray())));
        string[] attribute = ["attribute", "--model", Golden.Dir, "--tokens-file", tokens, "--answers", answers];
        var ig32 = Json(attribute, "fp32");
        var ig16 = Json(attribute, "bf16");
        double m32 = ig32["prompts"]![0]!["metric"]!.GetValue<double>(), m16 = ig16["prompts"]![0]!["metric"]!.GetValue<double>();
        Assert.InRange(Math.Abs(m16 - m32), 0, Tol(m32));
        Assert.InRange(Math.Abs(ig16["completeness_gap"]!.GetValue<double>()), 0, 0.1 * Math.Max(1, Math.Abs(m32)));

        // run --sae: the float32 SAE (its hooks float32, as in SAELens) reads bfloat16 activations and hands back bfloat16.
        string outPath = Path.Combine(_dir, "acts.safetensors");
        var run = Run("run", "--model", Golden.Dir, "--tokens-file", tokens, "--out", outPath, "--dtype", "bf16",
            "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"));
        Assert.True(run.Code == 0, run.Err);
        using (var f = SafetensorsFile.Open(outPath))
        {
            Assert.Equal("bfloat16", f.Metadata["dtype"]);
            Assert.Equal(ScalarType.Float32, f.Read("blocks.0.hook_resid_post.hook_sae_output").dtype);
            Assert.Equal(ScalarType.BFloat16, f.Read("blocks.1.hook_resid_pre").dtype);
            Assert.Equal(ScalarType.Float32, f.Read("logits").dtype);
        }

        // sae: metrics within the bfloat16 tolerance of float32.
        string[] sae = ["sae", "--model", Golden.Dir, "--sae", SaeGolden.Folder("standard_blocks.0.hook_resid_post"), "--tokens-file", tokens];
        var s32 = Json(sae, "fp32");
        var s16 = Json(sae, "bf16");
        foreach (var key in new[] { "mse", "ce_loss_clean", "cosine_similarity" })
            Assert.InRange(Math.Abs(s16[key]!.GetValue<double>() - s32[key]!.GetValue<double>()), 0, Tol(s32[key]!.GetValue<double>()));
    }
}
