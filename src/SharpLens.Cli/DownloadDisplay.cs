using SharpLens.Cli.Commands;
using SharpLens.Loading.Hub;
using Spectre.Console;

namespace SharpLens.Cli;

/// <summary>Shows download progress: a Spectre bar (size, speed, ETA) on a terminal, plain periodic lines when redirected.</summary>
internal static class DownloadDisplay
{
    public static async Task<string> RunAsync(TextWriter stderr, Func<IProgress<DownloadProgress>, Task<string>> download)
    {
        if (ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            return await console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(),
                    new TransferSpeedColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(ctx => download(new BarProgress(ctx)));
        }
        // Spectre's live display prints nothing when redirected: plain lines every 2 s or 10 % instead.
        return await download(new LineProgress(stderr));
    }

    /// <summary>One Spectre progress task per file.</summary>
    private sealed class BarProgress(ProgressContext ctx) : IProgress<DownloadProgress>
    {
        private readonly Dictionary<string, ProgressTask> _tasks = [];

        public void Report(DownloadProgress p)
        {
            lock (_tasks)
            {
                if (!_tasks.TryGetValue(p.File, out var task))
                    _tasks[p.File] = task = ctx.AddTask(Markup.Escape(p.File), maxValue: p.TotalBytes is > 0 ? p.TotalBytes.Value : 1);
                task.IsIndeterminate = p.TotalBytes is null;
                task.Value = Math.Min(p.BytesDone, task.MaxValue);
            }
        }
    }
}
