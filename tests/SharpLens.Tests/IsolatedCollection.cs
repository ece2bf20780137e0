namespace SharpLens.Tests;

/// <summary>
/// Tests that measure process-wide state (RSS, live tensor counts, wall-clock time) belong to this collection:
/// xunit runs it alone, after every parallel collection has finished, so no other test can disturb the
/// measurement. Mark such a test class with <c>[Collection(IsolatedCollection.Name)]</c>; never make timing or
/// memory assertions outside it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class IsolatedCollection
{
    /// <summary>The collection name used in <c>[Collection(...)]</c>.</summary>
    public const string Name = "Isolated";
}
