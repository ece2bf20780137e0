namespace SharpLens.Cluster;

/// <summary>The client side of a sweep: submit a job, follow its progress, collect the items' results.</summary>
public static class SweepRunner
{
    /// <summary>Submits <paramref name="spec"/> and waits until every item is done.</summary>
    public static async Task<(JobStatus Status, string[] Results)> RunAsync(IGrainFactory grains, SweepSpec spec,
        IProgress<JobStatus>? progress = null, CancellationToken ct = default)
    {
        await grains.GetGrain<ISweepJobGrain>(spec.JobId).Submit(spec);
        await grains.GetGrain<IJobDirectoryGrain>(0).Add(spec.JobId);
        return await WaitAsync(grains, spec.JobId, progress, ct);
    }

    /// <summary>Reattaches to a running or finished job.</summary>
    public static async Task<(SweepSpec Spec, JobStatus Status, string[] Results)> ResumeAsync(IGrainFactory grains, string jobId,
        IProgress<JobStatus>? progress = null, CancellationToken ct = default)
    {
        var spec = await grains.GetGrain<ISweepJobGrain>(jobId).Spec()
            ?? throw new SharpLensException($"No sweep job '{jobId}' in this cluster (check --redis and --cluster-id; an in-process sweep cannot be resumed).");
        var (status, results) = await WaitAsync(grains, jobId, progress, ct);
        return (spec, status, results);
    }

    private static async Task<(JobStatus, string[])> WaitAsync(IGrainFactory grains, string jobId, IProgress<JobStatus>? progress, CancellationToken ct)
    {
        var job = grains.GetGrain<ISweepJobGrain>(jobId);
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                var status = await job.Status();
                progress?.Report(status);
                if (status.Error is not null) throw new SharpLensException($"Sweep {jobId} failed: {status.Error}");
                if (status.Finished) return (status, await job.Results());
            }
            catch (Exception e) when (e is not OperationCanceledException && e is not SharpLensException)
            {
                // The coordinator's silo may have died; Orleans reactivates it elsewhere from the persisted ledger.
            }
            await Task.Delay(TimeSpan.FromMilliseconds(400), ct);
        }
    }
}
