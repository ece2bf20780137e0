using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpLens.Bench;

/// <summary>Timing of one phase: every run's wall time, and the process's peak RSS while the phase ran.</summary>
internal sealed record Timing(double[] RunsMs, double PeakRssMb, double BaselineRssMb)
{
    public double MedianMs
    {
        get
        {
            var s = RunsMs.Order().ToArray();
            return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        }
    }

    public double MinMs => RunsMs.Min();

    public JsonObject ToJson() => new()
    {
        ["median_ms"] = Math.Round(MedianMs, 3), ["min_ms"] = Math.Round(MinMs, 3),
        ["runs_ms"] = new JsonArray(RunsMs.Select(r => (JsonNode)Math.Round(r, 3)).ToArray()),
        ["peak_rss_mb"] = Math.Round(PeakRssMb, 1), ["baseline_rss_mb"] = Math.Round(BaselineRssMb, 1),
    };
}

/// <summary>Wall-clock timing and Linux memory statistics.</summary>
internal static class Measure
{
    /// <summary>
    /// Runs <paramref name="warmup"/> untimed then <paramref name="runs"/> timed calls. Peak RSS is per phase:
    /// writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0), so VmHWM read at the
    /// end is the high-water mark of this phase alone (warm-up included). Baseline = RSS just before the phase.
    /// </summary>
    public static Timing Time(int warmup, int runs, Action action)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        double baseline = RssMb();
        ResetPeak();
        for (int i = 0; i < warmup; i++) action();
        var ms = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            action();
            ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return new Timing(ms, PeakRssMb(), baseline);
    }

    /// <summary>Peak RSS added by one load in a fresh child process (this program with --load-probe), or null.</summary>
    public static double? SingleLoadPeakMb(string folder)
    {
        if (Environment.ProcessPath is not { } exe || !OperatingSystem.IsLinux()) return null;
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(exe) == "dotnet") psi.ArgumentList.Add(typeof(Measure).Assembly.Location);
        psi.ArgumentList.Add("--load-probe"); psi.ArgumentList.Add(folder);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 && double.TryParse(output.Trim(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var mb) ? mb : null;
    }

    public static bool PeakResetWorks { get; private set; } = true;

    public static void ResetPeak()
    {
        if (!OperatingSystem.IsLinux()) { PeakResetWorks = false; return; }
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception) { PeakResetWorks = false; } // then VmHWM is the process-lifetime peak; reported as such
    }

    public static double RssMb() => StatusKb("VmRSS") / 1024.0;
    public static double PeakRssMb() => StatusKb("VmHWM") / 1024.0;

    private static long StatusKb(string key)
    {
        if (!OperatingSystem.IsLinux()) return Environment.WorkingSet / 1024;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0]);
        return 0;
    }

    /// <summary>
    /// float32 GEMM peak: the best of <paramref name="repeats"/> timed n×n @ n×n matmuls (after warm-up), as GFLOP/s
    /// counting 2·n³ per product. Best, not median: it estimates what the hardware can do, not what it usually does.
    /// </summary>
    public static (double Gflops, double BestMs) GemmPeak(int n, int repeats)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var gen = new Generator(1);
        var a = randn([n, n], generator: gen);
        var b = randn([n, n], generator: gen);
        for (int i = 0; i < 2; i++) a.mm(b).Dispose();  // warm-up: first calls pay for page faults and thread start
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            a.mm(b).Dispose();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        return (2.0 * n * n * n / (best / 1000) / 1e9, best);
    }

    public static JsonObject MachineInfo()
    {
        string cpu = "unknown";
        var flags = new List<string>();
        if (File.Exists("/proc/cpuinfo"))
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal) && cpu == "unknown") cpu = line.Split(':', 2)[1].Trim();
                if (line.StartsWith("flags", StringComparison.Ordinal) && flags.Count == 0)
                    flags = line.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)
                        .Where(f => f is "avx2" or "fma" or "avx512f" or "avx512_bf16" or "amx_bf16" or "amx_tile").ToList();
            }
        double memGb = 0;
        if (File.Exists("/proc/meminfo"))
        {
            var l = File.ReadLines("/proc/meminfo").FirstOrDefault(x => x.StartsWith("MemTotal:", StringComparison.Ordinal));
            if (l is not null) memGb = long.Parse(l[9..].Trim().Split(' ')[0]) / 1024.0 / 1024.0;
        }
        return new JsonObject
        {
            ["date_utc"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ"),
            ["host"] = Environment.MachineName,
            ["os"] = RuntimeInformation.OSDescription,
            ["cpu"] = cpu,
            ["cpu_flags"] = new JsonArray(flags.Select(f => (JsonNode)f).ToArray()),
            ["logical_cores"] = Environment.ProcessorCount,
            ["memory_gb"] = Math.Round(memGb, 1),
            ["dotnet"] = RuntimeInformation.FrameworkDescription,
            ["torchsharp"] = typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString(),
            ["torch_num_threads"] = get_num_threads(),
            ["torch_num_interop_threads"] = get_num_interop_threads(),
            ["load_average"] = File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : null,
        };
    }
}
