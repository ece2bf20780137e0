using SharpLens.Cli;

namespace SharpLens.Tests.Cli;

internal static class CliTestHelper
{
    /// <summary>Runs the CLI in-process; returns exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = CliApp.RunAsync(args, o, e).GetAwaiter().GetResult();
        return (code, o.ToString(), e.ToString());
    }

    public static string TempDir() => Directory.CreateTempSubdirectory("sharplens-cli").FullName;
}
