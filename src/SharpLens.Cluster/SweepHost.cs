using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using StackExchange.Redis;

namespace SharpLens.Cluster;

/// <summary>Where a worker silo listens and which cluster it joins.</summary>
public sealed class WorkerOptions
{
    /// <summary>Redis <c>HOST:PORT</c> for membership and the job ledger.</summary>
    public required string Redis { get; init; }
    /// <summary>Cluster id (several clusters can share one Redis).</summary>
    public string ClusterId { get; init; } = "sharplens";
    /// <summary>Address other silos and clients reach this silo at.</summary>
    public IPAddress AdvertisedAddress { get; init; } = IPAddress.Loopback;
    /// <summary>Silo-to-silo port (0: a free one).</summary>
    public int SiloPort { get; init; }
    /// <summary>Client gateway port (0: a free one).</summary>
    public int GatewayPort { get; init; }
}

/// <summary>
/// Builds the Orleans hosts of a sweep: a worker silo that joins a Redis-backed cluster, a client of that cluster, or
/// one in-process silo (localhost clustering, in-memory ledger) that runs a sweep with the same grains and semantics.
/// </summary>
public static class SweepHost
{
    /// <summary>Name of the grain storage holding ledgers and the job directory.</summary>
    public const string StorageName = "sweeps";

    private const string ServiceId = "sharplens-sweeps";

    /// <summary>A worker silo in a Redis cluster. Fails with a clear message when Redis cannot be reached.</summary>
    public static async Task<IHost> StartWorkerAsync(WorkerOptions o, ISweepModelSource models, SweepWorkerSettings settings, CancellationToken ct = default)
    {
        var redis = await RedisOptions(o.Redis);
        int siloPort = o.SiloPort == 0 ? FreePort() : o.SiloPort, gatewayPort = o.GatewayPort == 0 ? FreePort() : o.GatewayPort;
        var host = Host.CreateDefaultBuilder()
            .ConfigureLogging(l => l.ClearProviders())
            .UseOrleans(silo =>
            {
                silo.UseRedisClustering(c => c.ConfigurationOptions = redis)
                    .AddRedisGrainStorage(StorageName, s => s.ConfigurationOptions = redis)
                    .Configure<ClusterOptions>(c => { c.ClusterId = o.ClusterId; c.ServiceId = ServiceId; })
                    .ConfigureEndpoints(o.AdvertisedAddress, siloPort, gatewayPort, listenOnAnyHostAddress: !IPAddress.IsLoopback(o.AdvertisedAddress));
                FastFailureDetection(silo);
            })
            .ConfigureServices(s => s.AddSingleton(models).AddSingleton(settings).AddHostedService<SweepWorker>())
            .Build();
        await host.StartAsync(ct);
        return host;
    }

    /// <summary>A client of a Redis cluster (what <c>sharplens sweep --redis</c> uses).</summary>
    public static async Task<IHost> StartClientAsync(string redisEndpoint, string clusterId, CancellationToken ct = default)
    {
        var redis = await RedisOptions(redisEndpoint);
        var host = Host.CreateDefaultBuilder()
            .ConfigureLogging(l => l.ClearProviders())
            .UseOrleansClient(c => c.UseRedisClustering(r => r.ConfigurationOptions = redis)
                .Configure<ClusterOptions>(x => { x.ClusterId = clusterId; x.ServiceId = ServiceId; }))
            .Build();
        try
        {
            await host.StartAsync(ct);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            throw new SharpLensException($"Cannot join cluster '{clusterId}' through Redis at {redisEndpoint}: {e.Message} " +
                "Is at least one 'sharplens worker' running with the same --redis and --cluster-id?");
        }
        return host;
    }

    /// <summary>One silo in this process with an in-memory ledger and one worker: a sweep without Redis.</summary>
    public static async Task<IHost> StartInProcessAsync(ISweepModelSource models, SweepWorkerSettings settings, CancellationToken ct = default)
    {
        int siloPort = FreePort(), gatewayPort = FreePort();
        var host = Host.CreateDefaultBuilder()
            .ConfigureLogging(l => l.ClearProviders())
            .UseOrleans(silo => silo
                .UseLocalhostClustering(siloPort, gatewayPort, serviceId: ServiceId, clusterId: $"inproc-{Environment.ProcessId}-{siloPort}")
                .AddMemoryGrainStorage(StorageName))
            .ConfigureServices(s => s.AddSingleton(models).AddSingleton(settings).AddHostedService<SweepWorker>())
            .Build();
        await host.StartAsync(ct);
        return host;
    }

    /// <summary>Parses <c>HOST:PORT</c> and checks Redis answers, so an unreachable Redis is one clear error, not a hang.</summary>
    public static async Task<ConfigurationOptions> RedisOptions(string endpoint)
    {
        ConfigurationOptions options;
        try { options = ConfigurationOptions.Parse(endpoint); }
        catch (Exception e) { throw new SharpLensException($"--redis '{endpoint}' is not a Redis endpoint (expected HOST:PORT): {e.Message}"); }
        if (options.EndPoints.Count == 0) throw new SharpLensException($"--redis '{endpoint}' names no endpoint (expected HOST:PORT).");
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = 3000;
        var probe = options.Clone();
        probe.AbortOnConnectFail = true;
        try
        {
            using var connection = await ConnectionMultiplexer.ConnectAsync(probe);
            await connection.GetDatabase().PingAsync();
        }
        catch (Exception e) when (e is RedisException or SocketException or TimeoutException)
        {
            throw new SharpLensException($"Cannot reach Redis at {endpoint}: {FirstLine(e.Message)} Start one (e.g. 'redis-server --port 6379') or pass the right --redis HOST:PORT.");
        }
        return options;
    }

    // Detect a dead silo in a few seconds instead of the default ~30 s, so its items are redone promptly.
    private static void FastFailureDetection(ISiloBuilder silo) => silo.Configure<ClusterMembershipOptions>(m =>
    {
        m.ProbeTimeout = TimeSpan.FromSeconds(2);
        m.NumMissedProbesLimit = 3;
        m.NumVotesForDeathDeclaration = 1;
        m.DefunctSiloCleanupPeriod = null;
    });

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();
}
