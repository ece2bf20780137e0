using System.Buffers.Binary;
using System.Text.Json;
using SharpLens.Loading;
using TorchSharp;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

public sealed class RunCommandTests
{
    private static string TokensFile(string dir)
    {
        using var t = Golden.Tokens;
        var rows = Enumerable.Range(0, 4).Select(b => t[b].data<long>().ToArray()).ToArray();
        string path = Path.Combine(dir, "tokens.json");
        File.WriteAllText(path, JsonSerializer.Serialize(rows));
        return path;
    }

    [Fact]
    public void ExportsLogitsTokensAndEveryActivationUnderTransformerLensNames()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string outPath = Path.Combine(dir, "acts.safetensors");
            var (code, stdout, stderr) = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(dir), "--out", outPath);
            Assert.True(code == 0, stderr);
            Assert.Contains("42 tensors", stdout);

            // Byte-level header check, independent of our reader.
            var bytes = File.ReadAllBytes(outPath);
            long n = BinaryPrimitives.ReadInt64LittleEndian(bytes);
            Assert.Equal(0, (8 + n) % 8);
            using var header = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
            long expectedBegin = 0;
            var names = new List<string>();
            foreach (var p in header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
                         .OrderBy(p => p.Value.GetProperty("data_offsets")[0].GetInt64()))
            {
                names.Add(p.Name);
                var off = p.Value.GetProperty("data_offsets");
                long count = p.Value.GetProperty("shape").EnumerateArray().Aggregate(1L, (a, x) => a * x.GetInt64());
                int size = p.Value.GetProperty("dtype").GetString() == "I64" ? 8 : 4;
                Assert.Equal(expectedBegin, off[0].GetInt64());
                Assert.Equal(count * size, off[1].GetInt64() - off[0].GetInt64());
                expectedBegin = off[1].GetInt64();
            }
            Assert.Equal(bytes.Length - 8 - n, expectedBegin);
            Assert.Equal(new[] { "logits", "tokens" }.Concat(Golden.StringList("hook_names_in_order")).OrderBy(x => x, StringComparer.Ordinal),
                names.OrderBy(x => x, StringComparer.Ordinal));

            using var scope = NewDisposeScope();
            using var f = SafetensorsFile.Open(outPath);
            Assert.Equal("I64", f.Info("tokens").Dtype);
            Golden.AssertClose(Golden.Tensor("logits.safetensors", "logits_processed"), f.Read("logits"), "logits");
            var cache = Golden.Load("cache_processed.safetensors");
            foreach (var (name, t) in cache) Golden.AssertClose(t, f.Read(name), name);
            Assert.Equal(new long[] { 4, 4, 12, 12 }, f.Info("blocks.0.attn.hook_pattern").Shape);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void NamesFilterAndNoProcessing()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string outPath = Path.Combine(dir, "acts.safetensors");
            var (code, _, stderr) = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(dir), "--no-processing", "--names", @"resid_post$", "--out", outPath);
            Assert.True(code == 0, stderr);
            using var scope = NewDisposeScope();
            using var f = SafetensorsFile.Open(outPath);
            Assert.Equal(["logits", "tokens", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], f.Names);
            Golden.AssertClose(Golden.Tensor("cache_none.safetensors", "blocks.1.hook_resid_post"), f.Read("blocks.1.hook_resid_post"), "unprocessed");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void BadInputWritesNothing()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string outPath = Path.Combine(dir, "acts.safetensors");
            var r1 = Run("run", "--model", Golden.Dir, "--tokens-file", TokensFile(dir), "--names", "no_such_hook", "--out", outPath);
            Assert.Equal(1, r1.Code);
            Assert.Contains("matches no hook point", r1.Err);
            File.WriteAllText(Path.Combine(dir, "bad.json"), "[[1, 2, 3], [4, 5]]");
            var r2 = Run("run", "--model", Golden.Dir, "--tokens-file", Path.Combine(dir, "bad.json"), "--out", outPath);
            Assert.Contains("sequence 1 has 2 tokens", r2.Err);
            File.WriteAllText(Path.Combine(dir, "big.json"), "[[1, 2, 1000]]");
            var r3 = Run("run", "--model", Golden.Dir, "--tokens-file", Path.Combine(dir, "big.json"), "--out", outPath);
            Assert.Contains("big.json: token id 1000 at [batch 0, pos 2] is outside the vocabulary", r3.Err);
            var r4 = Run("run", "--model", Golden.Dir, "--out", outPath);
            Assert.Equal(2, r4.Code);
            Assert.False(File.Exists(outPath));
            Assert.Equal(3, Directory.GetFiles(dir).Length); // only our three input files: no temp leftovers
        }
        finally { Directory.Delete(dir, true); }
    }
}
