using Orleans.Runtime;

namespace SharpLens.Cluster;

/// <summary>The coordinator of one sweep job (keyed by job id): owns the work-item ledger, persisted after every change.</summary>
public interface ISweepJobGrain : IGrainWithStringKey
{
    /// <summary>Starts the job (idempotent for the same job).</summary>
    Task<JobStatus> Submit(SweepSpec spec);
    /// <summary>The job's specification, or null when no job has this id.</summary>
    Task<SweepSpec?> Spec();
    /// <summary>The next item for a worker, or null (nothing pending, or the worker was refused).</summary>
    Task<WorkLease?> Lease(WorkerIdentity worker);
    /// <summary>Extends a worker's lease; false when the item is no longer that worker's.</summary>
    Task<bool> Renew(int item, string workerId);
    /// <summary>Returns an unfinished item to the queue (a draining worker).</summary>
    Task Release(int item, string workerId);
    /// <summary>Reports that computing an item threw; the job fails after a few failures of one item.</summary>
    Task Fail(int item, string workerId, string error);
    /// <summary>Records an item's result; true the first time only.</summary>
    Task<bool> Complete(int item, string workerId, string result);
    /// <summary>Progress.</summary>
    Task<JobStatus> Status();
    /// <summary>Every item's result in dataset order (the job must be finished).</summary>
    Task<string[]> Results();
}

/// <summary>The list of unfinished jobs that workers poll (one grain, key 0).</summary>
public interface IJobDirectoryGrain : IGrainWithIntegerKey
{
    /// <summary>Adds a job.</summary>
    Task Add(string jobId);
    /// <summary>Removes a finished job.</summary>
    Task Remove(string jobId);
    /// <summary>Unfinished jobs, oldest first.</summary>
    Task<string[]> Active();
}

/// <summary>Persisted state of <see cref="JobDirectoryGrain"/>.</summary>
[GenerateSerializer]
public sealed class JobDirectoryState
{
    /// <summary>Unfinished job ids.</summary>
    [Id(0)] public List<string> Jobs { get; set; } = [];
}

/// <summary><see cref="IJobDirectoryGrain"/>.</summary>
public sealed class JobDirectoryGrain([PersistentState("directory", SweepHost.StorageName)] IPersistentState<JobDirectoryState> state)
    : Grain, IJobDirectoryGrain
{
    /// <inheritdoc/>
    public async Task Add(string jobId)
    {
        if (state.State.Jobs.Contains(jobId)) return;
        state.State.Jobs.Add(jobId);
        await state.WriteStateAsync();
    }

    /// <inheritdoc/>
    public async Task Remove(string jobId)
    {
        if (state.State.Jobs.Remove(jobId)) await state.WriteStateAsync();
    }

    /// <inheritdoc/>
    public Task<string[]> Active() => Task.FromResult(state.State.Jobs.ToArray());
}

/// <summary>
/// <see cref="ISweepJobGrain"/>: a thin persistence wrapper around <see cref="JobLedger"/>. Before handing out work it
/// asks Orleans's membership which silos are still alive, so an item held by a silo that left the cluster (killed,
/// crashed, partitioned) is redone by another; a lease that is not renewed in time is reclaimed too.
/// </summary>
public sealed class SweepJobGrain(
    [PersistentState("ledger", SweepHost.StorageName)] IPersistentState<JobLedger> state,
    IClusterMembershipService membership) : Grain, ISweepJobGrain
{
    private JobLedger Ledger => state.State;

    private TimeSpan LeaseTime => TimeSpan.FromSeconds(Math.Max(1, Ledger.Spec?.LeaseSeconds ?? 30));

    /// <inheritdoc/>
    public async Task<JobStatus> Submit(SweepSpec spec)
    {
        bool fresh = Ledger.Spec is null;
        Ledger.Submit(spec);
        if (fresh) await state.WriteStateAsync();
        return Ledger.Status();
    }

    /// <inheritdoc/>
    public Task<SweepSpec?> Spec() => Task.FromResult(Ledger.Spec);

    /// <inheritdoc/>
    public async Task<WorkLease?> Lease(WorkerIdentity worker)
    {
        if (Ledger.Spec is null) return null;
        int refusals = Ledger.Refusals.Count;
        var lease = Ledger.Lease(worker, DateTime.UtcNow, LeaseTime, SiloAlive);
        if (lease is not null || Ledger.Refusals.Count != refusals) await state.WriteStateAsync();
        return lease;
    }

    /// <inheritdoc/>
    // Renewals are not persisted: a restarted coordinator gives running items the lease time they had when persisted.
    public Task<bool> Renew(int item, string workerId) => Task.FromResult(Ledger.Renew(item, workerId, DateTime.UtcNow, LeaseTime));

    /// <inheritdoc/>
    public async Task Release(int item, string workerId)
    {
        Ledger.Release(item, workerId);
        await state.WriteStateAsync();
    }

    /// <inheritdoc/>
    public async Task Fail(int item, string workerId, string error)
    {
        Ledger.Fail(item, workerId, error);
        await state.WriteStateAsync();
        if (Ledger.Error is not null) await GrainFactory.GetGrain<IJobDirectoryGrain>(0).Remove(this.GetPrimaryKeyString());
    }

    /// <inheritdoc/>
    public async Task<bool> Complete(int item, string workerId, string result)
    {
        bool first = Ledger.Complete(item, workerId, result);
        await state.WriteStateAsync();
        if (Ledger.Status().Finished) await GrainFactory.GetGrain<IJobDirectoryGrain>(0).Remove(this.GetPrimaryKeyString());
        return first;
    }

    /// <inheritdoc/>
    public Task<JobStatus> Status() => Task.FromResult(Ledger.Status());

    /// <inheritdoc/>
    public Task<string[]> Results() => Task.FromResult(Ledger.Results().ToArray());

    private bool SiloAlive(string silo)
    {
        foreach (var (address, member) in membership.CurrentSnapshot.Members)
            if (address.ToParsableString() == silo) return member.Status != SiloStatus.Dead;
        return false; // not a member of this cluster (e.g. from before a full restart)
    }
}
