using System.Text.Json.Nodes;

namespace SharpLens.Bench;

/// <summary>One performance target from bench/README.md, checked against a run (informational: never fails the run).</summary>
internal sealed record Target(string Name, string Measured, string Goal, bool Met)
{
    public JsonObject ToJson() => new() { ["name"] = Name, ["measured"] = Measured, ["goal"] = Goal, ["met"] = Met };

    public static List<Target> Evaluate(JsonObject r)
    {
        double M(string k) => r[k]!["median_ms"]!.GetValue<double>();
        var load = r["load"]!;
        double f15 = M("forward_8x15"), f256 = M("forward_4x256"), c15 = M("cache_all_8x15");
        double pct = r["forward_4x256"]!["pct_of_peak"]!.GetValue<double>();
        double repeatedRatio = load["peak_rss_over_checkpoint"]!.GetValue<double>();
        // One load in a fresh process is what the target is about; the repeated-load figure is shown beside it.
        double rssRatio = load["single_load_peak_rss_over_checkpoint"]?.GetValue<double>() ?? repeatedRatio;
        double growth = r["memory_growth"]!["growth_pct"]!.GetValue<double>();
        return
        [
            new("load+process", $"{M("load") / 1000:F2} s", "≤ 1.0 s (page cache)", M("load") <= 1000),
            new("load peak RSS (one load)", $"{rssRatio:F2}× ckpt ({repeatedRatio:F2}× over repeated loads)", "≤ 1.3× checkpoint", rssRatio <= 1.3),
            new("Forward 4x256", $"{pct:F0}% of GEMM peak", "≥ 60% of peak", pct >= 60),
            new("Forward 8x15", $"{f15 / 1000:F3} s", "≤ 0.35 s", f15 <= 350),
            new("RunWithCache(all) 8x15", $"{c15 / f15:F2}× Forward", "≤ 1.25× Forward", c15 / f15 <= 1.25),
            new("RunWithCache(all) 4x256", $"{M("cache_all_4x256") / f256:F2}× Forward", "≤ 1.25× Forward", M("cache_all_4x256") / f256 <= 1.25),
            new("RunWithCache(resid_post) 8x15", $"{M("cache_resid_post_8x15") / f15:F2}× Forward", "≤ 1.05× Forward", M("cache_resid_post_8x15") / f15 <= 1.05),
            new("DLA 8x15", $"{M("dla_8x15") / c15:F2}× RunWithCache(all)", "≤ 1.5× RunWithCache(all)", M("dla_8x15") / c15 <= 1.5),
            new("100× RunWithCache RSS", $"{growth:+0.0;-0.0}%", "flat (±5%)", Math.Abs(growth) <= 5),
            .. Bf16Targets(r, f256),
        ];
    }

    /// <summary>bfloat16 Forward [4,256] against the float32 one (only when the main phases ran in float32).</summary>
    private static IEnumerable<Target> Bf16Targets(JsonObject r, double f256)
    {
        if (r["bf16"] is not JsonObject b || r["dtype"]?.GetValue<string>() is not (null or "float32")) yield break;
        double ratio = b["forward_4x256"]!["median_ms"]!.GetValue<double>() / f256;
        yield return new("bf16 Forward 4x256", $"{ratio:F2}× float32 ({b["gemm"]} GEMM)", "≤ 0.4× float32", ratio <= 0.4);
    }
}

/// <summary>Plain-text report (readable in CI logs, no terminal features needed).</summary>
internal static class Report
{
    public static void Print(JsonObject r, List<Target> targets, TextWriter o)
    {
        var m = r["machine"]!;
        o.WriteLine();
        o.WriteLine($"SharpLens bench  {m["date_utc"]}  {m["cpu"]}, {m["logical_cores"]} cores, torch threads {m["torch_num_threads"]}" +
            $" (interop {m["torch_num_interop_threads"]}), load avg {m["load_average"]}");
        var cfg = r["model"]!["config"]!;
        o.WriteLine($"model: {r["model"]!["folder"]} ({cfg["n_layers"]} layers, d_model {cfg["d_model"]}, vocab {cfg["d_vocab"]}, " +
            $"{r["model"]!["checkpoint_mb"]} MB){(r["quick"]!.GetValue<bool>() ? "  [--quick]" : "")}");
        o.WriteLine($"float32 GEMM peak: {r["gemm_peak_gflops"]} GFLOP/s ({r["gemm"]!["n"]}³ matmul, best of runs)");
        o.WriteLine();
        o.WriteLine($"{"phase",-24} {"median ms",11} {"min ms",10} {"GFLOP/s",9} {"% peak",7} {"peak RSS MB",12} {"Δ RSS MB",9}");
        o.WriteLine(new string('-', 88));
        foreach (var key in new[] { "load", "forward_8x15", "forward_4x256", "cache_all_8x15", "cache_resid_post_8x15", "cache_all_4x256", "dla_8x15", "dla_run_8x15" })
        {
            var p = r[key]!;
            double peak = p["peak_rss_mb"]!.GetValue<double>(), baseline = p["baseline_rss_mb"]!.GetValue<double>();
            o.WriteLine($"{key,-24} {p["median_ms"]!.GetValue<double>(),11:F1} {p["min_ms"]!.GetValue<double>(),10:F1} " +
                $"{Opt(p["gflops"]),9} {Opt(p["pct_of_peak"]),7} {peak,12:F0} {peak - baseline,9:F0}");
        }
        if (r["bf16"] is JsonObject b)
        {
            foreach (var key in new[] { "forward_8x15", "forward_4x256", "cache_all_4x256", "forward_4x256_native_bf16_gemm" })
                if (b[key] is { } p)
                    o.WriteLine($"{"bf16 " + key,-24} {p["median_ms"]!.GetValue<double>(),11:F1} {p["min_ms"]!.GetValue<double>(),10:F1}");
            o.WriteLine($"bf16 ({b["gemm"]} GEMMs) vs float32: max |logit err| {b["logits_max_abs_err_vs_fp32"]} (max |logit| {b["logits_max_abs_fp32"]}), " +
                $"avg logit diff err {b["avg_logit_diff_abs_err_vs_fp32"]} (of {b["avg_logit_diff_fp32"]}), DLA identity error {b["dla_identity_error"]} " +
                $"(float32 {b["dla_identity_error_fp32"]})");
        }
        o.WriteLine();
        var g = r["memory_growth"]!;
        o.WriteLine($"tokenizer: {r["tokenizer_tokens_per_s"]!.GetValue<double>():N0} tokens/s ({r["tokenizer"]!["tokens"]} tokens of English)");
        if (r["tokenizer_families"] is JsonObject families)
            o.WriteLine("tokenizers: " + string.Join(", ", families.Select(f => $"{f.Key} {f.Value!["tokens_per_s"]!.GetValue<double>():N0}")) + " tokens/s");
        o.WriteLine($"memory growth: 100× RunWithCache(all, 8x15): RSS {g["rss_before_mb"]} → {g["rss_after_mb"]} MB ({g["growth_pct"]}%), " +
            $"live tensors {g["live_tensors_before"]} → {g["live_tensors_after"]}");
        o.WriteLine($"model resident after load: {r["model_resident_mb"]} MB; load peak RSS {r["load"]!["peak_rss_delta_mb"]} MB over baseline = {r["load"]!["peak_rss_over_checkpoint"]}× checkpoint" +
            (r["peak_rss_reset_supported"]!.GetValue<bool>() ? "" : " (VmHWM reset unsupported: peaks are process-lifetime)"));
        if (targets.Count == 0) return;
        o.WriteLine();
        o.WriteLine($"{"target",-30} {"measured",-26} {"goal",-26} met");
        o.WriteLine(new string('-', 88));
        foreach (var t in targets) o.WriteLine($"{t.Name,-30} {t.Measured,-26} {t.Goal,-26} {(t.Met ? "yes" : "NO")}");
    }

    private static string Opt(JsonNode? n) => n is null ? "" : n.GetValue<double>().ToString("F1");
}
