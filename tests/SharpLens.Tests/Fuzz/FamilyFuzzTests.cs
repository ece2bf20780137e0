using SharpLens.Loading;
using SharpLens.Model;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// Every family's config.json damaged (as <see cref="LoadingFuzzTests.ConfigJson"/> does for GPT-2), and checkpoints whose
/// tensors do not fit the config (missing, extra, wrong shape, wrong dtype, non-finite): the model loads, or a
/// SharpLensException says what is wrong. Seeds are fixed.
/// </summary>
public sealed class FamilyFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("fuzz-family-");
    public void Dispose() => Directory.Delete(_dir, true);

    public static TheoryData<string> Families() =>
    [
        "tiny-gemma", "tiny-gemma2", "tiny-gemma3", "tiny-gptj", "tiny-llama", "tiny-mistral", "tiny-neo", "tiny-neox",
        "tiny-olmo2", "tiny-opt", "tiny-phi3", "tiny-qwen2", "tiny-qwen3",
    ];

    private string Copy(string family)
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, family)).FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Golden.Dir, "..", family, f), Path.Combine(folder, f), overwrite: true);
        return folder;
    }

    private static void Load(string folder) => HookedTransformer.FromFolder(folder, ProcessingOptions.None, "fuzz").Dispose();

    [Theory]
    [MemberData(nameof(Families))]
    public void ConfigJson(string family)
    {
        string folder = Copy(family);
        var valid = File.ReadAllBytes(Path.Combine(folder, "config.json"));
        string path = Path.Combine(folder, "config.json");
        Fuzzer.Run($"{family} config.json", seed: 41 + family.Length, iterations: 300, m =>
        {
            string what;
            var bytes = m.Rng.Next(4) == 0 ? m.Bytes(valid, out what) : m.Json(valid, out what);
            File.WriteAllBytes(path, bytes);
            return (what, "config.json");
        }, () => Load(folder), output);
    }

    public static TheoryData<string> CheckpointFamilies() => ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-opt", "tiny-gemma2", "tiny-phi3", "tiny-neo", "tiny-gptj"];

    /// <summary>One change to the state dict that no longer fits config.json (or, for NaN/Inf and float64, still loads).</summary>
    private static string Damage(Mutator m, Dictionary<string, Tensor> t)
    {
        var names = t.Keys.Order(StringComparer.Ordinal).ToList();
        string name = names[m.Rng.Next(names.Count)];
        var x = t[name];
        switch (m.Rng.Next(10))
        {
            case 0: t.Remove(name); return $"remove {name}";
            case 1: t[name + ".extra"] = zeros(3); return $"extra {name}.extra";
            case 2: t["model.layers.99.mlp.weight"] = zeros(4, 4); return "extra layer 99";
            case 3: t[name] = zeros([.. x.shape.Select(d => d + 1)]); return $"grow {name}";
            case 4: t[name] = x.reshape(-1); return $"flatten {name}";
            case 5: t[name] = x.unsqueeze(0); return $"unsqueeze {name}";
            case 6:
                var dtype = new[] { ScalarType.Int64, ScalarType.Int32, ScalarType.Int8, ScalarType.Bool, ScalarType.Float64, ScalarType.Float16, ScalarType.BFloat16 }[m.Rng.Next(7)];
                t[name] = x.to(dtype); return $"{dtype} {name}";
            case 7: t[name] = full_like(x, m.Rng.Next(2) == 0 ? float.NaN : float.PositiveInfinity); return $"non-finite {name}";
            case 8: t[name] = tensor(1f); return $"scalar {name}";
            default:
                t[name] = x.dim() == 2 ? x.t().contiguous() : zeros(0); return $"transpose/empty {name}";
        }
    }

    [Theory]
    [MemberData(nameof(CheckpointFamilies))]
    public void CheckpointTensorsThatDoNotFitTheConfig(string family)
    {
        string folder = Copy(family);
        string path = Path.Combine(folder, "model.safetensors");
        Dictionary<string, Tensor> valid;
        using (var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "..", family, "model.safetensors")))
            valid = f.Names.ToDictionary(n => n, n => f.ReadCopy(n).DetachFromDisposeScope());
        try
        {
            Fuzzer.Run($"{family} model.safetensors tensors", seed: 51 + family.Length, iterations: 40, m =>
            {
                using var scope = NewDisposeScope();
                var t = new Dictionary<string, Tensor>(valid);
                string what = Damage(m, t);
                if (m.Rng.Next(3) == 0) what += ", " + Damage(m, t);
                File.Delete(path);
                SafetensorsWriter.Write(path, t);
                // A tensor that does not fit is reported by name (what the file is: the converter's own words, or config.json).
                return (what, "");
            }, () => Load(folder), output);
        }
        finally
        {
            foreach (var v in valid.Values) v.Dispose();
        }
    }
}
