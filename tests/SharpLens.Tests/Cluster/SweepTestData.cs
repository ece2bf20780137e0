using System.Text.Json.Nodes;
using static TorchSharp.torch;
using SharpLens.Tests.Cli;

namespace SharpLens.Tests.Cluster;

/// <summary>Prompt files for sweeps on the tiny GPT-2 and a comparison of two JSON results.</summary>
internal static class SweepTestData
{
    /// <summary>Writes <paramref name="n"/> clean/corrupted token prompt pairs (length 12, one position corrupted).</summary>
    public static (string Clean, string Corrupted) PromptFiles(string dir, int n, int seed = 7)
    {
        var rng = new Random(seed);
        var clean = new long[n, 12];
        var corrupted = new long[n, 12];
        var answers = new long[n, 2];
        for (int b = 0; b < n; b++)
        {
            for (int p = 0; p < 12; p++) clean[b, p] = corrupted[b, p] = p == 0 ? 999 : rng.Next(0, 999);
            corrupted[b, 1 + rng.Next(0, 11)] = rng.Next(0, 999);
            answers[b, 0] = rng.Next(0, 999);
            answers[b, 1] = (answers[b, 0] + 1 + rng.Next(0, 998)) % 999;
        }
        using var scope = NewDisposeScope();
        var a = tensor(answers);
        return (CliTestHelper.TokenPromptFile(dir, "clean.json", tensor(clean), a), CliTestHelper.TokenPromptFile(dir, "corrupted.json", tensor(corrupted), a));
    }

    /// <summary>Asserts two result files are the same JSON up to <paramref name="tol"/> on numbers, ignoring the "job" record.</summary>
    public static void AssertSameResult(string expectedPath, string actualPath, double tol = 1e-6)
    {
        var e = JsonNode.Parse(File.ReadAllText(expectedPath))!.AsObject();
        var a = JsonNode.Parse(File.ReadAllText(actualPath))!.AsObject();
        Assert.True(a.ContainsKey("job"), "the sweep result has a job record");
        Compare(e, a, "$", tol);
    }

    private static void Compare(JsonNode? e, JsonNode? a, string path, double tol)
    {
        switch (e)
        {
            case JsonObject eo:
                var ao = Assert.IsType<JsonObject>(a);
                foreach (var (k, v) in eo) Compare(v, ao[k], $"{path}.{k}", tol);
                Assert.Equal(eo.Count + (ao.ContainsKey("job") && !eo.ContainsKey("job") ? 1 : 0), ao.Count);
                break;
            case JsonArray ea:
                var aa = Assert.IsType<JsonArray>(a);
                Assert.True(ea.Count == aa.Count, $"{path}: {aa.Count} entries, expected {ea.Count}");
                for (int i = 0; i < ea.Count; i++) Compare(ea[i], aa[i], $"{path}[{i}]", tol);
                break;
            case JsonValue ev when ev.TryGetValue(out double d) && ev.GetValueKind() == System.Text.Json.JsonValueKind.Number:
                double x = a!.GetValue<double>();
                Assert.True(Math.Abs(d - x) <= tol, $"{path}: {x} != expected {d}");
                break;
            default:
                Assert.Equal(e?.ToJsonString(), a?.ToJsonString());
                break;
        }
    }
}
