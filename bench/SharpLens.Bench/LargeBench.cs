using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>
/// <c>--large</c>: a GPT-2-XL-shaped random checkpoint (float32 and bfloat16 copies, written once) — loads measured one
/// per fresh child process (time and peak RSS of that load alone), then Forward and RunWithCache(resid_post) on [4, 256]
/// in both dtypes. The weights cache of these runs lives in the bench cache folder, never the user's.
/// </summary>
internal static class LargeBench
{
    private const string ProbeFlag = "--large-probe";

    /// <summary>Child process: one load, printed as "ms peak_rss_mb peak_rss_delta_mb cache_use".</summary>
    public static int Probe(string[] args)
    {
        // --large-probe FOLDER DTYPE PROCESS(0|1) CACHE(0|1)
        string folder = args[1];
        var dtype = args[2] == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        var options = args[3] == "1" ? ProcessingOptions.Default : ProcessingOptions.None;
        bool cache = args[4] == "1";
        // SharpLens's module initializer sets THP_MEM_ALLOC_ENABLE, which libtorch reads once, at its first allocation:
        // run it before that first tensor, as any program that starts with SharpLens does.
        System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(HookedTransformer).Module.ModuleHandle);
        using (var init = ones(1)) { } // libtorch's own start-up is not the load
        GC.Collect();
        double before = Measure.RssMb();
        Measure.ResetPeak();
        long t0 = Stopwatch.GetTimestamp();
        using var model = HookedTransformer.FromFolder(folder, options, "gpt2-xl-random", dtype, useWeightsCache: cache);
        double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        double peak = Measure.PeakRssMb();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{ms} {peak} {peak - before} {model.WeightsCacheUse}"));
        return 0;
    }

    public static bool IsProbe(string[] args) => args.Length == 5 && args[0] == ProbeFlag;

    /// <summary>Runs the phase; returns the <c>large</c> JSON object.</summary>
    public static JsonObject Run(int runs, Action<string> log)
    {
        string f32 = RandomCheckpoint.Ensure(Gpt2Shape.Xl, log);
        string bf16 = RandomCheckpoint.Ensure(Gpt2Shape.Xl, log, bfloat16: true);
        double MbOf(string dir) => new FileInfo(Path.Combine(dir, "model.safetensors")).Length / 1024.0 / 1024.0;
        double f32Mb = MbOf(f32), bf16Mb = MbOf(bf16);
        // The weights cache for these runs: inside the bench cache, emptied first so the first bf16 load is a miss.
        string cacheRoot = Path.Combine(RandomCheckpoint.CacheRoot(), "sharplens-cache");
        if (Directory.Exists(Path.Combine(cacheRoot, "weights"))) Directory.Delete(Path.Combine(cacheRoot, "weights"), recursive: true);
        foreach (var dir in new[] { f32, bf16 })
        {
            log($"reading {dir} once (page cache) ...");
            foreach (var f in Directory.EnumerateFiles(dir)) { using var s = File.OpenRead(f); s.CopyTo(Stream.Null, 1 << 22); }
        }

        JsonObject Loads(string what, string folder, string dtype, bool process, bool cache, double ckptMb, string expectUse)
        {
            log($"large {what}: {runs} loads, each in a fresh process ...");
            var ms = new List<double>(); var peaks = new List<double>(); var deltas = new List<double>();
            for (int i = 0; i < runs; i++)
            {
                var (t, peak, delta, use) = Child(folder, dtype, process, cache, cacheRoot);
                if (use != expectUse) throw new InvalidOperationException($"large {what}: expected weights cache use {expectUse}, the load reported {use}");
                ms.Add(t); peaks.Add(peak); deltas.Add(delta);
            }
            return new JsonObject
            {
                ["median_ms"] = Math.Round(Median(ms), 1), ["runs_ms"] = new JsonArray(ms.Select(x => (JsonNode)Math.Round(x, 1)).ToArray()),
                ["peak_rss_mb"] = Math.Round(peaks.Max(), 1), ["peak_rss_delta_mb"] = Math.Round(deltas.Max(), 1),
                ["checkpoint_mb"] = Math.Round(ckptMb, 1), ["peak_rss_over_checkpoint"] = Math.Round(deltas.Max() / ckptMb, 3),
                ["weights_cache"] = expectUse,
            };
        }

        var fp32 = new JsonObject { ["load"] = Loads("float32 load (processed, no weights cache)", f32, "float32", true, false, f32Mb, "NotUsed") };
        var bf = new JsonObject { ["load"] = Loads("bfloat16 load (bf16 checkpoint, no processing)", bf16, "bfloat16", false, true, bf16Mb, "NotUsed") };
        log("large: writing the bfloat16 weights-cache entry (processed load, untimed) ...");
        var (primeMs, _, _, primeUse) = Child(bf16, "bfloat16", true, true, cacheRoot);
        if (primeUse != "Written") throw new InvalidOperationException($"large: priming the weights cache reported {primeUse}");
        bf["load_weights_cache_miss_ms"] = Math.Round(primeMs, 1);
        var hit = Loads("bfloat16 load (processed, weights cache hit)", bf16, "bfloat16", true, true, bf16Mb, "Hit");
        hit["cache_file_mb"] = Math.Round(Directory.GetFiles(Path.Combine(cacheRoot, "weights"), "*.safetensors").Sum(f => new FileInfo(f).Length) / 1024.0 / 1024.0, 1);
        bf["load_weights_cache_hit"] = hit;

        // Forward / RunWithCache in this process: float32 processed (no cache, like the load above), bfloat16 from the cache.
        var gen = new Generator(11);
        using var tokens = randint(0, Gpt2Shape.Xl.Vocab, [4, 256], generator: gen);
        int fwdRuns = Math.Max(1, runs - 1);
        foreach (var (json, folder, dtype) in new[] { (fp32, f32, ScalarType.Float32), (bf, bf16, ScalarType.BFloat16) })
        {
            string name = dtype == ScalarType.Float32 ? "float32" : "bfloat16";
            log($"large {name}: loading for Forward ...");
            using var model = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, "gpt2-xl-random", dtype,
                useWeightsCache: dtype == ScalarType.BFloat16 && WithCache(cacheRoot));
            log($"large {name}: Forward [4,256] ({fwdRuns} runs after 1 warm-up) ...");
            json["forward_4x256"] = Slim(Measure.Time(1, fwdRuns, () => Workloads.Forward(model, tokens)));
            log($"large {name}: RunWithCache(resid_post) [4,256] ...");
            json["cache_resid_post_4x256"] = Slim(Measure.Time(1, fwdRuns,
                () => Workloads.RunWithCache(model, tokens, n => n.EndsWith("hook_resid_post", StringComparison.Ordinal))));
        }
        return new JsonObject
        {
            ["shape"] = new JsonObject { ["n_layers"] = 48, ["d_model"] = 1600, ["n_heads"] = 25, ["d_vocab"] = 50257, ["n_ctx"] = 1024 },
            ["float32"] = fp32, ["bfloat16"] = bf,
        };
    }

    /// <summary>Large-model targets (informational, like the others).</summary>
    public static List<Target> Evaluate(JsonObject large)
    {
        var f = large["float32"]!["load"]!; var b = large["bfloat16"]!["load"]!; var h = large["bfloat16"]!["load_weights_cache_hit"]!;
        double M(JsonNode n) => n["median_ms"]!.GetValue<double>();
        double ratio = f["peak_rss_over_checkpoint"]!.GetValue<double>();
        return
        [
            new("large fp32 load (processed)", $"{M(f) / 1000:F2} s", "≤ 4 s", M(f) <= 4000),
            new("large fp32 load peak RSS", $"{ratio:F2}× ckpt", "≤ 1.3× checkpoint", ratio <= 1.3),
            new("large bf16 load (no processing)", $"{M(b) / 1000:F2} s", "≤ 1 s (mapped)", M(b) <= 1000),
            new("large bf16 weights-cache hit", $"{M(h) / 1000:F2} s", "≤ 1 s", M(h) <= 1000),
        ];
    }

    public static void Print(JsonObject large, TextWriter o)
    {
        o.WriteLine();
        o.WriteLine("--large: GPT-2-XL shape (48 layers, d_model 1600, 25 heads, vocab 50257)");
        o.WriteLine($"{"phase",-44} {"median ms",11} {"peak RSS MB",12} {"Δ RSS MB",9} {"ckpt MB",8}");
        o.WriteLine(new string('-', 88));
        foreach (var dtype in new[] { "float32", "bfloat16" })
            foreach (var (key, p) in large[dtype]!.AsObject())
                if (p is JsonObject phase)
                    o.WriteLine($"{dtype + " " + key,-44} {phase["median_ms"]!.GetValue<double>(),11:F1} {phase["peak_rss_mb"]!.GetValue<double>(),12:F0} " +
                        $"{(phase["peak_rss_delta_mb"] is { } d ? d.GetValue<double>().ToString("F0", CultureInfo.InvariantCulture) : ""),9} " +
                        $"{(phase["checkpoint_mb"] is { } c ? c.GetValue<double>().ToString("F0", CultureInfo.InvariantCulture) : ""),8}");
    }

    private static JsonObject Slim(Timing t) => new()
    {
        ["median_ms"] = Math.Round(t.MedianMs, 1), ["runs_ms"] = new JsonArray(t.RunsMs.Select(x => (JsonNode)Math.Round(x, 1)).ToArray()),
        ["peak_rss_mb"] = Math.Round(t.PeakRssMb, 1),
    };

    /// <summary>Points this process's weights cache at the bench's folder (for the in-process bfloat16 model).</summary>
    private static bool WithCache(string cacheRoot)
    {
        Environment.SetEnvironmentVariable("SHARPLENS_CACHE", cacheRoot);
        return true;
    }

    private static (double Ms, double PeakMb, double DeltaMb, string Use) Child(string folder, string dtype, bool process, bool cache, string cacheRoot)
    {
        var exe = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") psi.ArgumentList.Add(typeof(LargeBench).Assembly.Location);
        foreach (var a in new[] { ProbeFlag, folder, dtype, process ? "1" : "0", cache ? "1" : "0" }) psi.ArgumentList.Add(a);
        psi.Environment["SHARPLENS_CACHE"] = cacheRoot;
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"load probe failed ({p.ExitCode}): {err.Result}");
        var parts = output.Trim().Split(' ');
        double D(int i) => double.Parse(parts[i], CultureInfo.InvariantCulture);
        return (D(0), D(1), D(2), parts[3]);
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
