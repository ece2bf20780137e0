using SharpLens.Cluster;

namespace SharpLens.Tests.Cluster;

public sealed class JobLedgerTests
{
    private static readonly DateTime T0 = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    private static SweepSpec Spec(int prompts = 10, int batch = 3) => new()
    {
        JobId = "job", Model = "m", Analysis = SweepAnalysis.Dla, BatchSize = batch, ModelHash = "hash", Version = "1.0", NLayers = 2, NHeads = 4,
        Prompts = Enumerable.Range(0, prompts).Select(i => new SweepPrompt
        {
            Prompt = $"p{i}", Correct = "a", Incorrect = "b", Ids = [1, 2, i], CorrectId = 1, IncorrectId = 2,
        }).ToArray(),
    };

    private static WorkerIdentity Worker(string id, string silo = "", string version = "1.0", string hash = "hash") =>
        new() { WorkerId = id, Silo = silo, Version = version, ModelHash = hash };

    private static bool Alive(string _) => true;

    [Fact]
    public void ItemsCoverTheDatasetInOrderAndEachIsHandedOutOnce()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec(prompts: 10, batch: 3));
        Assert.Equal(4, ledger.Items.Count);
        Assert.Equal(["p9"], ledger.Spec!.ItemPrompts(3).Select(p => p.Prompt));
        var items = Enumerable.Range(0, 4).Select(_ => ledger.Lease(Worker("w"), T0, Lease, Alive)!.Item).ToList();
        Assert.Equal([0, 1, 2, 3], items);
        Assert.Null(ledger.Lease(Worker("w2"), T0, Lease, Alive));
    }

    [Fact]
    public void AResultIsRecordedExactlyOnceAndLateDuplicatesAreIgnored()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec(prompts: 3, batch: 3));
        var lease = ledger.Lease(Worker("a"), T0, Lease, Alive)!;
        // a's lease lapses, b redoes the item, then a comes back with its (identical) result.
        var again = ledger.Lease(Worker("b"), T0 + Lease + TimeSpan.FromSeconds(1), Lease, Alive)!;
        Assert.Equal(lease.Item, again.Item);
        Assert.Equal(2, again.Attempt);
        Assert.True(ledger.Complete(again.Item, "b", "{\"r\":1}"));
        Assert.False(ledger.Complete(lease.Item, "a", "{\"r\":2}"));
        var status = ledger.Status();
        Assert.True(status.Finished);
        Assert.Equal([1], status.Completions);
        Assert.Equal(1, status.ItemsRetried);
        Assert.Equal(1, status.LateResults);
        Assert.Equal(["{\"r\":1}"], ledger.Results());
        Assert.Equal("b", ledger.Items[0].CompletedBy);
    }

    [Fact]
    public void AnItemHeldByADeadSiloGoesBackToTheQueueAtOnce()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec(prompts: 2, batch: 1));
        Assert.Equal(0, ledger.Lease(Worker("a", "silo-a"), T0, Lease, Alive)!.Item);
        Assert.Equal(1, ledger.Lease(Worker("b", "silo-b"), T0, Lease, Alive)!.Item);
        // Well within the lease time, but silo-a has left the cluster.
        var next = ledger.Lease(Worker("b", "silo-b"), T0 + TimeSpan.FromSeconds(1), Lease, silo => silo != "silo-a");
        Assert.Equal(0, next!.Item);
        Assert.False(ledger.Renew(0, "a", T0, Lease));
        Assert.True(ledger.Renew(0, "b", T0, Lease));
    }

    [Fact]
    public void RenewingKeepsALeaseAndReleasingReturnsTheItem()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec(prompts: 1, batch: 1));
        ledger.Lease(Worker("a"), T0, Lease, Alive);
        Assert.True(ledger.Renew(0, "a", T0 + TimeSpan.FromSeconds(8), Lease));
        Assert.Null(ledger.Lease(Worker("b"), T0 + TimeSpan.FromSeconds(15), Lease, Alive)); // renewed until 18 s
        ledger.Release(0, "a");
        Assert.Equal(0, ledger.Lease(Worker("b"), T0 + TimeSpan.FromSeconds(15), Lease, Alive)!.Item);
    }

    [Fact]
    public void WorkersWithAnotherVersionOrModelAreRefusedAndSaySo()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec());
        Assert.Null(ledger.Lease(Worker("old", version: "0.9"), T0, Lease, Alive));
        Assert.Null(ledger.Lease(Worker("other", hash: "abcdef0123456789"), T0, Lease, Alive));
        var status = ledger.Status();
        Assert.Equal(0, status.Leased);
        Assert.Contains(status.Refusals, r => r.Contains("runs SharpLens 0.9, the job needs 1.0"));
        Assert.Contains(status.Refusals, r => r.Contains("different model (hash abcdef012345"));
        Assert.Empty(status.WorkersSeen);
    }

    [Fact]
    public void ResubmittingIsANoOpButAnotherSpecUnderTheSameIdFails()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec());
        ledger.Lease(Worker("a"), T0, Lease, Alive);
        ledger.Submit(Spec());
        Assert.Equal(1, ledger.Status().Leased);
        Assert.Throws<InvalidOperationException>(() => ledger.Submit(Spec(prompts: 5)));
        Assert.Throws<InvalidOperationException>(() => ledger.Results());
    }

    [Fact]
    public void AnItemThatKeepsFailingFailsTheJobInsteadOfRetryingForever()
    {
        var ledger = new JobLedger();
        ledger.Submit(Spec(prompts: 2, batch: 1));
        for (int attempt = 1; attempt <= JobLedger.MaxFailures; attempt++)
        {
            Assert.Null(ledger.Status().Error);
            var lease = ledger.Lease(Worker("a"), T0, Lease, Alive)!;
            Assert.Equal(0, lease.Item); // a failed item goes back to the front of the queue
            ledger.Fail(lease.Item, "a", "boom");
        }
        Assert.Contains("work item 0 failed 3 times", ledger.Status().Error);
        Assert.Contains("boom", ledger.Status().Error);
        Assert.Null(ledger.Lease(Worker("b"), T0, Lease, Alive)); // nothing more is handed out
    }
}
