using System.Diagnostics;

namespace SharpLens.Tests.Visualization;

/// <summary>Runs scripts/check-report.sh (headless Debian chromium) on a saved report.</summary>
internal static class BrowserCheck
{
    public static bool Available => File.Exists("/usr/bin/chromium");
    public const string SkipReason = "needs Debian chromium (apt-get install -y chromium)";

    public static (int ExitCode, string Output) Run(string reportPath)
    {
        string script = Path.Combine(RepoRoot(), "scripts", "check-report.sh");
        var psi = new ProcessStartInfo("bash", [script, reportPath]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout + stderr.Result);
    }

    public static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "SharpLens.slnx"))) return d.FullName;
        throw new DirectoryNotFoundException("SharpLens.slnx not found above " + AppContext.BaseDirectory);
    }
}
