using System.Diagnostics;
using Xunit.Abstractions;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// Runs a reader on many damaged inputs. The only allowed outcomes are success or a <see cref="SharpLensException"/>
/// (or subclass) whose message names the damaged file; anything else (another exception type, a message that does
/// not say which file) is collected and reported with the seed, iteration and mutation that caused it.
/// </summary>
internal static class Fuzzer
{
    /// <summary>
    /// Multiplies every run's iteration count (environment <c>SHARPLENS_FUZZ_SCALE</c>, default 1): a deep local search
    /// runs e.g. 20× longer. CI never sets it, so every run tries exactly the same inputs.
    /// </summary>
    private static readonly double Scale = double.TryParse(Environment.GetEnvironmentVariable("SHARPLENS_FUZZ_SCALE"),
        System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 1;
    /// <summary>Added to every seed (environment <c>SHARPLENS_FUZZ_SEED</c>, default 0) to explore other sequences.</summary>
    private static readonly int SeedOffset = int.TryParse(Environment.GetEnvironmentVariable("SHARPLENS_FUZZ_SEED"), out var o) ? o : 0;

    /// <param name="format">Name of the format in messages.</param>
    /// <param name="seed">Seed of the mutator: the same seed replays the same inputs.</param>
    /// <param name="iterations">
    /// Damaged inputs to try, all of them: the count is fixed rather than time-bounded so a fast machine and a slow one
    /// feed the same inputs (a time budget let a faster CI machine reach inputs no local run had tried).
    /// </param>
    /// <param name="arrange">Writes one damaged input; returns what was done and the file name every error must mention.</param>
    /// <param name="act">Reads the input the way SharpLens does.</param>
    /// <param name="output">Where the summary goes.</param>
    public static void Run(string format, int seed, int iterations, Func<Mutator, (string What, string File)> arrange, Action act,
        ITestOutputHelper? output = null)
    {
        seed += SeedOffset;
        iterations = (int)Math.Ceiling(iterations * Scale);
        var m = new Mutator(seed);
        var failures = new List<string>();
        int ok = 0, rejected = 0, tried = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++, tried++)
        {
            var (what, file) = arrange(m);
            try
            {
                using (TorchSharp.torch.NewDisposeScope()) act();
                ok++;
            }
            catch (SharpLensException e)
            {
                rejected++;
                if (!e.Message.Contains(file, StringComparison.Ordinal))
                    failures.Add($"#{i} ({what}): message does not name '{file}': {e.Message}");
                else if (e.Message.Contains('\n'))
                    failures.Add($"#{i} ({what}): message is not one line: {e.Message}");
            }
            catch (Exception e)
            {
                failures.Add($"#{i} ({what}): {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
            }
        }
        output?.WriteLine($"{format}: {tried} damaged inputs in {clock.ElapsedMilliseconds} ms: {ok} read, {rejected} rejected, {failures.Count} wrong");
        // One example of each kind of failure (same exception type and message start), most first.
        var kinds = failures.GroupBy(f => f[(f.IndexOf("): ", StringComparison.Ordinal) + 3)..][..Math.Min(60, f.Length - f.IndexOf("): ", StringComparison.Ordinal) - 3)])
            .OrderByDescending(g => g.Count()).Select(g => $"[{g.Count()}x] {g.First()}");
        Assert.True(failures.Count == 0, $"{format} (seed {seed}): {failures.Count} of {tried} damaged inputs were not handled:\n" +
            string.Join("\n", kinds.Take(12)));
        Assert.True(rejected > tried / 10, $"{format}: only {rejected} of {tried} damaged inputs were rejected; the mutations are not reaching the reader.");
    }
}
