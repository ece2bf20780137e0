using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Loading;

/// <summary>The processed-weights cache: hit, miss, stale, corrupt, concurrent writers, eviction, bypass.</summary>
public sealed class WeightsCacheTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("sharplens-wcache-").FullName;
    private WeightsCache Cache(long max = WeightsCache.DefaultMaxBytes) => new(Path.Combine(_root, "weights"), max);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private static readonly ProcessingOptions NoFold = ProcessingOptions.Default with { FoldLayerNorm = false };

    /// <summary>A private copy of a fixture model folder (config.json + model.safetensors).</summary>
    private string CopyFixture(string name = "tiny-gpt2")
    {
        string dir = Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        string src = Path.Combine(AppContext.BaseDirectory, "fixtures", name);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(src, f), Path.Combine(dir, f));
        return dir;
    }

    private string[] CacheFiles() =>
        Directory.Exists(Path.Combine(_root, "weights")) ? Directory.GetFiles(Path.Combine(_root, "weights")).Select(f => Path.GetFileName(f)).Order().ToArray() : [];

    private static void AssertSameWeights(HookedTransformer expected, HookedTransformer actual)
    {
        Assert.Equal(expected.ParameterNames, actual.ParameterNames);
        Assert.Equal(expected.Config.NormalizationType, actual.Config.NormalizationType);
        foreach (var name in expected.ParameterNames)
            Assert.True(SameBits(expected.Parameter(name), actual.Parameter(name)), $"{name} differs");
    }

    /// <summary>Same dtype, shape and bytes.</summary>
    private static bool SameBits(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.contiguous().bytes.SequenceEqual(b.contiguous().bytes);
    }

    [Fact]
    public void SecondLoadIsAHitWithTheSameWeightsBitForBit()
    {
        var cache = Cache();
        using var reference = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, null);
        using var first = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.NotUsed, reference.WeightsCacheUse);
        Assert.Equal(WeightsCacheUse.Written, first.WeightsCacheUse);
        var files = CacheFiles();
        Assert.Single(files);
        Assert.Matches("^[0-9a-f]{40}\\.safetensors$", files[0]);
        using var second = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Hit, second.WeightsCacheUse);
        Assert.Empty(second.LoadWarnings);
        AssertSameWeights(reference, first);
        AssertSameWeights(reference, second);
        using var scope = NewDisposeScope();
        using var tokens = Golden.Tokens;
        Assert.True(SameBits(reference.Forward(tokens), second.Forward(tokens)));
        Assert.Equal("LNPre", second.Config.NormalizationType);
        Assert.Equal("tiny-gpt2", second.Config.ModelName);
    }

    [Fact]
    public void GroupedQueryModelRoundTripsThroughTheFusedLayout()
    {
        var cache = Cache();
        string dir = Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-llama");
        using var reference = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "tiny-llama", ScalarType.Float32, null);
        using var first = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "tiny-llama", ScalarType.Float32, cache);
        using var hit = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "tiny-llama", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, first.WeightsCacheUse);
        Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
        Assert.True(hit.Config.NKeyValueHeads < hit.Config.NHeads); // the grouped-query layout is what is exercised
        AssertSameWeights(reference, hit);
        using var scope = NewDisposeScope();
        var tokens = tensor(new long[,] { { 1, 5, 9, 100, 7 } });
        // Same values, but the cache stores every matrix contiguous where the checkpoint's are transposed views
        // (nn.Linear layout), so GEMM kernels may round differently.
        var expected = reference.Forward(tokens);
        Assert.True((expected - hit.Forward(tokens)).abs().max().item<float>() <= 1e-5f * expected.abs().max().item<float>());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Bfloat16FromAFloat32CheckpointIsCachedInBfloat16(bool process)
    {
        var cache = Cache();
        var options = process ? ProcessingOptions.Default : ProcessingOptions.None;
        using var reference = HookedTransformer.LoadFolder(Golden.Dir, options, "tiny-gpt2", ScalarType.BFloat16, null);
        using var first = HookedTransformer.LoadFolder(Golden.Dir, options, "tiny-gpt2", ScalarType.BFloat16, cache);
        using var hit = HookedTransformer.LoadFolder(Golden.Dir, options, "tiny-gpt2", ScalarType.BFloat16, cache);
        Assert.Equal(WeightsCacheUse.Written, first.WeightsCacheUse); // a dtype change is a conversion even without processing
        Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
        Assert.All(hit.ParameterNames, n => Assert.Equal(ScalarType.BFloat16, hit.Parameter(n).dtype));
        AssertSameWeights(reference, hit);
        using var f32 = HookedTransformer.LoadFolder(Golden.Dir, options, "tiny-gpt2", ScalarType.Float32, cache); // another entry
        Assert.Equal(process ? WeightsCacheUse.Written : WeightsCacheUse.NotUsed, f32.WeightsCacheUse);
    }

    [Fact]
    public void Bfloat16CheckpointIsProcessedFromItsMappingLikeTheSameValuesInFloat32()
    {
        // The same (bf16-representable) values stored as BF16 and as F32: a bf16 checkpoint is mapped and converted to
        // float32 for processing, a float32 one read into fresh memory; both must give the same processed weights.
        string bf = CopyFixture(), f32 = CopyFixture();
        using (var scope = NewDisposeScope())
        {
            Dictionary<string, Tensor> sd;
            using (var f = SafetensorsFile.Open(Path.Combine(Golden.Dir, "model.safetensors"))) sd = f.Names.ToDictionary(n => n, n => f.ReadCopy(n));
            var rounded = sd.ToDictionary(kv => kv.Key, kv => kv.Value.is_floating_point() ? kv.Value.to_type(ScalarType.BFloat16) : kv.Value);
            SafetensorsWriter.Write(Path.Combine(bf, "model.safetensors"), rounded.OrderBy(kv => kv.Key, StringComparer.Ordinal));
            SafetensorsWriter.Write(Path.Combine(f32, "model.safetensors"),
                rounded.ToDictionary(kv => kv.Key, kv => kv.Value.is_floating_point() ? kv.Value.to_type(ScalarType.Float32) : kv.Value).OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var fromBf16 = HookedTransformer.LoadFolder(bf, ProcessingOptions.Default, "m", dtype, null);
            using var fromF32 = HookedTransformer.LoadFolder(f32, ProcessingOptions.Default, "m", dtype, null);
            AssertSameWeights(fromF32, fromBf16);
        }
    }

    [Fact]
    public void MissWritesOneFileCarryingTheKey()
    {
        var cache = Cache();
        using var model = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        using var unprocessed = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.None, "x", ScalarType.Float32, null); // the key holds the config before processing
        var key = WeightsCacheKey.For(Golden.Dir, unprocessed.Config, ProcessingOptions.Default, ScalarType.Float32);
        Assert.True(File.Exists(cache.PathFor(key)));
        using var f = SafetensorsFile.Open(cache.PathFor(key));
        Assert.Equal(key.Text, f.Metadata["key"]);
        Assert.Contains("blocks.0.attn.W_QKV", f.Names);
        Assert.DoesNotContain("blocks.0.attn.W_Q", f.Names);
        Assert.Equal(new long[] { model.Config.DModel, 3 * model.Config.NHeads * model.Config.DHead }, f.Info("blocks.0.attn.W_QKV").Shape);
        Assert.Contains("\"fold_ln\":true", key.Text);
        Assert.DoesNotContain("model_name", key.Text);
    }

    /// <summary>
    /// The key carries the SharpLens build (its assembly's MVID), so an entry an earlier build wrote — here one holding
    /// wrong, zeroed weights, as a build with different processing would have — is never read; the load recomputes.
    /// </summary>
    [Fact]
    public void AnEntryOfAnotherBuildIsNeverRead()
    {
        var cache = Cache();
        using var unprocessed = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.None, "x", ScalarType.Float32, null);
        var key = WeightsCacheKey.For(Golden.Dir, unprocessed.Config, ProcessingOptions.Default, ScalarType.Float32);
        string mvid = typeof(HookedTransformer).Assembly.ManifestModule.ModuleVersionId.ToString("N");
        Assert.Contains($"\"build\":\"{mvid}\"", key.Text);
        var old = WeightsCacheKey.For(Golden.Dir, unprocessed.Config, ProcessingOptions.Default, ScalarType.Float32, "0123456789abcdef0123456789abcdef");
        Assert.NotEqual(key.FileName, old.FileName);

        using var reference = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, null);
        using (var scope = NewDisposeScope())
            Assert.True(cache.Store(old, reference.CacheLayout().Select(kv => KeyValuePair.Create(kv.Key, zeros_like(kv.Value))).ToList()));
        using var model = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, model.WeightsCacheUse);
        AssertSameWeights(reference, model);
        Assert.Equal(new[] { key.FileName, old.FileName }.Order().ToArray(), CacheFiles());
    }

    [Fact]
    public void OtherProcessingFlagsAreAnotherEntry()
    {
        var cache = Cache();
        using var a = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        using var b = HookedTransformer.LoadFolder(Golden.Dir, NoFold, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, b.WeightsCacheUse);
        Assert.Equal(2, CacheFiles().Length);
        using var reference = HookedTransformer.LoadFolder(Golden.Dir, NoFold, "tiny-gpt2", ScalarType.Float32, null);
        using var hit = HookedTransformer.LoadFolder(Golden.Dir, NoFold, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
        Assert.Equal("LN", hit.Config.NormalizationType);
        AssertSameWeights(reference, hit);
    }

    [Fact]
    public void ChangedCheckpointIsRebuiltNotServedStale()
    {
        var cache = Cache();
        string dir = CopyFixture();
        using (var first = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "m", ScalarType.Float32, cache))
            Assert.Equal(WeightsCacheUse.Written, first.WeightsCacheUse);
        var before = CacheFiles();

        // Rewrite the checkpoint with one tensor changed (new content, new mtime, same size).
        string path = Path.Combine(dir, "model.safetensors");
        using (var scope = NewDisposeScope())
        {
            Dictionary<string, Tensor> sd;
            using (var f = SafetensorsFile.Open(path)) sd = f.Names.ToDictionary(n => n, n => f.ReadCopy(n));
            string wte = sd.Keys.First(k => k.EndsWith("wte.weight", StringComparison.Ordinal));
            sd[wte] = sd[wte] * 2;
            SafetensorsWriter.Write(path, sd.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
        using var reference = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "m", ScalarType.Float32, null);
        using var second = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "m", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, second.WeightsCacheUse);
        AssertSameWeights(reference, second);
        Assert.Equal(2, CacheFiles().Length);
        Assert.Contains(before[0], CacheFiles());

        // config.json is part of the key too (content hash).
        File.AppendAllText(Path.Combine(dir, "config.json"), "\n");
        using var third = HookedTransformer.LoadFolder(dir, ProcessingOptions.Default, "m", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, third.WeightsCacheUse);
    }

    public static TheoryData<string> Damages => ["truncate", "truncate-header", "flip-data", "flip-header", "append", "wrong-key", "empty"];

    [Theory]
    [MemberData(nameof(Damages))]
    public void DamagedCacheFileIsDetectedDeletedAndRebuilt(string damage)
    {
        var cache = Cache();
        using var reference = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, null);
        using (var written = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache)) { }
        string file = Path.Combine(cache.Folder, CacheFiles().Single());
        byte[] bytes = File.ReadAllBytes(file);
        long headerLen = BitConverter.ToInt64(bytes, 0);
        switch (damage)
        {
            case "truncate": bytes = bytes[..(bytes.Length - 100)]; break;
            case "truncate-header": bytes = bytes[..(int)(headerLen / 2)]; break;
            case "flip-data": bytes[8 + headerLen + 10] ^= 0x40; break; // first tensor's first bytes
            case "flip-header": bytes[8 + 20] = (byte)'{'; break;
            case "append": bytes = [.. bytes, 1, 2, 3, 4]; break;
            case "wrong-key":
                // A valid file of another entry (other flags) under this entry's name.
                using (var other = HookedTransformer.LoadFolder(Golden.Dir, NoFold, "tiny-gpt2", ScalarType.Float32, cache)) { }
                bytes = File.ReadAllBytes(Path.Combine(cache.Folder, CacheFiles().Single(f => f != Path.GetFileName(file))));
                break;
            case "empty": bytes = []; break;
        }
        File.WriteAllBytes(file, bytes);

        using var rebuilt = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Written, rebuilt.WeightsCacheUse);
        Assert.Contains(rebuilt.LoadWarnings, w => w.Contains("weights cache: deleted an invalid cache file", StringComparison.Ordinal));
        AssertSameWeights(reference, rebuilt);
        using var hit = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
        AssertSameWeights(reference, hit);
    }

    [Fact]
    public void ConcurrentWritersEndWithOneValidFile()
    {
        var cache = Cache();
        using var reference = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, null);
        var models = new HookedTransformer[6];
        using var start = new Barrier(models.Length);
        Parallel.For(0, models.Length, new ParallelOptions { MaxDegreeOfParallelism = models.Length }, i =>
        {
            start.SignalAndWait();
            models[i] = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        });
        try
        {
            foreach (var m in models)
            {
                Assert.Contains(m.WeightsCacheUse, new[] { WeightsCacheUse.Written, WeightsCacheUse.Hit });
                AssertSameWeights(reference, m);
            }
            Assert.Single(CacheFiles()); // no temporary file left, one entry
            using var hit = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
            Assert.Equal(WeightsCacheUse.Hit, hit.WeightsCacheUse);
            AssertSameWeights(reference, hit);
        }
        finally
        {
            foreach (var m in models) m?.Dispose();
        }
    }

    [Fact]
    public void LeastRecentlyUsedEntriesAreEvictedToTheBound()
    {
        long size;
        using (var m = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, Cache()))
            size = new FileInfo(Path.Combine(_root, "weights", CacheFiles().Single())).Length;
        Directory.Delete(Path.Combine(_root, "weights"), recursive: true);

        var cache = Cache((long)(size * 2.5)); // room for two entries
        var flags = new[] { ProcessingOptions.Default, NoFold, ProcessingOptions.Default with { CenterUnembed = false } };
        string Load(ProcessingOptions o)
        {
            using var m = HookedTransformer.LoadFolder(Golden.Dir, o, "tiny-gpt2", ScalarType.Float32, cache);
            return m.WeightsCacheUse.ToString();
        }
        Assert.Equal("Written", Load(flags[0]));
        var a = CacheFiles().Single();
        Thread.Sleep(20);
        Assert.Equal("Written", Load(flags[1]));
        var b = CacheFiles().Single(f => f != a);
        Thread.Sleep(20);
        Assert.Equal("Hit", Load(flags[0])); // A is now the most recently used
        Thread.Sleep(20);
        Assert.Equal("Written", Load(flags[2]));
        var files = CacheFiles();
        Assert.Equal(2, files.Length);
        Assert.Contains(a, files);
        Assert.DoesNotContain(b, files);
        Assert.True(files.Sum(f => new FileInfo(Path.Combine(cache.Folder, f)).Length) <= cache.MaxBytes);
    }

    [Fact]
    public void EntryLargerThanTheBoundIsNotWritten()
    {
        var cache = Cache(1000);
        using var m = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, cache);
        Assert.Equal(WeightsCacheUse.NotWritten, m.WeightsCacheUse);
        Assert.Contains(m.LoadWarnings, w => w.Contains("size bound", StringComparison.Ordinal));
        Assert.Empty(CacheFiles());
    }

    [Fact]
    public void BypassAndNoConversionLeaveTheCacheAlone()
    {
        using (var off = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.Default, "tiny-gpt2", ScalarType.Float32, null))
            Assert.Equal(WeightsCacheUse.NotUsed, off.WeightsCacheUse);
        // No processing and float32 weights: the parameters map the checkpoint; nothing to cache.
        using (var mapped = HookedTransformer.LoadFolder(Golden.Dir, ProcessingOptions.None, "tiny-gpt2", ScalarType.Float32, Cache()))
            Assert.Equal(WeightsCacheUse.NotUsed, mapped.WeightsCacheUse);
        Assert.Empty(CacheFiles());

        Assert.Null(WeightsCache.FromEnvironment(n => n == "SHARPLENS_WEIGHTS_CACHE" ? "0" : null, "/home/u"));
        Assert.Null(WeightsCache.FromEnvironment(n => n == "SHARPLENS_WEIGHTS_CACHE" ? "off" : null, "/home/u"));
        Assert.NotNull(WeightsCache.FromEnvironment(n => n == "SHARPLENS_WEIGHTS_CACHE" ? "1" : null, "/home/u"));
    }

    [Fact]
    public void FolderAndBoundComeFromTheEnvironment()
    {
        static Func<string, string?> Env(params (string K, string V)[] vars) => n => vars.FirstOrDefault(v => v.K == n).V;
        Assert.Equal("/c/weights", WeightsCache.FromEnvironment(Env(("SHARPLENS_CACHE", "/c"), ("XDG_CACHE_HOME", "/x")), "/home/u")!.Folder);
        Assert.Equal("/x/sharplens/weights", WeightsCache.FromEnvironment(Env(("XDG_CACHE_HOME", "/x")), "/home/u")!.Folder);
        var home = WeightsCache.FromEnvironment(Env(), "/home/u")!;
        Assert.Equal("/home/u/.cache/sharplens/weights", home.Folder);
        Assert.Equal(WeightsCache.DefaultMaxBytes, home.MaxBytes);
        Assert.Equal(1L << 29, WeightsCache.FromEnvironment(Env(("SHARPLENS_WEIGHTS_CACHE_MAX_GB", "0.5")), "/h")!.MaxBytes);
        var e = Assert.Throws<SharpLensException>(() => WeightsCache.FromEnvironment(Env(("SHARPLENS_WEIGHTS_CACHE_MAX_GB", "lots")), "/h"));
        Assert.Contains("SHARPLENS_WEIGHTS_CACHE_MAX_GB", e.Message);
        // The test run itself never touches the user's cache.
        Assert.StartsWith(Path.GetTempPath(), WeightsCache.FromEnvironment()!.Folder, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void HubSnapshotsAreKeyedByBlobEtag()
    {
        Skip.IfNot(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS(), "needs symbolic links");
        string repo = Path.Combine(_root, "hub", "models--org--tiny");
        string snap = Path.Combine(repo, "snapshots", new string('a', 40));
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(snap);
        foreach (var (f, etag) in new[] { ("config.json", "c0ffee"), ("model.safetensors", new string('e', 64)) })
        {
            File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(repo, "blobs", etag));
            File.CreateSymbolicLink(Path.Combine(snap, f), Path.Combine("..", "..", "blobs", etag));
        }
        using var m = HookedTransformer.LoadFolder(snap, ProcessingOptions.None, "x", ScalarType.Float32, null);
        var key = WeightsCacheKey.For(snap, m.Config, ProcessingOptions.Default, ScalarType.Float32);
        Assert.Contains($"model.safetensors blob {new string('e', 64)} ", key.Text);
        Assert.DoesNotContain(snap, key.Text); // the snapshot path is not part of the identity: the content is
        var local = WeightsCacheKey.For(Golden.Dir, m.Config, ProcessingOptions.Default, ScalarType.Float32);
        Assert.Contains("model.safetensors file " + Path.GetFullPath(Path.Combine(Golden.Dir, "model.safetensors")), local.Text);
        Assert.NotEqual(key.FileName, local.FileName);
    }
}
