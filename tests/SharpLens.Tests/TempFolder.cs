namespace SharpLens.Tests;

/// <summary>
/// A scratch folder under the run's temporary root (<see cref="TestEnvironment.Root"/>), deleted on dispose:
/// <c>using var tmp = new TempFolder();</c> in a test. (The root is deleted at exit too, but the test host may be
/// killed before a large root is gone, so every test removes its own folders.)
/// </summary>
internal sealed class TempFolder(string prefix = "tmp-") : IDisposable
{
    /// <summary>The folder, empty when created.</summary>
    public string Path { get; } = TestEnvironment.NewTempDir(prefix);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
