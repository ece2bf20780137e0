using System.Diagnostics;
using SharpLens.Analysis;
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

string tiny = "/work/wt/prec/tests/SharpLens.Tests/fixtures/tiny-gpt2";
string small = Path.Combine(Environment.GetEnvironmentVariable("HOME")!, ".cache/sharplens/bench/gpt2-small-random");
string llama = "/work/wt/prec/tests/SharpLens.Tests/fixtures/tiny-llama";
double Rel(Tensor a, Tensor r) { using var s = NewDisposeScope(); var af = a.to_type(ScalarType.Float64); var rf = r.to_type(ScalarType.Float64);
    var fin = rf.isfinite(); return (af - rf).masked_select(fin).abs().max().item<double>() / Math.Max(1e-30, rf.masked_select(fin).abs().max().item<double>()); }
double Time(Action a, int n) { a(); var sw = Stopwatch.StartNew(); for (int i = 0; i < n; i++) a(); return sw.Elapsed.TotalMilliseconds / n; }

string what = args.Length > 0 ? args[0] : "acc";
if (what == "acc")
{
    foreach (var (name, folder) in new[] { ("tiny-gpt2", tiny), ("tiny-llama", llama), ("gpt2-small-random", small) })
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        using var m32 = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, name);
        var tokens = randint(0, m32.Config.DVocab, [8, 15], generator: gen);
        var answers = randint(0, m32.Config.DVocab, [8, 2], generator: gen);
        var (l32, c32) = m32.RunWithCache(tokens);
        var ld32 = LogitDiff.Mean(l32, answers).item<float>();
        foreach (var dt in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        {
            using var m = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, name, dt);
            var fwd = m.Forward(tokens);
            var (l, c) = m.RunWithCache(tokens);
            var ld = LogitDiff.Mean(l, answers).item<float>();
            Console.WriteLine($"{name} {dt}: logits rel err fwd {Rel(fwd, l32):E2} cache-run {Rel(l, l32):E2}; max|logit| {l32.abs().max().item<float>():F2}; avg logit diff {ld32:F4} vs {ld:F4} (err {Math.Abs(ld - ld32):E2})");
            var worst = c32.Keys.Select(k => (k, e: Rel(c[k], c32[k]))).OrderByDescending(x => x.e).Take(5);
            Console.WriteLine("   worst hooks: " + string.Join(", ", worst.Select(x => $"{x.k} {x.e:E2}")));
            var dla = DirectLogitAttribution.Run(m, tokens, answers, null, 5, 0, null);
            var dla32 = DirectLogitAttribution.Run(m32, tokens, answers, null, 5, 0, null);
            Console.WriteLine($"   DLA identity error {dla.IdentityError:E2} (fp32 {dla32.IdentityError:E2}); with bias {dla.IdentityErrorWithBias:E2} (fp32 {dla32.IdentityErrorWithBias:E2})");
            c.Dispose();
        }
        c32.Dispose();
    }
}
else if (what == "order")
{
    using var scope = NewDisposeScope();
    string folder = args[1];
    var gen = new Generator(7);
    using var m32 = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, "x");
    using var m = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, "x", ScalarType.BFloat16);
    var tokens = randint(0, m32.Config.DVocab, [8, 15], generator: gen);
    var (l32, c32) = m32.RunWithCache(tokens);
    var (l, c) = m.RunWithCache(tokens);
    foreach (var k in c32.Keys) Console.WriteLine($"{k,-40} {Rel(c[k], c32[k]):E2}  scale {c32[k].abs().max().item<float>():F3} {c[k].dtype}");
}
else if (what == "islands")
{
    var bf = ScalarType.BFloat16; var f = ScalarType.Float32;
    foreach (var (name, folder) in new[] { ("tiny-gpt2", tiny), ("tiny-llama", llama), ("gpt2-small-random", small) })
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        using var m = HookedTransformer.FromFolder(folder, ProcessingOptions.Default, name);
        var tokens = randint(0, m.Config.DVocab, [8, 15], generator: gen);
        var answers = randint(0, m.Config.DVocab, [8, 2], generator: gen);
        var (_, c) = m.RunWithCache(tokens);
        int L = m.Config.NLayers - 1;
        double eps = m.Config.Eps;
        // a) norm statistics
        var xb = c[$"blocks.{L}.hook_resid_pre"].to_type(bf);
        bool rms = m.Config.IsRmsNorm;
        Tensor Norm(Tensor x) { var xc = rms ? x : x - x.mean([-1], keepdim: true); return xc / (xc.pow(2).mean([-1], keepdim: true) + eps).sqrt(); }
        var refN = Norm(xb.to_type(f));
        double normBf = Rel(Norm(xb).to_type(f), refN), normIsl = Rel(Norm(xb.to_type(f)).to_type(bf).to_type(f), refN);
        // b) scores + softmax
        string qn = c.ContainsKey($"blocks.{L}.attn.hook_rot_q") ? "hook_rot_q" : "hook_q", kn = qn.Replace("_q", "_k");
        var qb = c[$"blocks.{L}.attn.{qn}"].to_type(bf).permute(0, 2, 1, 3); var kb = c[$"blocks.{L}.attn.{kn}"].to_type(bf).permute(0, 2, 1, 3);
        if (kb.shape[1] != qb.shape[1]) kb = kb.repeat_interleave(qb.shape[1] / kb.shape[1], 1);
        double sc = Math.Sqrt(m.Config.DHead);
        var mask = ones(15, 15, dtype: ScalarType.Bool).tril().logical_not();
        Tensor Pat(Tensor q, Tensor k) => (q.matmul(k.transpose(-1, -2)) / sc).masked_fill(mask, float.NegativeInfinity).softmax(-1);
        var refP = Pat(qb.to_type(f), kb.to_type(f));
        double patBf = (Pat(qb, kb).to_type(f) - refP).abs().max().item<float>();
        double patIsl = (refP.to_type(bf).to_type(f) - refP).abs().max().item<float>();
        // c) logits rounded to bf16 vs float32
        var fin = c["unembed.hook_in"].to_type(bf).to_type(f);
        var wu = m.W_U.to_type(bf).to_type(f); var bu = m.b_U.to_type(bf).to_type(f);
        var lf = fin.matmul(wu) + bu; var lb = lf.to_type(bf).to_type(f);
        double ldF = LogitDiff.Mean(lf, answers).item<float>(), ldB = LogitDiff.Mean(lb, answers).item<float>();
        Console.WriteLine($"{name}: norm normalized rel err  bf16 stats {normBf:E2} | f32 stats {normIsl:E2}");
        Console.WriteLine($"{name}: pattern max abs err        bf16 scores+softmax {patBf:E2} | f32 {patIsl:E2}");
        Console.WriteLine($"{name}: logits rounded to bf16: max abs err {(lb - lf).abs().max().item<float>():E2} of max |logit| {lf.abs().max().item<float>():F2}; avg logit diff err {Math.Abs(ldB - ldF):E2}");
        if (qn == "hook_rot_q")
        {
            var q = c[$"blocks.{L}.attn.hook_q"].to_type(bf); // rotary in bf16 vs f32, same input
            var pos = arange(15, dtype: f).unsqueeze(-1);
            int rd = m.Config.RotaryDim!.Value, half = rd / 2;
            var freq = pow(tensor((float)m.Config.RotaryBase), arange(half, dtype: f) / (float)half); freq = cat([freq, freq]);
            var ang = (pos / freq).unsqueeze(1);
            Tensor Rot(Tensor x, Tensor cos, Tensor sin) { var r = x.narrow(-1, 0, rd); var rr = cat([-r.narrow(-1, half, half), r.narrow(-1, 0, half)], -1); return r * cos + rr * sin; }
            var refR = Rot(q.to_type(f), ang.cos(), ang.sin());
            double rotBf = Rel(Rot(q, ang.cos().to_type(bf), ang.sin().to_type(bf)).to_type(f), refR), rotIsl = Rel(refR.to_type(bf).to_type(f), refR);
            Console.WriteLine($"{name}: rotary rel err              bf16 {rotBf:E2} | f32 {rotIsl:E2}");
        }
        c.Dispose();
    }
}
else if (what == "speed")
{
    var dts = args.Skip(1).Select(ModelDtype.Parse).ToArray();
    var gen = new Generator(7);
    var t1 = randint(0, 50257, [8, 15], generator: gen);
    var t2 = randint(0, 50257, [4, 256], generator: gen);
    foreach (var dt in dts)
    {
        using var m = HookedTransformer.FromFolder(small, ProcessingOptions.Default, "s", dt);
        for (int r = 0; r < 2; r++)
        {
            double a = Time(() => { using var s = NewDisposeScope(); m.Forward(t1); }, 5);
            double b = Time(() => { using var s = NewDisposeScope(); m.Forward(t2); }, 3);
            Console.WriteLine($"{dt} ({HalfGemm.Describe(dt)}): forward 8x15 {a:F1} ms, 4x256 {b:F1} ms");
        }
    }
}
