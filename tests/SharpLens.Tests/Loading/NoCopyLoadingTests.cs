using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

/// <summary>
/// Loads that need no conversion keep parameters as views of the memory-mapped file: their data lies inside the file's
/// mapping and anonymous memory does not grow by the checkpoint size. Measures process memory, so it runs alone.
/// </summary>
[Collection(IsolatedCollection.Name)]
public sealed class NoCopyLoadingTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("sharplens-nocopy-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>Address ranges where <paramref name="path"/> is mapped into this process (/proc/self/maps).</summary>
    private static List<(ulong Start, ulong End)> Mappings(string path)
    {
        string full = Path.GetFullPath(path);
        var ranges = new List<(ulong, ulong)>();
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6 || parts[5].Trim() != full) continue;
            var se = parts[0].Split('-');
            ranges.Add((ulong.Parse(se[0], NumberStyles.HexNumber), ulong.Parse(se[1], NumberStyles.HexNumber)));
        }
        return ranges;
    }

    /// <summary>Parameters whose bytes do not lie inside a mapping of <paramref name="file"/>.</summary>
    private static List<string> NotMapped(HookedTransformer model, string file)
    {
        var maps = Mappings(file);
        Assert.NotEmpty(maps);
        return model.ParameterNames.Where(n =>
        {
            var t = model.Parameter(n);
            ulong start = (ulong)t.DataAddress();
            // The furthest element a strided view reaches.
            ulong last = start + (ulong)(t.shape.Select((s, i) => (s - 1) * t.stride()[i]).Sum() * t.element_size()) + (ulong)t.element_size();
            return !maps.Any(m => start >= m.Start && last <= m.End);
        }).ToList();
    }

    private static long RssAnonKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal)) return long.Parse(line[8..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        throw new InvalidOperationException("no RssAnon in /proc/self/status");
    }

    [SkippableFact]
    public void UnprocessedGpt2ParametersAreViewsOfTheCheckpointMapping()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        using var model = HookedTransformer.FromFolder(Golden.Dir, ProcessingOptions.None, "tiny-gpt2");
        // b_U is not in a GPT-2 checkpoint: the converter makes the zero vector.
        Assert.Equal(["unembed.b_U"], NotMapped(model, Path.Combine(Golden.Dir, "model.safetensors")));
        Assert.Equal(WeightsCacheUse.NotUsed, model.WeightsCacheUse);
    }

    [SkippableFact]
    public void Bfloat16CheckpointLoadedAsBfloat16IsMappedToo()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        string dir = Path.Combine(_root, "bf16");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(dir, "config.json"));
        using (var scope = NewDisposeScope())
        using (var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "model.safetensors")))
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
                f.Names.Order(StringComparer.Ordinal).Select(n => new KeyValuePair<string, Tensor>(n, f.Read(n).to_type(ScalarType.BFloat16))));
        using var model = HookedTransformer.FromFolder(dir, ProcessingOptions.None, "bf16", ScalarType.BFloat16);
        Assert.Equal(WeightsCacheUse.NotUsed, model.WeightsCacheUse);
        Assert.Equal(["unembed.b_U"], NotMapped(model, Path.Combine(dir, "model.safetensors")));
    }

    [SkippableFact]
    public void Phi3FusedQkvProjectionIsUsedAsAView()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-phi3");
        using var model = HookedTransformer.FromFolder(dir, ProcessingOptions.None, "tiny-phi3");
        // Only the zero biases Phi-3 does not store are new; W_Q/W_K/W_V stay views of qkv_proj (not copied into a fused matrix).
        var copied = NotMapped(model, Path.Combine(dir, "model.safetensors"));
        Assert.NotEmpty(copied);
        Assert.All(copied, n => Assert.Matches(@"\._?b_", n));
        Assert.DoesNotContain(copied, n => System.Text.RegularExpressions.Regex.IsMatch(n, @"\._?W_"));
    }

    /// <summary>Whether every element <paramref name="t"/> reaches lies inside one of <paramref name="maps"/>.</summary>
    private static bool InMapping(Tensor t, List<(ulong Start, ulong End)> maps)
    {
        ulong start = (ulong)t.DataAddress();
        ulong last = start + (ulong)(t.shape.Select((s, i) => (s - 1) * t.stride()[i]).Sum() * t.element_size()) + (ulong)t.element_size();
        return maps.Any(m => start >= m.Start && last <= m.End);
    }

    /// <summary>
    /// Checkpoints with separate q/k/v projections (Llama-style, with and without q/k/v biases, GPT-Neo, OPT, GPT-J, OLMo-2,
    /// Gemma) and GPT-NeoX's interleaved query_key_value, loaded without processing in the dtype they store: every weight
    /// matrix — and the matrices the q/k/v projection multiplies with — lies in the checkpoint's mapping. What is not
    /// mapped is exactly what the checkpoint does not store (zero biases) or what TransformerLens's state dict defines
    /// differently (Gemma: <c>embed.W_E</c> scaled by √d_model, RMSNorm weights 1 + w — the golden weights hold both).
    /// </summary>
    [SkippableTheory]
    [InlineData("tiny-llama", "separate", "b_", "float32")]
    [InlineData("tiny-llama", "separate", "b_", "bfloat16")]
    [InlineData("tiny-mistral", "separate", "b_", "float32")]
    [InlineData("tiny-qwen2", "separate", "b_O|b_in|b_out|b_U", "float32")]
    [InlineData("tiny-qwen3", "separate", "b_", "float32")]
    [InlineData("tiny-olmo2", "separate", "b_", "float32")]
    [InlineData("tiny-gemma", "separate", @"b_|embed\.W_E|ln1\.w|ln2\.w|ln_final\.w", "float32")]
    [InlineData("tiny-neo", "separate", "b_Q|b_K|b_V|b_U", "float32")]
    [InlineData("tiny-gptj", "separate", "b_Q|b_K|b_V|b_O", "float32")]
    [InlineData("tiny-opt", "separate", "b_U", "float32")]
    [InlineData("tiny-neox", "interleaved", "b_U", "float32")]
    [InlineData("tiny-neox", "interleaved", "b_U", "bfloat16")]
    [InlineData("tiny-phi3", "fused", "b_", "float32")]
    public void UnprocessedQkvProjectionsUseTheMappedCheckpoint(string fixture, string layout, string copiedPattern, string dtypeName)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        var dtype = ModelDtype.Parse(dtypeName);
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
        if (dtype != ScalarType.Float32) dir = Converted(dir, dtype);
        string file = Path.Combine(dir, "model.safetensors");
        using var model = HookedTransformer.LoadFolder(dir, ProcessingOptions.None, fixture, dtype, cache: null);
        Assert.Equal(dtype, model.Dtype);
        Assert.All(model.QkvProjections, p => Assert.Equal(layout, p.Kind));
        var maps = Mappings(file);
        Assert.All(model.QkvProjections.SelectMany(p => p.Matrices), m => Assert.True(InMapping(m, maps), "a q/k/v matrix was copied"));
        var copied = NotMapped(model, file);
        var pattern = new System.Text.RegularExpressions.Regex($@"(^|\.)_?({copiedPattern})");
        Assert.Equal(model.ParameterNames.Where(n => pattern.IsMatch(n)), copied);
    }

    /// <summary>
    /// The mapped layouts compute what the fused copy computes: logits, q/k/v hooks and parameter gradients of an
    /// unprocessed load against a model built from copies of the same parameters (which fuses q/k/v into one matrix).
    /// </summary>
    [SkippableTheory]
    [InlineData("tiny-llama", "separate")]
    [InlineData("tiny-qwen2", "separate")]
    [InlineData("tiny-neox", "interleaved")]
    public void MappedLayoutsMatchTheFusedCopy(string fixture, string layout)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
        using var mapped = HookedTransformer.LoadFolder(dir, ProcessingOptions.None, fixture, ScalarType.Float32, cache: null);
        Assert.Equal(layout, mapped.QkvProjections[0].Kind);
        using var scope = NewDisposeScope();
        using var copy = new HookedTransformer(mapped.Config, mapped.StateDict.ToDictionary(kv => kv.Key, kv => kv.Value.clone()));
        Assert.All(copy.QkvProjections, p => Assert.Equal("fused", p.Kind));
        var tokens = tensor(new long[] { 1, 5, 9, 2, 7, 3, 8, 4, 6, 10, 11, 12 }).view(2, 6);
        string[] names = [.. Enumerable.Range(0, mapped.Config.NLayers).SelectMany(l => new[] { "q", "k", "v" }.Select(x => $"blocks.{l}.attn.hook_{x}"))];
        var (l1, c1) = mapped.RunWithCache(tokens, names);
        var (l2, c2) = copy.RunWithCache(tokens, names);
        using (c1)
        using (c2)
        {
            Assert.True(l1.allclose(l2, rtol: 1e-5, atol: 1e-5), $"logits differ by {(l1 - l2).abs().max().item<float>()}");
            foreach (var n in names)
            {
                Assert.Equal(c2[n].shape, c1[n].shape);
                Assert.True(c1[n].allclose(c2[n], rtol: 1e-5, atol: 1e-6), $"{n} differs by {(c1[n] - c2[n]).abs().max().item<float>()}");
            }
        }
        // Parameter gradients reach W_Q/W_K/W_V/b_* through whichever matrices the projection multiplies with.
        Tensor Loss(Tensor l) => HookedTransformer.LossFromLogits(l, tokens);
        Assert.Equal(copy.Backward(tokens, Loss), mapped.Backward(tokens, Loss), 5);
        foreach (var n in mapped.ParameterNames)
        {
            var (g1, g2) = (mapped.ParameterGrad(n), copy.ParameterGrad(n));
            Assert.True(g1 is not null && g2 is not null, n);
            Assert.True(g1.allclose(g2, rtol: 1e-4, atol: 1e-6), $"gradient of {n} differs by {(g1 - g2).abs().max().item<float>()}");
        }
    }

    /// <summary>
    /// A model whose q/k/v are not fused still writes the weights cache's fused layout: reading that file back gives the
    /// same parameters (interleaved NeoX rows reordered to [q | k | v], separate matrices concatenated).
    /// </summary>
    [Theory]
    [InlineData("tiny-llama")]
    [InlineData("tiny-neox")]
    public void UnfusedLayoutsRoundTripThroughTheCacheLayout(string fixture)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
        using var model = HookedTransformer.LoadFolder(dir, ProcessingOptions.None, fixture, ScalarType.Float32, cache: null);
        Assert.NotEqual("fused", model.QkvProjections[0].Kind);
        string file = Path.Combine(_root, fixture + "-layout.safetensors");
        using (var scope = NewDisposeScope()) SafetensorsWriter.Write(file, model.CacheLayout());
        using var f = SafetensorsFile.Open(file);
        using var scope2 = NewDisposeScope();
        using var back = new HookedTransformer(model.Config, HookedTransformer.FromCacheLayout(model.Config, f), keepViews: true);
        Assert.All(back.QkvProjections, p => Assert.Equal("fused", p.Kind));
        Assert.Equal(model.ParameterNames, back.ParameterNames);
        Assert.All(model.ParameterNames, n => Assert.True(model.Parameter(n).allclose(back.Parameter(n), rtol: 0, atol: 0), n));
    }

    /// <summary>A copy of fixture <paramref name="dir"/> with its weights stored in <paramref name="dtype"/>.</summary>
    private string Converted(string dir, ScalarType dtype)
    {
        string target = Path.Combine(_root, Path.GetFileName(dir) + "-" + dtype);
        Directory.CreateDirectory(target);
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(target, "config.json"));
        using var scope = NewDisposeScope();
        using var f = SafetensorsFile.Open(Path.Combine(dir, "model.safetensors"));
        SafetensorsWriter.Write(Path.Combine(target, "model.safetensors"),
            f.Names.Order(StringComparer.Ordinal).Select(n => new KeyValuePair<string, Tensor>(n, f.Read(n).to_type(dtype))));
        return target;
    }

    [SkippableFact]
    public void CacheHitParametersAreViewsOfTheCacheFileMapping()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        var cache = new WeightsCache(Path.Combine(_root, "weights"));
        foreach (var fixture in new[] { "tiny-gpt2", "tiny-llama" })
        {
            string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", fixture);
            using (var written = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, fixture, ScalarType.Float32, cache))
                Assert.Equal(WeightsCacheUse.Written, written.WeightsCacheUse);
            using var hit = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, fixture, ScalarType.Float32, cache);
            Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
            string file = Directory.GetFiles(cache.Folder, "*.safetensors").OrderByDescending(File.GetLastWriteTimeUtc).First();
            Assert.Empty(NotMapped(hit, file));
            Assert.All(hit.QkvProjections, p => Assert.Equal("fused", p.Kind)); // the cache stores q/k/v fused: used in place
            Assert.All(hit.QkvProjections.SelectMany(p => p.Matrices), m => Assert.True(InMapping(m, Mappings(file))));
        }
    }

    [SkippableFact]
    public void MappedLoadsDoNotGrowAnonymousMemoryByTheCheckpoint()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/status");
        string dir = WriteRandomGpt2(Path.Combine(_root, "gpt2-random"), layers: 4, dModel: 512, vocab: 8192);
        long checkpointKb = new FileInfo(Path.Combine(dir, "model.safetensors")).Length / 1024;
        var cache = new WeightsCache(Path.Combine(_root, "weights"));
        using (var warm = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "r", ScalarType.Float32, cache)) // writes the cache entry
            Assert.Equal(WeightsCacheUse.Written, warm.WeightsCacheUse);
        NativeMemory.Trim();

        foreach (var (options, expected) in new[] { (ProcessingOptions.None, WeightsCacheUse.NotUsed), (ProcessingOptions.Default, WeightsCacheUse.Hit) })
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            NativeMemory.Trim();
            long before = RssAnonKb();
            using var model = HookedTransformer.LoadFolder(dir, options, "r", ScalarType.Float32, cache);
            long grown = RssAnonKb() - before;
            Assert.Equal(expected, model.WeightsCacheUse);
            Assert.True(grown < checkpointKb / 5, $"{expected}: anonymous memory grew by {grown} KB for a {checkpointKb} KB checkpoint");
        }

        // The control: a processed load without the cache computes every parameter in fresh memory. Free heap the
        // allocator kept (earlier tests, the loads above) would absorb it without growing RSS: hand it back first.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        NativeMemory.Trim();
        long before2 = RssAnonKb();
        using var computed = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "r", ScalarType.Float32, null);
        Assert.True(RssAnonKb() - before2 > checkpointKb / 2, "the control load should allocate the model");
    }

    /// <summary>A random checkpoint in Hugging Face GPT-2 layout (Conv1D [in, out] matrices).</summary>
    internal static string WriteRandomGpt2(string dir, int layers, int dModel, int vocab, int nCtx = 256) =>
        Cli.RandomGpt2Checkpoint.Write(dir, layers, dModel, nHeads: 8, vocab, nCtx, std: 0.02f, seed: 5, randomNorms: false);
}
