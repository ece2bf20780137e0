using System.Runtime.CompilerServices;

namespace SharpLens.Tests;

/// <summary>
/// Process-wide settings for the test run, applied before any test: SharpLens's cache folder (the processed-weights
/// cache) points at a fresh temporary folder, deleted at exit, so the suite never fills or reads the user's cache.
/// Child processes the tests start (the CLI) inherit it.
/// </summary>
internal static class TestEnvironment
{
    public static string CacheRoot { get; } = Path.Combine(Path.GetTempPath(), $"sharplens-tests-cache-{Environment.ProcessId}-{Guid.NewGuid():N}");

#pragma warning disable CA2255 // a test-assembly module initializer is the documented way to set process-wide test settings
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Init()
    {
        Environment.SetEnvironmentVariable("SHARPLENS_CACHE", CacheRoot);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { Directory.Delete(CacheRoot, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        };
    }
}
