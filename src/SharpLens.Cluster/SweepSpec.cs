using SharpLens.Model;

namespace SharpLens.Cluster;

/// <summary>The analyses a sweep can run; each states how per-batch results merge (see <see cref="SweepAnalyses"/>).</summary>
public static class SweepAnalysis
{
    /// <summary>Exact activation patching (as <c>sharplens patch</c>): the metric is a mean over prompts, merged weighted by prompt count.</summary>
    public const string Patch = "patch";
    /// <summary>Attribution patching (as <c>sharplens patch --method attribution</c>): the estimates are means over prompts (the metric is the mean logit difference), merged weighted by prompt count.</summary>
    public const string Attribution = "attribution";
    /// <summary>Direct logit attribution (as <c>sharplens dla</c>): per-prompt rows concatenated in dataset order, means weighted by prompt count.</summary>
    public const string Dla = "dla";
    /// <summary>SAE feature statistics over every real token of the dataset: firing counts and activation sums, summed.</summary>
    public const string SaeStats = "sae-stats";

    /// <summary>Every analysis name.</summary>
    public static readonly IReadOnlyList<string> All = [Patch, Attribution, Dla, SaeStats];

    /// <summary>The patching directions: denoising (clean into corrupted, the default) and noising (corrupted into clean).</summary>
    public static readonly IReadOnlyList<string> Directions = ["denoising", "noising"];

    /// <summary>True for the analyses that patch between paired clean and corrupted prompts.</summary>
    public static bool IsPatching(string analysis) => analysis is Patch or Attribution;
}

/// <summary>One prompt of a sweep, already tokenized by the client (so every worker sees the same ids).</summary>
[GenerateSerializer, Immutable]
public sealed record SweepPrompt
{
    /// <summary>The prompt text (or its ids as text for token-id prompts).</summary>
    [Id(0)] public required string Prompt { get; init; }
    /// <summary>The correct answer's string token.</summary>
    [Id(1)] public required string Correct { get; init; }
    /// <summary>The incorrect answer's string token.</summary>
    [Id(2)] public required string Incorrect { get; init; }
    /// <summary>Token ids of the prompt.</summary>
    [Id(3)] public required long[] Ids { get; init; }
    /// <summary>Id of the correct answer.</summary>
    [Id(4)] public required int CorrectId { get; init; }
    /// <summary>Id of the incorrect answer.</summary>
    [Id(5)] public required int IncorrectId { get; init; }
    /// <summary>Token ids of the paired corrupted prompt (patching only).</summary>
    [Id(6)] public long[]? CorruptedIds { get; init; }
}

/// <summary>
/// A sweep job: a model, an analysis and a prompt dataset, split into work items of <see cref="BatchSize"/> prompts.
/// Everything a worker needs is in here (no file paths), so any machine can run any item.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record SweepSpec
{
    /// <summary>Job id (the key of its coordinator grain).</summary>
    [Id(0)] public required string JobId { get; init; }
    /// <summary>Model name or folder, resolved by each worker as <c>sharplens</c> commands do.</summary>
    [Id(1)] public required string Model { get; init; }
    /// <summary>Load without TransformerLens's weight processing.</summary>
    [Id(2)] public bool NoProcessing { get; init; }
    /// <summary>One of <see cref="SweepAnalysis.All"/>.</summary>
    [Id(3)] public required string Analysis { get; init; }
    /// <summary>Patching kind (<c>resid_pre</c>, ...), for <see cref="SweepAnalysis.Patch"/>.</summary>
    [Id(4)] public string? Kind { get; init; }
    /// <summary>How many heads the DLA result lists.</summary>
    [Id(5)] public int TopK { get; init; } = 10;
    /// <summary>Prompts per work item.</summary>
    [Id(6)] public required int BatchSize { get; init; }
    /// <summary>The dataset, in order.</summary>
    [Id(7)] public required SweepPrompt[] Prompts { get; init; }
    /// <summary>Content hash of the model the client loaded; workers with another model refuse the job.</summary>
    [Id(8)] public required string ModelHash { get; init; }
    /// <summary>SharpLens version of the client; workers with another version refuse the job.</summary>
    [Id(9)] public required string Version { get; init; }
    /// <summary>Layers of the model (for the output contract).</summary>
    [Id(10)] public required int NLayers { get; init; }
    /// <summary>Heads per layer (for the output contract).</summary>
    [Id(11)] public required int NHeads { get; init; }
    /// <summary>Seconds a worker may hold an item without renewing its lease before it goes back to the queue.</summary>
    [Id(12)] public int LeaseSeconds { get; init; } = 30;
    /// <summary>The SAE (folder, .npz or Hub <c>org/repo/path</c>), for <see cref="SweepAnalysis.SaeStats"/>.</summary>
    [Id(13)] public string? Sae { get; init; }
    /// <summary>Hook the SAE reads, when its files do not say (Gemma Scope).</summary>
    [Id(14)] public string? SaeHook { get; init; }
    /// <summary>Patching direction, one of <see cref="SweepAnalysis.Directions"/>.</summary>
    [Id(15)] public string Direction { get; init; } = "denoising";
    /// <summary>Parameter and activation dtype of the model (<see cref="ModelDtype.Names"/>); part of the worker's model key and hash.</summary>
    [Id(16)] public string Dtype { get; init; } = "float32";

    /// <summary>Number of work items.</summary>
    public int ItemCount => (Prompts.Length + BatchSize - 1) / BatchSize;

    /// <summary>The prompts of work item <paramref name="item"/>.</summary>
    public IReadOnlyList<SweepPrompt> ItemPrompts(int item) =>
        Prompts.Skip(item * BatchSize).Take(BatchSize).ToList();
}

/// <summary>Who asks for work: a worker on one silo, with the version and the model it would compute with.</summary>
[GenerateSerializer, Immutable]
public sealed record WorkerIdentity
{
    /// <summary>Unique worker id (silo address + process id).</summary>
    [Id(0)] public required string WorkerId { get; init; }
    /// <summary>The silo the worker runs in (Orleans's parsable silo address); empty outside a cluster.</summary>
    [Id(1)] public required string Silo { get; init; }
    /// <summary>The worker's SharpLens version.</summary>
    [Id(2)] public required string Version { get; init; }
    /// <summary>Content hash of the model the worker loaded for the job.</summary>
    [Id(3)] public required string ModelHash { get; init; }
}

/// <summary>A work item handed to a worker.</summary>
[GenerateSerializer, Immutable]
public sealed record WorkLease([property: Id(0)] int Item, [property: Id(1)] int Attempt);

/// <summary>Progress of a job.</summary>
[GenerateSerializer, Immutable]
public sealed record JobStatus
{
    /// <summary>Job id.</summary>
    [Id(0)] public required string JobId { get; init; }
    /// <summary>Work items in all.</summary>
    [Id(1)] public int Items { get; init; }
    /// <summary>Items completed.</summary>
    [Id(2)] public int Done { get; init; }
    /// <summary>Items being computed now.</summary>
    [Id(3)] public int Leased { get; init; }
    /// <summary>Prompts completed.</summary>
    [Id(4)] public int PromptsDone { get; init; }
    /// <summary>Prompts in all.</summary>
    [Id(5)] public int Prompts { get; init; }
    /// <summary>Workers that have taken an item.</summary>
    [Id(6)] public string[] WorkersSeen { get; init; } = [];
    /// <summary>Items handed out more than once (their first worker left or timed out).</summary>
    [Id(7)] public int ItemsRetried { get; init; }
    /// <summary>Why workers were refused (version or model mismatch), latest first.</summary>
    [Id(8)] public string[] Refusals { get; init; } = [];
    /// <summary>Results recorded per item: 1 once done — a result is recorded exactly once, later ones are ignored.</summary>
    [Id(9)] public int[] Completions { get; init; } = [];
    /// <summary>Results that arrived for an item already recorded (a retried item's first worker came back) and were ignored.</summary>
    [Id(10)] public int LateResults { get; init; }
    /// <summary>Why the job failed (an item kept failing), or null.</summary>
    [Id(11)] public string? Error { get; init; }
    /// <summary>True when every item is done.</summary>
    public bool Finished => Items > 0 && Done == Items;
}
