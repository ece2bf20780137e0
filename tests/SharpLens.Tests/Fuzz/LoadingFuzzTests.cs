using System.Text;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Tests.Loading;
using SharpLens.Tokenization;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// Damaged weight files, configs and tokenizer files: every reader either succeeds or throws a SharpLensException that
/// names the file (see <see cref="Fuzzer"/>). Seeds are fixed, so every run feeds the same inputs.
/// </summary>
public sealed class LoadingFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sharplens-fuzz-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    private static byte[] Floats(int n) => Enumerable.Range(0, n).SelectMany(i => BitConverter.GetBytes(i * 0.25f)).ToArray();

    /// <summary>A small safetensors file with several dtypes, a scalar, an empty tensor and metadata.</summary>
    private static byte[] SmallSafetensors(string dir, string name = "valid.safetensors", string prefix = "")
    {
        string path = Path.Combine(dir, name);
        using (var scope = NewDisposeScope())
            SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
            {
                [prefix + "a.weight"] = arange(12, dtype: ScalarType.Float32).reshape(3, 4),
                [prefix + "b.bias"] = arange(5, dtype: ScalarType.Int64),
                [prefix + "c.half"] = ones(2, 2, dtype: ScalarType.BFloat16),
                [prefix + "d.scalar"] = tensor(3.5f),
                [prefix + "e.empty"] = zeros(0, 4),
            }, new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    }

    private static void ReadAll(SafetensorsFile f)
    {
        foreach (var n in f.Names) { f.Read(n).sum(); f.ReadCopy(n).sum(); }
    }

    [Fact]
    public void Safetensors()
    {
        var valid = SmallSafetensors(_dir);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(valid);
        string path = Path.Combine(_dir, "model.safetensors");
        Fuzzer.Run("safetensors", seed: 11, iterations: 3000, m =>
        {
            string what;
            byte[] bytes;
            if (m.Rng.Next(2) == 0) bytes = m.Bytes(valid, out what, hot: headerEnd); // prefix, header and data bytes
            else
            {
                // A damaged header that is still JSON: re-frame it, with the right length or a wrong one.
                var header = m.Json(valid[8..headerEnd], out what);
                ulong len = m.Rng.Next(4) == 0 ? (ulong)m.Rng.NextInt64() : (ulong)header.Length;
                bytes = [.. BitConverter.GetBytes(len), .. header, .. valid[headerEnd..]];
            }
            File.WriteAllBytes(path, bytes);
            return (what, path);
        }, () => { using var f = SafetensorsFile.Open(path); ReadAll(f); }, output);
    }

    [Fact]
    public void ShardedSafetensorsIndex()
    {
        string folder = Path.Combine(_dir, "sharded");
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, "model-00001-of-00002.safetensors"), SmallSafetensors(folder, "x", "s1."));
        File.WriteAllBytes(Path.Combine(folder, "model-00002-of-00002.safetensors"), SmallSafetensors(folder, "y", "s2."));
        var map = string.Join(", ", new[] { "a.weight", "b.bias", "c.half", "d.scalar", "e.empty" }
            .SelectMany(n => new[] { $"\"s1.{n}\": \"model-00001-of-00002.safetensors\"", $"\"s2.{n}\": \"model-00002-of-00002.safetensors\"" }));
        var valid = Encoding.UTF8.GetBytes($"{{\"metadata\": {{\"total_size\": 200}}, \"weight_map\": {{{map}}}}}");
        string index = Path.Combine(folder, "model.safetensors.index.json");
        Fuzzer.Run("model.safetensors.index.json", seed: 12, iterations: 3000, m =>
        {
            string what;
            var bytes = m.Rng.Next(2) == 0 ? m.Bytes(valid, out what) : m.Json(valid, out what);
            File.WriteAllBytes(index, bytes);
            return (what, "model.safetensors.index.json");
        }, () => Checkpoint.LoadStateDict(folder), output);
    }

    [Fact]
    public void PytorchCheckpoint()
    {
        var builder = PytorchCheckpointTests.Sample();
        string validPath = Path.Combine(_dir, "valid.bin");
        builder.Save(validPath);
        var validZip = File.ReadAllBytes(validPath);
        var pickle = PytorchCheckpointTests.Sample().Pickle();
        string path = Path.Combine(_dir, "pytorch_model.bin");
        Fuzzer.Run("pytorch_model.bin", seed: 13, iterations: 3000, m =>
        {
            string what;
            if (m.Rng.Next(3) == 0)
            {
                // Damage anywhere in the zip: headers, directory, stored data.
                File.WriteAllBytes(path, m.Bytes(validZip, out what));
            }
            else
            {
                // A well-formed zip around a damaged pickle, so the unpickler and the tensor rebuild see the damage.
                var damaged = m.Bytes(pickle, out what);
                File.Delete(path);
                using var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create);
                using (var src = System.IO.Compression.ZipFile.OpenRead(validPath))
                    foreach (var e in src.Entries)
                    {
                        using var to = zip.CreateEntry(e.FullName, System.IO.Compression.CompressionLevel.NoCompression).Open();
                        if (e.FullName.EndsWith("data.pkl", StringComparison.Ordinal)) to.Write(damaged);
                        else { using var from = e.Open(); from.CopyTo(to); }
                    }
            }
            return (what, path);
        }, () => PytorchCheckpointReader.Load(path), output);
    }

    [Fact]
    public void ConfigJson()
    {
        string folder = Path.Combine(_dir, "model");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(Golden.Dir, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        var valid = File.ReadAllBytes(Path.Combine(Golden.Dir, "config.json"));
        string path = Path.Combine(folder, "config.json");
        Fuzzer.Run("config.json", seed: 14, iterations: 3000, m =>
        {
            string what;
            var bytes = m.Rng.Next(3) == 0 ? m.Bytes(valid, out what) : m.Json(valid, out what);
            File.WriteAllBytes(path, bytes);
            return (what, "config.json");
        }, () => HookedTransformer.FromFolder(folder, ProcessingOptions.None, "fuzz").Dispose(), output);
    }

    private static readonly string[] Texts = ["Hello world, ünïcödé 123!", " <|endoftext|> a  b\n\tc", ""];

    private static void UseTokenizer(ITokenizer? t)
    {
        if (t is null) return;
        foreach (var s in Texts)
        {
            var ids = TextEncoding.ToTokenIds(t, s, prependBos: t.BosTokenId is not null);
            t.Decode(ids);
        }
    }

    private const int KeptMerges = 40; // mini-bpe cut further: 256 byte tokens + 40 merges, so building one takes little time

    /// <summary>The mini-bpe tokenizer.json with only its first merges (ids stay 0..295), specials moved to 296, 297.</summary>
    private static byte[] SmallTokenizerJson(string src)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(Path.Combine(src, "tokenizer.json")))!;
        var model = root["model"]!;
        var merges = model["merges"]!.AsArray();
        while (merges.Count > KeptMerges) merges.RemoveAt(merges.Count - 1);
        var vocab = model["vocab"]!.AsObject();
        foreach (var k in vocab.Where(kv => kv.Value!.GetValue<int>() >= 256 + KeptMerges).Select(kv => kv.Key).ToList()) vocab.Remove(k);
        var added = root["added_tokens"]!.AsArray();
        for (int i = 0; i < added.Count; i++) added[i]!["id"] = 256 + KeptMerges + i;
        return Encoding.UTF8.GetBytes(root.ToJsonString());
    }

    [Fact]
    public void TokenizerJson()
    {
        string src = Path.Combine(Golden.Dir, "..", "tokenizer", "mini-bpe", "tokenizer-json");
        string folder = Path.Combine(_dir, "tok");
        Directory.CreateDirectory(folder);
        var valid = SmallTokenizerJson(src);
        var validConfig = File.ReadAllBytes(Path.Combine(src, "tokenizer_config.json"));
        Fuzzer.Run("tokenizer.json", seed: 15, iterations: 800, m =>
        {
            string what, file = "tokenizer.json";
            File.WriteAllBytes(Path.Combine(folder, "tokenizer_config.json"), validConfig);
            byte[] bytes;
            if (m.Rng.Next(5) == 0)
            {
                file = "tokenizer_config.json";
                File.WriteAllBytes(Path.Combine(folder, file), m.Rng.Next(2) == 0 ? m.Bytes(validConfig, out what) : m.Json(validConfig, out what));
                bytes = valid;
            }
            else bytes = m.Rng.Next(3) == 0 ? m.Bytes(valid, out what) : m.Json(valid, out what);
            File.WriteAllBytes(Path.Combine(folder, "tokenizer.json"), bytes);
            return (what, file);
        }, () => UseTokenizer(TokenizerLoader.FromFolder(folder)), output);
    }

    [Fact]
    public void VocabJsonAndMergesTxt()
    {
        string src = Path.Combine(Golden.Dir, "..", "tokenizer", "mini-bpe", "vocab-merges");
        string folder = Path.Combine(_dir, "vm");
        Directory.CreateDirectory(folder);
        var vocabNode = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(Path.Combine(src, "vocab.json")))!.AsObject();
        foreach (var k in vocabNode.Where(kv => kv.Value!.GetValue<int>() >= 256 + KeptMerges && kv.Key != "<|endoftext|>").Select(kv => kv.Key).ToList())
            vocabNode.Remove(k);
        vocabNode["<|endoftext|>"] = 256 + KeptMerges;
        var vocab = Encoding.UTF8.GetBytes(vocabNode.ToJsonString());
        var merges = Encoding.UTF8.GetBytes(string.Join("\n", File.ReadAllLines(Path.Combine(src, "merges.txt")).Take(1 + KeptMerges)) + "\n");
        Fuzzer.Run("vocab.json + merges.txt", seed: 16, iterations: 3000, m =>
        {
            string what, file;
            if (m.Rng.Next(2) == 0)
            {
                file = "vocab.json";
                File.WriteAllBytes(Path.Combine(folder, file), m.Rng.Next(3) == 0 ? m.Bytes(vocab, out what) : m.Json(vocab, out what));
                File.WriteAllBytes(Path.Combine(folder, "merges.txt"), merges);
            }
            else
            {
                file = "merges.txt";
                File.WriteAllBytes(Path.Combine(folder, "vocab.json"), vocab);
                File.WriteAllBytes(Path.Combine(folder, file), m.Bytes(merges, out what));
            }
            return (what, file);
        }, () => UseTokenizer(TokenizerLoader.FromFolder(folder)), output);
    }
}
