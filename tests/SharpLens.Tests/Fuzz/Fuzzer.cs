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
    /// <summary>Time per format after which a run may stop (the suite must stay fast on a loaded 2-core machine).</summary>
    public static readonly TimeSpan Budget = TimeSpan.FromSeconds(2);
    /// <summary>Damaged inputs every run tries whatever the time.</summary>
    public const int MinIterations = 150;

    /// <param name="format">Name of the format in messages.</param>
    /// <param name="seed">Seed of the mutator: the same seed replays the same inputs.</param>
    /// <param name="iterations">
    /// Most damaged inputs to try. The run stops early once <see cref="Budget"/> has passed and at least
    /// <see cref="MinIterations"/> were tried, so a loaded machine runs a shorter prefix of the same sequence.
    /// </param>
    /// <param name="arrange">Writes one damaged input; returns what was done and the file name every error must mention.</param>
    /// <param name="act">Reads the input the way SharpLens does.</param>
    /// <param name="output">Where the summary goes.</param>
    /// <param name="minIterations">Damaged inputs tried whatever the time (lower for slow readers).</param>
    public static void Run(string format, int seed, int iterations, Func<Mutator, (string What, string File)> arrange, Action act,
        ITestOutputHelper? output = null, int minIterations = MinIterations)
    {
        var m = new Mutator(seed);
        var failures = new List<string>();
        int ok = 0, rejected = 0, tried = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iterations && (i < minIterations || clock.Elapsed < Budget); i++, tried++)
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
