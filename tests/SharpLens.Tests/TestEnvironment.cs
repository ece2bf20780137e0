using System.Runtime.CompilerServices;

namespace SharpLens.Tests;

/// <summary>
/// Process-wide settings for the test run, applied before any test: everything the run writes to the temporary
/// folder lives under one root, <see cref="Root"/>, deleted at exit — SharpLens's cache folder (the processed-weights
/// cache, so the suite never fills or reads the user's cache) and the tests' scratch folders (<see cref="NewTempDir"/>).
/// Roots left by killed runs are deleted by the next run. Child processes the tests start (the CLI) inherit the cache setting.
/// </summary>
internal static class TestEnvironment
{
    private const string Prefix = "sharplens-tests-";

    /// <summary>This run's folder under the system temporary folder.</summary>
    public static string Root { get; } = Path.Combine(Path.GetTempPath(), $"{Prefix}{Environment.ProcessId}-{Guid.NewGuid():N}");

    /// <summary>SHARPLENS_CACHE for the run.</summary>
    public static string CacheRoot { get; } = Path.Combine(Root, "cache");

    /// <summary>A new empty scratch folder whose name starts with <paramref name="prefix"/>, deleted with the run's root.</summary>
    public static string NewTempDir(string prefix) => Directory.CreateDirectory(Path.Combine(Root, $"{prefix}{Guid.NewGuid():N}")).FullName;

#pragma warning disable CA2255 // a test-assembly module initializer is the documented way to set process-wide test settings
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Init()
    {
        DeleteStaleRoots();
        Environment.SetEnvironmentVariable("SHARPLENS_CACHE", CacheRoot);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(Root);
    }

    /// <summary>
    /// Roots (and, from before they existed, sharplens-cli* scratch folders) of runs that were killed: their process
    /// is gone and nothing was written there for an hour — the age guard keeps a live run in another PID namespace safe.
    /// </summary>
    private static void DeleteStaleRoots()
    {
        var old = DateTime.UtcNow - TimeSpan.FromHours(1);
        try
        {
            foreach (var dir in Directory.EnumerateDirectories(Path.GetTempPath(), "sharplens-*"))
            {
                string name = Path.GetFileName(dir);
                bool ours = name.StartsWith(Prefix, StringComparison.Ordinal)
                    ? !(int.TryParse(name[Prefix.Length..].Replace("cache-", "", StringComparison.Ordinal).Split('-')[0], out int pid) && IsRunning(pid))
                    : name.StartsWith("sharplens-cli", StringComparison.Ordinal);
                if (ours && Directory.GetLastWriteTimeUtc(dir) < old) TryDelete(dir);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    private static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
