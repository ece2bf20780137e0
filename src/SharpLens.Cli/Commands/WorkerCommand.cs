using System.CommandLine;
using System.Net;
using SharpLens.Cli.Sweep;
using SharpLens.Cluster;
using Microsoft.Extensions.Hosting;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens worker</c>: a silo that joins a sweep cluster and computes work items until stopped.</summary>
internal sealed class WorkerCommand : CliCommand
{
    public override string Name => "worker";
    public override string Summary => "Join a sweep cluster (Redis) and compute work items until Ctrl+C.";
    public override string Details => """
        Joins the Orleans cluster ID whose membership and job ledgers live in Redis, and computes work items of
        'sharplens sweep' jobs with models loaded once per worker. Ctrl+C drains: the item in hand is finished and
        recorded before the worker leaves.
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("redis", "HOST:PORT", "the Redis holding cluster membership and job ledgers", required: true),
        Opt.Value("cluster-id", "ID", "cluster to join (default sharplens; clusters may share one Redis)"),
        Opt.Value("host", "IP", "address other machines reach this worker at (default 127.0.0.1: one machine)"),
        Opt.Value("port", "N", "silo-to-silo port (default: a free one)"),
        Opt.Value("gateway-port", "N", "client gateway port (default: a free one)"),
        Opt.Value("threads", "N", "libtorch threads for this worker (default: libtorch's choice)"),
    ];

    protected override async Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string redis = args.Required("redis");
        string clusterId = args.Option("cluster-id") ?? "sharplens";
        string hostText = args.Option("host") ?? "127.0.0.1";
        int port = args.Int("port", 0, min: 0), gatewayPort = args.Int("gateway-port", 0, min: 0), threads = args.Int("threads", 0, min: 0);
        args.RejectUnknown();
        if (!IPAddress.TryParse(hostText, out var address)) throw new CliUsageException($"--host '{hostText}' is not an IP address.");
        if (threads > 0) TorchSharp.torch.set_num_threads(threads);

        var settings = new SweepWorkerSettings { Log = line => stderr.WriteLine($"[sharplens] {line}") };
        using var host = await SweepHost.StartWorkerAsync(new WorkerOptions
        {
            Redis = redis, ClusterId = clusterId, AdvertisedAddress = address, SiloPort = port, GatewayPort = gatewayPort,
        }, new CliModelSource(stderr), settings);
        stderr.WriteLine($"[sharplens] worker joined cluster '{clusterId}' (Redis {redis}) as {address}; Ctrl+C to stop.");
        await host.WaitForShutdownAsync();
        stderr.WriteLine("[sharplens] worker stopped.");
        return 130;
    }
}
