namespace SharpLens.Cluster;

/// <summary>State of one work item in the ledger.</summary>
[GenerateSerializer]
public sealed class ItemRecord
{
    /// <summary>Worker holding the item now (null when pending or done).</summary>
    [Id(0)] public string? LeasedTo { get; set; }
    /// <summary>Silo of that worker.</summary>
    [Id(1)] public string? LeaseSilo { get; set; }
    /// <summary>When the lease runs out unless renewed (UTC ticks).</summary>
    [Id(2)] public long LeaseExpiresTicks { get; set; }
    /// <summary>How many times the item was handed out.</summary>
    [Id(3)] public int Attempts { get; set; }
    /// <summary>The worker whose result was recorded.</summary>
    [Id(4)] public string? CompletedBy { get; set; }
    /// <summary>The item's result (JSON), recorded once.</summary>
    [Id(5)] public string? Result { get; set; }
    /// <summary>Results that arrived after one was recorded (ignored; a retried item's first worker came back).</summary>
    [Id(6)] public int LateResults { get; set; }
    /// <summary>Times computing the item threw (an error, not a lost worker).</summary>
    [Id(7)] public int Failures { get; set; }

    /// <summary>True once a result is recorded.</summary>
    public bool Done => Result is not null;
}

/// <summary>
/// The work-item ledger of one sweep job: which item is pending, leased (to whom, until when) or done. Pure logic
/// with serializable state, so the coordinator grain persists it after every change and a restarted coordinator
/// resumes exactly where it was. A completed item is recorded once (idempotent by item id); an item whose worker's
/// silo left the cluster, or whose lease ran out, goes back to the queue.
/// </summary>
[GenerateSerializer]
public sealed class JobLedger
{
    /// <summary>The job (null until submitted).</summary>
    [Id(0)] public SweepSpec? Spec { get; set; }
    /// <summary>One record per work item.</summary>
    [Id(1)] public List<ItemRecord> Items { get; set; } = [];
    /// <summary>Workers that took an item, in order of first appearance.</summary>
    [Id(2)] public List<string> WorkersSeen { get; set; } = [];
    /// <summary>Refusal messages (version / model mismatch), latest last.</summary>
    [Id(3)] public List<string> Refusals { get; set; } = [];
    /// <summary>Why the job failed (an item failed <see cref="MaxFailures"/> times), or null.</summary>
    [Id(4)] public string? Error { get; set; }

    /// <summary>Failures of one item after which the job fails instead of retrying a deterministic error forever.</summary>
    public const int MaxFailures = 3;

    /// <summary>Starts the job; submitting the same job again is a no-op, a different spec under the same id an error.</summary>
    public void Submit(SweepSpec spec)
    {
        if (Spec is not null)
        {
            if (Spec.JobId != spec.JobId || Spec.Prompts.Length != spec.Prompts.Length || Spec.ModelHash != spec.ModelHash || Spec.Analysis != spec.Analysis)
                throw new InvalidOperationException($"Job '{spec.JobId}' already exists with another specification.");
            return;
        }
        if (spec.Prompts.Length == 0) throw new ArgumentException("A sweep needs at least one prompt.");
        if (spec.BatchSize < 1) throw new ArgumentException("Batch size must be at least 1.");
        Spec = spec;
        Items = Enumerable.Range(0, spec.ItemCount).Select(_ => new ItemRecord()).ToList();
    }

    /// <summary>
    /// Hands the next pending item to <paramref name="worker"/>, first returning to the queue every item whose lease ran
    /// out or whose silo is gone (<paramref name="siloAlive"/>). Null when nothing is pending or the worker is refused
    /// (its version or model differs: it could not reproduce the job's numbers exactly).
    /// </summary>
    public WorkLease? Lease(WorkerIdentity worker, DateTime nowUtc, TimeSpan leaseTime, Func<string, bool> siloAlive)
    {
        var spec = Spec ?? throw new InvalidOperationException("The job has not been submitted.");
        if (worker.Version != spec.Version || worker.ModelHash != spec.ModelHash)
        {
            string why = worker.Version != spec.Version
                ? $"worker {worker.WorkerId} runs SharpLens {worker.Version}, the job needs {spec.Version}"
                : $"worker {worker.WorkerId} loaded a different model (hash {Short(worker.ModelHash)}, the job's is {Short(spec.ModelHash)})";
            if (!Refusals.Contains(why)) Refusals.Add(why);
            return null;
        }
        if (Error is not null) return null;
        Reclaim(nowUtc, siloAlive);
        int i = Items.FindIndex(r => !r.Done && r.LeasedTo is null);
        if (i < 0) return null;
        var rec = Items[i];
        rec.LeasedTo = worker.WorkerId;
        rec.LeaseSilo = worker.Silo;
        rec.LeaseExpiresTicks = (nowUtc + leaseTime).Ticks;
        rec.Attempts++;
        if (!WorkersSeen.Contains(worker.WorkerId)) WorkersSeen.Add(worker.WorkerId);
        return new WorkLease(i, rec.Attempts);
    }

    /// <summary>Extends a lease while its worker computes; false when the item is no longer this worker's.</summary>
    public bool Renew(int item, string workerId, DateTime nowUtc, TimeSpan leaseTime)
    {
        var rec = Record(item);
        if (rec.Done || rec.LeasedTo != workerId) return false;
        rec.LeaseExpiresTicks = (nowUtc + leaseTime).Ticks;
        return true;
    }

    /// <summary>Gives an item back unfinished (a draining worker).</summary>
    public void Release(int item, string workerId)
    {
        var rec = Record(item);
        if (!rec.Done && rec.LeasedTo == workerId) { rec.LeasedTo = null; rec.LeaseSilo = null; }
    }

    /// <summary>
    /// Records that computing an item threw: the item goes back to the queue, and after <see cref="MaxFailures"/>
    /// failures the whole job fails with <paramref name="error"/> (the same input would fail the same way again).
    /// </summary>
    public void Fail(int item, string workerId, string error)
    {
        var rec = Record(item);
        if (rec.Done) return;
        if (rec.LeasedTo == workerId) { rec.LeasedTo = null; rec.LeaseSilo = null; }
        if (++rec.Failures >= MaxFailures && Error is null)
            Error = $"work item {item} failed {rec.Failures} times; last error (worker {workerId}): {error}";
    }

    /// <summary>Records an item's result; true the first time, false (ignored) for any later result of the same item.</summary>
    public bool Complete(int item, string workerId, string result)
    {
        var rec = Record(item);
        if (rec.Done) { rec.LateResults++; return false; }
        rec.Result = result;
        rec.CompletedBy = workerId;
        rec.LeasedTo = null;
        rec.LeaseSilo = null;
        return true;
    }

    /// <summary>Returns to the queue items whose lease expired or whose silo left the cluster.</summary>
    public int Reclaim(DateTime nowUtc, Func<string, bool> siloAlive)
    {
        int n = 0;
        foreach (var rec in Items.Where(r => !r.Done && r.LeasedTo is not null))
            if (rec.LeaseExpiresTicks < nowUtc.Ticks || (!string.IsNullOrEmpty(rec.LeaseSilo) && !siloAlive(rec.LeaseSilo)))
            {
                rec.LeasedTo = null;
                rec.LeaseSilo = null;
                n++;
            }
        return n;
    }

    /// <summary>The job's progress.</summary>
    public JobStatus Status() => new()
    {
        JobId = Spec?.JobId ?? "",
        Items = Items.Count,
        Done = Items.Count(r => r.Done),
        Leased = Items.Count(r => !r.Done && r.LeasedTo is not null),
        Prompts = Spec?.Prompts.Length ?? 0,
        PromptsDone = Spec is null ? 0 : Items.Select((r, i) => r.Done ? Spec.ItemPrompts(i).Count : 0).Sum(),
        WorkersSeen = WorkersSeen.ToArray(),
        ItemsRetried = Items.Count(r => r.Attempts > 1),
        Refusals = Enumerable.Reverse(Refusals).ToArray(),
        Completions = Items.Select(r => r.Done ? 1 : 0).ToArray(),
        LateResults = Items.Sum(r => r.LateResults),
        Error = Error,
    };

    /// <summary>Every item's result in dataset order (the job must be finished).</summary>
    public IReadOnlyList<string> Results() =>
        Items.All(r => r.Done) ? Items.Select(r => r.Result!).ToList()
        : throw new InvalidOperationException($"Job '{Spec?.JobId}' is not finished ({Items.Count(r => r.Done)}/{Items.Count} items).");

    private ItemRecord Record(int item) =>
        item >= 0 && item < Items.Count ? Items[item] : throw new ArgumentOutOfRangeException(nameof(item), $"Item {item} is outside 0..{Items.Count - 1}.");

    private static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;
}
