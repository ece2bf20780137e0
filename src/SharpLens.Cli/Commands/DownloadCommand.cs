using System.CommandLine;
using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using Spectre.Console;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens download NAME [--revision R]</c>: fetches a model into the Hugging Face cache and prints its snapshot folder.</summary>
internal sealed class DownloadCommand(Func<HubOptions>? options = null) : CliCommand
{
    public override string Name => "download";
    public override string Summary => "Download a model into the Hugging Face cache (shared with Python).";
    public override string Details => """
        Fetches config.json, the weights and the tokenizer files, resuming interrupted downloads, and prints the
        snapshot folder. Environment: HF_HUB_CACHE or HF_HOME (cache folder), HF_TOKEN (gated or private
        repositories), HF_ENDPOINT (mirror), HF_HUB_OFFLINE=1 (no network: only check the cache).
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Args("name|org/repo", "an official name (see 'sharplens models') or any Hugging Face repo id"),
        Opt.Value("revision", "R", "branch, tag or commit hash (default: main)"),
    ];

    protected override async Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string revision = args.Option("revision") ?? "main";
        args.RejectUnknown();
        if (args.Positionals.Count != 1)
            throw new CliUsageException(args.Positionals.Count == 0 ? "give the model to download." : $"give one model, got {args.Positionals.Count}.");
        var info = ModelRegistry.Resolve(args.Positionals[0]);
        // An explicit download re-checks branches with the Hub (one HEAD per file), like huggingface-cli download.
        var hubOptions = (options ?? HubOptions.FromEnvironment)() with { CheckForUpdates = true };
        stderr.WriteLine($"{(info.IsOfficial ? $"{info.Name} = {info.RepoId}" : info.RepoId)} at '{revision}' → {hubOptions.CacheDir}" +
            (hubOptions.Offline ? " (offline: checking the cache only)" : ""));

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            using var client = new HubClient(hubOptions);
            string snapshot = await DownloadDisplay.RunAsync(stderr, progress => client.DownloadModelAsync(info.RepoId, revision, progress, cts.Token));
            stdout.WriteLine(snapshot);
            return 0;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            stderr.WriteLine("interrupted: the partial download is kept; run the same command again to resume.");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}

/// <summary>Progress as plain lines for redirected output: at each 10 % step, at least every 2 s, and when a file completes.</summary>
internal sealed class LineProgress(TextWriter writer) : IProgress<DownloadProgress>
{
    private sealed class FileState
    {
        public readonly Stopwatch Clock = Stopwatch.StartNew();
        public long StartBytes;
        public TimeSpan LastLine;
        public int LastStep = -1;
        public bool Finished;
    }

    private readonly Dictionary<string, FileState> _files = [];

    public void Report(DownloadProgress p)
    {
        lock (_files)
        {
            if (!_files.TryGetValue(p.File, out var s)) _files[p.File] = s = new FileState { StartBytes = p.BytesDone };
            if (s.Finished) return;
            var now = s.Clock.Elapsed;
            bool done = p.TotalBytes is long total && p.BytesDone >= total;
            int step = p.TotalBytes is > 0 ? (int)(p.BytesDone * 10 / p.TotalBytes.Value) : -1;
            if (!done && step <= s.LastStep && now - s.LastLine < TimeSpan.FromSeconds(2)) return;
            double speed = now.TotalSeconds > 0 ? (p.BytesDone - s.StartBytes) / now.TotalSeconds : 0;
            if (done)
            {
                s.Finished = true;
                writer.WriteLine($"{p.File}: {Size(p.BytesDone)} done in {now.TotalSeconds:0.0} s ({Size((long)speed)}/s)");
            }
            else if (p.TotalBytes is long t && t > 0)
            {
                string rate = speed > 0 ? $", {Size((long)speed)}/s, ETA {TimeSpan.FromSeconds(Math.Ceiling((t - p.BytesDone) / speed)):g}" : "";
                writer.WriteLine($"{p.File}: {Size(p.BytesDone)} / {Size(t)} ({100 * p.BytesDone / t}%){rate}");
            }
            else
            {
                writer.WriteLine($"{p.File}: {Size(p.BytesDone)}{(speed > 0 ? $", {Size((long)speed)}/s" : "")}");
            }
            writer.Flush();
            s.LastLine = now;
            s.LastStep = Math.Max(step, s.LastStep);
        }
    }

    /// <summary>Decimal units, as the Hub shows sizes.</summary>
    internal static string Size(long bytes) => bytes switch
    {
        < 1_000 => $"{bytes} B",
        < 1_000_000 => $"{bytes / 1e3:0.0} kB",
        < 1_000_000_000 => $"{bytes / 1e6:0.0} MB",
        _ => $"{bytes / 1e9:0.00} GB",
    };
}
