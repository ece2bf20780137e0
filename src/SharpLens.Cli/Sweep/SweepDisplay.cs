using System.Diagnostics;
using SharpLens.Cli.Dla;
using SharpLens.Cluster;
using Spectre.Console;

namespace SharpLens.Cli.Sweep;

/// <summary>One progress display over all workers: a Spectre bar on a terminal, plain lines every 2 s when redirected.</summary>
internal static class SweepDisplay
{
    public static async Task<T> RunAsync<T>(TextWriter stderr, string jobId, Func<IProgress<JobStatus>, Task<T>> run)
    {
        if (ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return await console.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape($"sweep {jobId}"), maxValue: 1);
                    var rate = new Rate();
                    return run(new SyncProgress<JobStatus>(s =>
                    {
                        task.MaxValue = Math.Max(1, s.Prompts);
                        task.Value = s.PromptsDone;
                        task.Description = Markup.Escape($"sweep {jobId}: {s.Done}/{s.Items} items, {s.WorkersSeen.Length} workers, {rate.Text(s.PromptsDone)}");
                    }));
                });
        }
        var lines = new Rate();
        var last = Stopwatch.StartNew();
        int lastDone = -1;
        return await run(new SyncProgress<JobStatus>(s =>
        {
            if (s.Done == lastDone && last.Elapsed < TimeSpan.FromSeconds(2)) return;
            lastDone = s.Done;
            last.Restart();
            stderr.WriteLine($"[sharplens] sweep {jobId}: {s.Done}/{s.Items} items ({s.PromptsDone}/{s.Prompts} prompts), " +
                $"{s.Leased} running, {s.WorkersSeen.Length} workers seen, {lines.Text(s.PromptsDone, s.Prompts)}");
        }));
    }

    /// <summary>Prompts per second since the display started, and the ETA.</summary>
    private sealed class Rate
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private int _first = -1;

        public string Text(int done, int total = 0)
        {
            if (_first < 0) _first = done;
            double secs = _clock.Elapsed.TotalSeconds, rate = secs > 0 ? (done - _first) / secs : 0;
            string eta = rate > 0 && total > done ? $", ETA {TimeSpan.FromSeconds((total - done) / rate):mm\\:ss}" : "";
            return $"{rate:F1} prompts/s{eta}";
        }
    }
}
