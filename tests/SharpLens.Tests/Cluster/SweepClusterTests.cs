using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using SharpLens.Tests.Cli;

namespace SharpLens.Tests.Cluster;

/// <summary>
/// A real cluster: redis-server and worker processes on localhost (exact and attribution patching, DLA). Workers are killed with SIGKILL while they hold an
/// item; the sweep must still equal the single-process command, with every item recorded exactly once. Runs in the
/// isolated collection: it starts processes and depends on timing that parallel tests would disturb.
/// </summary>
[Collection("Isolated")]
public sealed class SweepClusterTests : IDisposable
{
    private readonly List<Process> _processes = [];
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");

    private static string Cli => Path.Combine(AppContext.BaseDirectory, "SharpLens.Cli.dll");

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private sealed class Logged(Process process, StringBuilder log)
    {
        public Process Process { get; } = process;
        public string Log { get { lock (log) return log.ToString(); } }
    }

    private Logged Start(string file, IEnumerable<string> args, int itemDelayMs = 0)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (itemDelayMs > 0) psi.Environment["SHARPLENS_SWEEP_ITEM_DELAY_MS"] = itemDelayMs.ToString();
        var log = new StringBuilder();
        var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _processes.Add(p);
        return new Logged(p, log);
    }

    private Logged Sharplens(IEnumerable<string> args, int itemDelayMs = 0) => Start("dotnet", new[] { Cli }.Concat(args), itemDelayMs);

    private static void WaitFor(Func<bool> condition, string what, int seconds = 180)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(seconds)) throw new TimeoutException($"Timed out after {seconds} s waiting for {what}.");
            Thread.Sleep(100);
        }
    }

    private string? StartRedis()
    {
        string? server = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);
        if (server is null) return null;
        int port = FreePort();
        var redis = Start(server, ["--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        WaitFor(() => redis.Log.Contains("Ready to accept connections"), "redis-server", 30);
        return $"127.0.0.1:{port}";
    }

    private static void Kill(Logged p) => p.Process.Kill(entireProcessTree: true); // SIGKILL: no drain, no goodbye

    /// <summary>The first worker that has started an item of <paramref name="jobId"/>.</summary>
    private static Logged FirstBusy(IEnumerable<Logged> workers, string jobId)
    {
        Logged? busy = null;
        WaitFor(() => (busy = workers.FirstOrDefault(w => !w.Process.HasExited && w.Log.Contains($"job {jobId}: item "))) is not null, $"a worker to start an item of {jobId}");
        return busy!;
    }

    [SkippableFact]
    public void SweepsSurviveAKilledWorkerAndAKilledClient()
    {
        string? redis = StartRedis();
        Skip.If(redis is null, "redis-server is not installed (.ci/run installs it); the cluster test needs a real Redis.");
        const string cluster = "test";
        var workers = Enumerable.Range(0, 4)
            .Select(_ => Sharplens(["worker", "--redis", redis!, "--cluster-id", cluster, "--threads", "1"], itemDelayMs: 700)).ToList();
        WaitFor(() => workers.All(w => w.Log.Contains("worker joined cluster")), "4 workers to join");

        var (clean, corrupted) = SweepTestData.PromptFiles(_dir, 48);
        string Path_(string name) => System.IO.Path.Combine(_dir, name);
        Assert.Equal(0, CliTestHelper.Run("patch", "--model", Golden.Dir, "--kind", "resid_pre", "--clean", clean, "--corrupted", corrupted, "--json", Path_("patch.json")).Code);
        Assert.Equal(0, CliTestHelper.Run("dla", "--model", Golden.Dir, "--prompts", clean, "--json", Path_("dla.json")).Code);

        // 1. Patching: SIGKILL the first worker that holds an item; its item is redone by another.
        var patch = Sharplens(["sweep", "--redis", redis!, "--cluster-id", cluster, "--job-id", "patch-job", "--model", Golden.Dir,
            "--analysis", "patch", "--kind", "resid_pre", "--clean", clean, "--corrupted", corrupted, "--batch-size", "2", "--lease-seconds", "20",
            "--json", Path_("sweep-patch.json")]);
        Kill(FirstBusy(workers, "patch-job"));
        WaitFor(() => patch.Process.HasExited, "the patch sweep to finish", 300);
        Assert.True(patch.Process.ExitCode == 0, patch.Log);
        SweepTestData.AssertSameResult(Path_("patch.json"), Path_("sweep-patch.json"));
        AssertJob(Path_("sweep-patch.json"), items: 24, retried: true);

        // 2. DLA: the same with another worker killed.
        var dla = Sharplens(["sweep", "--redis", redis!, "--cluster-id", cluster, "--job-id", "dla-job", "--model", Golden.Dir,
            "--analysis", "dla", "--clean", clean, "--batch-size", "3", "--lease-seconds", "20", "--json", Path_("sweep-dla.json")]);
        Kill(FirstBusy(workers, "dla-job"));
        WaitFor(() => dla.Process.HasExited, "the dla sweep to finish", 300);
        Assert.True(dla.Process.ExitCode == 0, dla.Log);
        SweepTestData.AssertSameResult(Path_("dla.json"), Path_("sweep-dla.json"));
        AssertJob(Path_("sweep-dla.json"), items: 16, retried: true);

        // 3. The client dies mid-sweep; --resume reattaches and gets the finished result.
        var lost = Sharplens(["sweep", "--redis", redis!, "--cluster-id", cluster, "--job-id", "resumed-job", "--model", Golden.Dir,
            "--analysis", "patch", "--kind", "resid_pre", "--clean", clean, "--corrupted", corrupted, "--batch-size", "4", "--json", Path_("never.json")]);
        FirstBusy(workers, "resumed-job");
        Kill(lost);
        var r = CliTestHelper.Run("sweep", "--resume", "resumed-job", "--redis", redis!, "--cluster-id", cluster, "--json", Path_("resumed.json"));
        Assert.True(r.Code == 0, r.Err);
        Assert.False(File.Exists(Path_("never.json")));
        SweepTestData.AssertSameResult(Path_("patch.json"), Path_("resumed.json"));
        AssertJob(Path_("resumed.json"), items: 12, retried: false);

        // 4. Attribution patching (noising) on the surviving workers equals 'patch --method attribution'.
        Assert.Equal(0, CliTestHelper.Run("patch", "--model", Golden.Dir, "--kind", "head_out_all_pos", "--method", "attribution", "--direction", "noising",
            "--clean", clean, "--corrupted", corrupted, "--json", Path_("attribution.json")).Code);
        r = CliTestHelper.Run("sweep", "--redis", redis!, "--cluster-id", cluster, "--job-id", "attribution-job", "--model", Golden.Dir,
            "--analysis", "attribution", "--kind", "head_out_all_pos", "--direction", "noising", "--clean", clean, "--corrupted", corrupted,
            "--batch-size", "5", "--json", Path_("sweep-attribution.json"));
        Assert.True(r.Code == 0, r.Err);
        SweepTestData.AssertSameResult(Path_("attribution.json"), Path_("sweep-attribution.json"));
        AssertJob(Path_("sweep-attribution.json"), items: 10, retried: false);
    }

    private static void AssertJob(string path, int items, bool retried)
    {
        var job = JsonNode.Parse(File.ReadAllText(path))!["job"]!;
        Assert.Equal(items, job["items"]!.GetValue<int>());
        var completions = job["completions"]!.AsArray().Select(c => c!.GetValue<int>()).ToList();
        Assert.Equal(Enumerable.Repeat(1, items), completions); // every item recorded exactly once
        if (retried) Assert.True(job["items_retried"]!.GetValue<int>() >= 1, $"the killed worker's item was redone: {job}");
        Assert.True(job["workers_seen"]!.GetValue<int>() >= 2, job.ToJsonString());
    }

    [Fact]
    public void AnUnreachableRedisIsOneClearErrorNamingIt()
    {
        int closed = FreePort(); // nothing listens there
        string json = Path.Combine(_dir, "x.json");
        var r = CliTestHelper.Run("sweep", "--redis", $"127.0.0.1:{closed}", "--model", Golden.Dir, "--analysis", "dla",
            "--clean", SweepTestData.PromptFiles(_dir, 2).Clean, "--json", json);
        Assert.Equal(1, r.Code);
        Assert.Contains($"Cannot reach Redis at 127.0.0.1:{closed}", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.False(File.Exists(json));
        r = CliTestHelper.Run("worker", "--redis", $"127.0.0.1:{closed}");
        Assert.Equal(1, r.Code);
        Assert.Contains($"Cannot reach Redis at 127.0.0.1:{closed}", r.Err);
    }

    public void Dispose()
    {
        foreach (var p in _processes)
        {
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); p.WaitForExit(5000); } catch (InvalidOperationException) { }
            p.Dispose();
        }
        try { Directory.Delete(_dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
