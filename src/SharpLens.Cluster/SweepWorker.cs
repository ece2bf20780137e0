using System.Collections.Concurrent;
using System.Reflection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;
using SharpLens.Model;
using SharpLens.Sae;
using static TorchSharp.torch;

namespace SharpLens.Cluster;

/// <summary>Loads the model a job names; the CLI resolves names and folders as its other commands do.</summary>
public interface ISweepModelSource
{
    /// <summary>
    /// Loads <paramref name="model"/> (with or without weight processing, in <paramref name="dtype"/>) and returns it with its
    /// content hash (<see cref="ModelIdentity.Hash"/>, which covers processing and dtype).
    /// </summary>
    (HookedTransformer Model, string Hash) Load(string model, bool noProcessing, ScalarType dtype);
}

/// <summary>How a worker runs.</summary>
public sealed class SweepWorkerSettings
{
    /// <summary>Pause between polls when there is no work.</summary>
    public TimeSpan IdlePoll { get; init; } = TimeSpan.FromMilliseconds(250);
    /// <summary>Test hook: sleep this long before computing each item (SHARPLENS_SWEEP_ITEM_DELAY_MS), so kill timing is controllable.</summary>
    public TimeSpan ItemDelay { get; init; } = TimeSpan.FromMilliseconds(
        int.TryParse(Environment.GetEnvironmentVariable("SHARPLENS_SWEEP_ITEM_DELAY_MS"), out int ms) && ms > 0 ? ms : 0);
    /// <summary>Called with a line whenever the worker starts or finishes an item (the CLI prints it).</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>
/// The worker of one silo: polls the job directory, takes work items from job coordinators, computes them with a model
/// loaded once per silo (keyed by model + processing + dtype), renews its lease while computing, and records the result. On
/// shutdown (Ctrl+C) it finishes the item in hand before the silo leaves.
/// </summary>
public sealed class SweepWorker(IGrainFactory grains, ILocalSiloDetails silo, ISweepModelSource models, SweepWorkerSettings settings,
    ILogger<SweepWorker> logger) : BackgroundService
{
    private readonly ConcurrentDictionary<(string, bool, ScalarType), (HookedTransformer Model, string Hash)> _models = new();
    private readonly Dictionary<string, string> _unworkable = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SweepSpec> _specs = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string?), SparseAutoencoder> _saes = [];
    private readonly string _workerId = $"{silo.SiloAddress.ToParsableString()}/pid{Environment.ProcessId}";

    /// <summary>The SharpLens version a worker reports (informational version of the SharpLens assembly).</summary>
    public static string Version { get; } =
        typeof(HookedTransformer).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(HookedTransformer).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var directory = grains.GetGrain<IJobDirectoryGrain>(0);
        while (!stoppingToken.IsCancellationRequested)
        {
            bool worked = false;
            try
            {
                foreach (var jobId in await directory.Active())
                {
                    if (stoppingToken.IsCancellationRequested) break;
                    if (_unworkable.ContainsKey(jobId)) continue;
                    try
                    {
                        if (await TryWorkOn(grains.GetGrain<ISweepJobGrain>(jobId), jobId)) { worked = true; break; }
                    }
                    catch (SharpLensException e)
                    {
                        // This worker cannot load the job's model (or SAE); it stays available for the other jobs.
                        _unworkable[jobId] = e.Message;
                        settings.Log?.Invoke($"job {jobId}: skipped by this worker: {e.Message}");
                    }
                }
            }
            catch (Exception e) when (e is not OperationCanceledException && e is not SharpLensException)
            {
                // A coordinator whose silo just died is unreachable until the cluster declares that silo dead: retry.
                logger.LogWarning("sweep worker: {Message}; retrying", e.Message);
                settings.Log?.Invoke($"waiting for the cluster: {e.GetType().Name}: {e.Message}");
            }
            catch (SharpLensException e)
            {
                settings.Log?.Invoke($"error: {e.Message}");
            }
            if (!worked)
                try { await Task.Delay(settings.IdlePoll, stoppingToken); } catch (OperationCanceledException) { }
        }
        foreach (var (model, _) in _models.Values) model.Dispose();
        foreach (var sae in _saes.Values) sae.Dispose();
    }

    private async Task<bool> TryWorkOn(ISweepJobGrain job, string jobId)
    {
        if (!_specs.TryGetValue(jobId, out var spec))
        {
            if (await job.Spec() is not { } s) return false;
            _specs[jobId] = spec = s;
        }
        var (model, hash) = _models.GetOrAdd((spec.Model, spec.NoProcessing, ModelDtype.Parse(spec.Dtype)),
            key => models.Load(key.Item1, key.Item2, key.Item3));
        SparseAutoencoder? sae = null;
        if (spec.Sae is { } location && !_saes.TryGetValue((location, spec.SaeHook), out sae))
            _saes[(location, spec.SaeHook)] = sae = SparseAutoencoder.Load(location, spec.SaeHook);
        var me = new WorkerIdentity
        {
            WorkerId = _workerId, Silo = silo.SiloAddress.ToParsableString(), Version = Version,
            ModelHash = sae is null ? hash : ModelIdentity.Combine(hash, ModelIdentity.HashSae(spec.Sae!)),
        };
        if (await job.Lease(me) is not { } lease) return false;

        settings.Log?.Invoke($"job {jobId}: item {lease.Item + 1}/{spec.ItemCount} (attempt {lease.Attempt})");
        using var renewing = new CancellationTokenSource();
        var renewLoop = RenewLoop(job, lease.Item, TimeSpan.FromSeconds(Math.Max(1, spec.LeaseSeconds) / 4.0), renewing.Token);
        string result;
        try
        {
            if (settings.ItemDelay > TimeSpan.Zero) await Task.Delay(settings.ItemDelay);
            result = await Task.Run(() => SweepAnalyses.RunItem(model, spec, lease.Item, sae));
        }
        catch (Exception e)
        {
            renewing.Cancel();
            string error = e is SharpLensException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            if (Environment.GetEnvironmentVariable("SHARPLENS_DEBUG") == "1") error += "\n" + e;
            settings.Log?.Invoke($"job {jobId}: item {lease.Item + 1} failed: {error}");
            await job.Fail(lease.Item, _workerId, error);
            return true;
        }
        finally
        {
            renewing.Cancel();
            await renewLoop;
        }
        bool recorded = await job.Complete(lease.Item, _workerId, result);
        settings.Log?.Invoke($"job {jobId}: item {lease.Item + 1} done{(recorded ? "" : " (already recorded by another worker; ignored)")}");
        return true;
    }

    private async Task RenewLoop(ISweepJobGrain job, int item, TimeSpan every, CancellationToken ct)
    {
        try
        {
            while (!ct.IsCancellationRequested)
            {
                await Task.Delay(every, ct);
                // A failed renewal is retried on the next tick; a lease that lapses only means the item may be redone.
                try { await job.Renew(item, _workerId); } catch (Exception) when (!ct.IsCancellationRequested) { }
            }
        }
        catch (OperationCanceledException) { }
    }
}
