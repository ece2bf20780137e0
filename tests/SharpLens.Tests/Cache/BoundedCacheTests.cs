using SharpLens.Analysis;
using SharpLens.Cache;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Sae;
using SharpLens.Tests.Families;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Cache;

/// <summary>
/// stopAtLayer / startAtLayer / posSlice / cacheDtype against slicing a full run, on GPT-2 and a rotary family
/// (tiny-llama), and the streaming file export against the in-memory one.
/// </summary>
public sealed class BoundedCacheTests
{
    public static TheoryData<string> Models => new() { "gpt2", "llama" };

    private static (HookedTransformer Model, Tensor Tokens) Load(string which) => which == "gpt2"
        ? (Golden.Model(), Golden.Tokens)
        : (new FamilyFixture("tiny-llama").Model(), new FamilyFixture("tiny-llama").Input("tokens"));

    private static void Same(Tensor expected, Tensor actual, string what)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(", ", actual.shape)}], expected [{string.Join(", ", expected.shape)}]");
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.True(expected.equal(actual).all().item<bool>(), $"{what}: values differ (max |diff| {(expected.to_type(ScalarType.Float32) - actual.to_type(ScalarType.Float32)).abs().max().item<float>()})");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void StopAtLayerCachesExactlyThePrefixOfAFullRun(string which)
    {
        var (model, tokens) = Load(which);
        using var _ = model;
        using var scope = NewDisposeScope();
        int n = model.Config.NLayers;
        var (logits, full) = model.RunWithCache(tokens);
        using (full)
        {
            foreach (int stop in new[] { 0, 1, n, -1 })
            {
                int s = stop < 0 ? stop + n : stop;
                var (resid, cache) = model.RunWithCache(tokens, stopAtLayer: stop);
                using (cache)
                {
                    string stopName = s < n ? $"blocks.{s}.hook_resid_pre" : $"blocks.{n - 1}.hook_resid_post";
                    Same(full[stopName], resid, $"residual at stop {stop}");
                    // Forward without hooks may take fused paths: equal to float rounding.
                    Assert.True(full[stopName].allclose(model.Forward(tokens, stopAtLayer: stop), rtol: 1e-5, atol: 1e-5), $"Forward residual at stop {stop}");
                    // The cache is exactly the full run's keys before block s: no later block, ln_final or unembed hook.
                    var expectedKeys = full.Keys.TakeWhile(k => k != $"blocks.{s}.hook_resid_pre" && !k.StartsWith("ln_final", StringComparison.Ordinal)
                        && !k.StartsWith("unembed", StringComparison.Ordinal)).ToList();
                    Assert.Equal(expectedKeys, cache.Keys);
                    Assert.DoesNotContain(cache.Keys, k => k.StartsWith("unembed", StringComparison.Ordinal) || k.StartsWith("ln_final", StringComparison.Ordinal));
                    foreach (var k in cache.Keys) Same(full[k], cache[k], $"{k} at stop {stop}");
                    var output = model.Forward(tokens, ReturnType.Both, stopAtLayer: stop);
                    Assert.Null(output.Logits);
                    Assert.Null(output.Loss);
                    Assert.True(full[stopName].allclose(output.Residual!, rtol: 1e-5, atol: 1e-5), "ModelOutput.Residual");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void StartAtLayerFromACachedResidualReproducesTheLogits(string which)
    {
        var (model, tokens) = Load(which);
        using var _ = model;
        using var scope = NewDisposeScope();
        int n = model.Config.NLayers;
        var (logits, full) = model.RunWithCache(tokens);
        using (full)
        {
            for (int start = 0; start < n; start++)
            {
                var resid = full[$"blocks.{start}.hook_resid_pre"];
                Assert.True(logits.allclose(model.Forward(resid, startAtLayer: start), rtol: 1e-5, atol: 1e-5), $"logits from block {start}");
                Assert.True(logits.allclose(model.Forward(resid, startAtLayer: start - n), rtol: 1e-5, atol: 1e-5), $"logits from block {start - n}");
            }
            // Start and stop together: block 0 alone maps resid_pre 0 to resid_pre 1.
            Assert.True(full["blocks.1.hook_resid_pre"].allclose(model.Forward(full["blocks.0.hook_resid_pre"], startAtLayer: 0, stopAtLayer: 1), rtol: 1e-5, atol: 1e-5));
            // The loss from a mid-way start predicts the given tokens.
            var lossFull = model.Forward(tokens, ReturnType.Loss).Loss!;
            var lossMid = model.Forward(full["blocks.1.hook_resid_pre"], ReturnType.Loss, startAtLayer: 1, tokens: tokens).Loss!;
            Assert.Equal(lossFull.item<float>(), lossMid.item<float>(), 4);
            Assert.Contains("pass tokens", Assert.Throws<SharpLensException>(() => model.Forward(full["blocks.1.hook_resid_pre"], ReturnType.Loss, startAtLayer: 1)).Message);
        }
    }

    public static TheoryData<string, string> SliceCases => new()
    {
        { "gpt2", "-1" }, { "gpt2", "1:3" }, { "gpt2", "0,2,-1" }, { "gpt2", "::2" },
        { "llama", "-1" }, { "llama", "2:" }, { "llama", "3,0" },
    };

    [Theory]
    [MemberData(nameof(SliceCases))]
    public void PosSliceCachesTheSlicedPositionsOfAFullRun(string which, string sliceText)
    {
        var (model, tokens) = Load(which);
        using var _ = model;
        using var scope = NewDisposeScope();
        // Every opt-in hook too, so per-head inputs and results are covered.
        model.Config.UseAttnResult = model.Config.UseSplitQkvInput = model.Config.UseHookMlpIn = true;
        var slice = Slice.Parse(sliceText);
        var kept = Slice.Unwrap(slice);
        var (logits, full) = model.RunWithCache(tokens);
        var (logits2, cache) = model.RunWithCache(tokens, posSlice: slice);
        using (full) using (cache)
        {
            Same(logits, logits2, "logits");
            Assert.Equal(full.Keys, cache.Keys);
            foreach (var k in full.Keys)
            {
                int axis = k.EndsWith("hook_pattern", StringComparison.Ordinal) || k.EndsWith("hook_attn_scores", StringComparison.Ordinal) ? 2 : 1;
                Same(kept.Apply(full[k], axis).contiguous(), cache[k], $"{k} [{sliceText}]");
            }
        }
    }

    [Fact]
    public void CacheDtypeStoresEachActivationConverted()
    {
        using var model = Golden.Model();
        using var scope = NewDisposeScope();
        var tokens = Golden.Tokens;
        var (_, full) = model.RunWithCache(tokens);
        var (_, half) = model.RunWithCache(tokens, cacheDtype: ScalarType.BFloat16, posSlice: -1);
        using (full) using (half)
        {
            Assert.Equal(full.Keys, half.Keys);
            foreach (var k in full.Keys)
            {
                int axis = k.EndsWith("hook_pattern", StringComparison.Ordinal) || k.EndsWith("hook_attn_scores", StringComparison.Ordinal) ? 2 : 1;
                Same(Slice.FromList(-1L).Apply(full[k], axis).to_type(ScalarType.BFloat16), half[k], k);
            }
        }
    }

    [Fact]
    public void OutOfRangeLayersAndSlicesAreClearErrors()
    {
        using var model = Golden.Model();
        using var scope = NewDisposeScope();
        var tokens = Golden.Tokens; // [batch, 5]? checked below
        long pos = tokens.shape[1];
        int n = model.Config.NLayers;
        string Err(Action a) => Assert.Throws<SharpLensException>(a).Message;
        Assert.Contains($"allowed is [{-n}, {n}]", Err(() => model.RunWithCache(tokens, stopAtLayer: n + 1)));
        Assert.Contains($"stopAtLayer = {-n - 1}", Err(() => model.Forward(tokens, stopAtLayer: -n - 1)));
        Assert.Contains($"startAtLayer = {n + 1}", Err(() => model.Forward(torch.zeros(1, 3, model.Config.DModel), startAtLayer: n + 1)));
        Assert.Contains("comes after stopAtLayer", Err(() => model.Forward(torch.zeros(1, 3, model.Config.DModel), startAtLayer: 2, stopAtLayer: 1)));
        Assert.Contains("d_model", Err(() => model.Forward(tokens, startAtLayer: 0)));
        Assert.Contains($"allowed indices are [{-pos}, {pos - 1}]", Err(() => model.RunWithCache(tokens, posSlice: (int)pos)));
        Assert.Contains("does not fit", Err(() => model.RunWithCache(tokens, posSlice: Slice.FromList(0, -pos - 1))));
        Assert.Contains("not a floating dtype", Err(() => model.RunWithCache(tokens, cacheDtype: ScalarType.Int32)));
        Assert.Contains("not an integer", Err(() => Slice.Parse("1:x")));
        // A python slice past the end is empty, as in Python (not an error).
        var (_, empty) = model.RunWithCache(tokens, namesFilter: n => n == "blocks.0.hook_resid_pre", posSlice: Slice.Range(pos + 3, null));
        using (empty) Assert.Equal(0, empty["blocks.0.hook_resid_pre"].shape[1]);
    }

    public static TheoryData<string, int?, string?, bool, bool> StreamCases => new()
    {
        { "gpt2", null, null, false, false },
        { "gpt2", 1, "-1", true, false },
        { "gpt2", null, "1:4", false, true },
        { "llama", null, null, false, true },
        { "llama", -1, "0,2", true, false },
    };

    [Theory]
    [MemberData(nameof(StreamCases))]
    public void StreamedFileIsByteIdenticalToTheInMemoryExport(string which, int? stop, string? slice, bool bf16, bool filtered)
    {
        var (model, tokens) = Load(which);
        using var _ = model;
        using var scope = NewDisposeScope();
        string dir = Directory.CreateTempSubdirectory("sharplens-stream-").FullName;
        try
        {
            var posSlice = slice is null ? Slice.All : Slice.Parse(slice);
            ScalarType? dtype = bf16 ? ScalarType.BFloat16 : null;
            Func<string, bool>? filter = filtered ? n => n.Contains("attn.hook_", StringComparison.Ordinal) || n.EndsWith("resid_post", StringComparison.Ordinal) : null;
            Tensor? mask = which == "gpt2" && filtered ? torch.ones(tokens.shape, ScalarType.Int64) : null;
            var metadata = new Dictionary<string, string> { ["model"] = which, ["producer"] = "SharpLens" };
            Tensor output; ActivationCache cache;
            if (stop is { } s) (output, cache) = model.RunWithCache(tokens, stopAtLayer: s, namesFilter: filter, posSlice: posSlice, cacheDtype: dtype, attentionMask: mask);
            else (output, cache) = model.RunWithCache(tokens, filter, attentionMask: mask, posSlice: posSlice, cacheDtype: dtype);
            string inMemory = Path.Combine(dir, "memory.safetensors"), streamed = Path.Combine(dir, "streamed.safetensors");
            using (cache)
            {
                var tensors = new List<KeyValuePair<string, Tensor>> { new(stop is null ? "logits" : "residual", output), new("tokens", tokens) };
                tensors.AddRange(cache);
                SafetensorsWriter.Write(inMemory, tensors, metadata);
                var summary = model.RunWithCacheToFile(tokens, streamed, filter, mask, stop, posSlice, dtype, metadata);
                Assert.Equal(cache.Keys, summary.ActivationNames);
                Assert.Equal(new FileInfo(streamed).Length, summary.Bytes);
            }
            Assert.True(File.ReadAllBytes(inMemory).AsSpan().SequenceEqual(File.ReadAllBytes(streamed)), "streamed file differs from the in-memory export");
            Assert.Equal(2, Directory.GetFiles(dir).Length); // no temporary file left
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void AFailureMidwayLeavesNoFile()
    {
        using var model = Golden.Model();
        using var scope = NewDisposeScope();
        var tokens = torch.cat([Golden.Tokens, Golden.Tokens, Golden.Tokens], 0); // batch ≥ 3 tells the real run from the shape pass
        string dir = Directory.CreateTempSubdirectory("sharplens-stream-").FullName;
        try
        {
            string path = Path.Combine(dir, "acts.safetensors");
            using (model.AddHook("blocks.1.hook_resid_post", (act, _) => act.shape[0] >= 3 ? throw new InvalidOperationException("boom") : null))
                Assert.Throws<InvalidOperationException>(() => model.RunWithCacheToFile(tokens, path));
            Assert.Empty(Directory.GetFileSystemEntries(dir));
            Assert.Contains("matches no hook point", Assert.Throws<SharpLensException>(() => model.RunWithCacheToFile(tokens, path, n => n == "nope")).Message);
            Assert.Empty(Directory.GetFileSystemEntries(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>
    /// The shape pass is invisible to attached hooks: a counting hook on every hook point (and on a spliced SAE's hook
    /// points, with an error term) fires exactly once per point for each real streamed forward, and sees only the real batch.
    /// </summary>
    [Fact]
    public void AttachedHooksSeeOnlyTheRealForward()
    {
        using var model = SharpLens.Tests.Sae.SaeGolden.Model();
        using var sae = SharpLens.Tests.Sae.SaeGolden.Load(SharpLens.Tests.Sae.SaeGolden.Saes[0]);
        model.AddSae(sae, useErrorTerm: true);
        using var scope = NewDisposeScope();
        var tokens = Golden.Tokens;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var batches = new HashSet<long>();
        string dir = Directory.CreateTempSubdirectory("sharplens-stream-").FullName;
        try
        {
            using (model.AddHook(_ => true, (act, point) =>
            {
                counts[point.Name] = counts.GetValueOrDefault(point.Name) + 1;
                batches.Add(act.shape[0]);
                return null;
            }))
            {
                var summary = model.RunWithCacheToFile(tokens, Path.Combine(dir, "a.safetensors"));
                Assert.Contains(summary.ActivationNames, n => n.Contains("hook_sae", StringComparison.Ordinal));
                Assert.Equal(summary.ActivationNames.OrderBy(n => n, StringComparer.Ordinal), counts.Keys.OrderBy(n => n, StringComparer.Ordinal));
                Assert.All(counts, kv => Assert.True(kv.Value == 1, $"{kv.Key} fired {kv.Value} times"));
                model.RunWithCacheToFile(tokens, Path.Combine(dir, "b.safetensors"), n => n.StartsWith("blocks.0.", StringComparison.Ordinal), stopAtLayer: 1);
                Assert.All(counts.Where(kv => kv.Key.StartsWith("blocks.0.", StringComparison.Ordinal) || kv.Key == "hook_embed"),
                    kv => Assert.True(kv.Value == 2, $"{kv.Key} fired {kv.Value} times after two streamed runs"));
            }
            Assert.Equal(new HashSet<long> { tokens.shape[0] }, batches);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void SliceParseReadsPythonSliceText()
    {
        Assert.Equal(Slice.At(-1), Slice.Parse("-1"));
        Assert.Equal(Slice.Range(-4, null), Slice.Parse("-4:"));
        Assert.Equal(Slice.Range(1, 5, 2), Slice.Parse("1:5:2"));
        Assert.Equal(Slice.Range(null, null, 2), Slice.Parse("::2"));
        Assert.Equal(Slice.FromList(0L, 3L, -1L), Slice.Parse("0, 3, -1"));
        Assert.Equal(Slice.All, Slice.Parse(":"));
        Assert.Contains("colons", Assert.Throws<SharpLensException>(() => Slice.Parse("1:2:3:4")).Message);
    }
}
