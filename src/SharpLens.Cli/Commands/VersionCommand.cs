using System.CommandLine;
using System.Reflection;
using System.Text.Json;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens version</c>: prints the package version and the TorchSharp and libtorch versions it runs on.</summary>
internal sealed class VersionCommand : CliCommand
{
    public override string Name => "version";
    public override string Summary => "Print the SharpLens, TorchSharp and libtorch versions.";
    public override IReadOnlyList<Symbol> Symbols { get; } = [];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        args.RejectUnknown();
        stdout.WriteLine($"sharplens {PackageVersion(typeof(VersionCommand).Assembly)}");
        stdout.WriteLine($"TorchSharp {PackageVersion(typeof(TorchSharp.torch).Assembly)}");
        stdout.WriteLine($"libtorch {LibTorchVersion() ?? "unknown"}");
        return Task.FromResult(0);
    }

    /// <summary>The NuGet version an assembly was built as (its informational version without the +commit suffix).</summary>
    internal static string PackageVersion(Assembly assembly)
    {
        string v = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString() ?? "unknown";
        int plus = v.IndexOf('+');
        return plus < 0 ? v : v[..plus];
    }

    /// <summary>The libtorch native package this process resolved, from the app's dependency manifest (libtorch has no version call of its own through TorchSharp).</summary>
    internal static string? LibTorchVersion()
    {
        foreach (var deps in (AppContext.GetData("APP_CONTEXT_DEPS_FILES") as string ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!File.Exists(deps)) continue;
            using var doc = JsonDocument.Parse(File.ReadAllText(deps));
            if (!doc.RootElement.TryGetProperty("libraries", out var libs)) continue;
            foreach (var lib in libs.EnumerateObject())
                if (lib.Name.StartsWith("libtorch-", StringComparison.Ordinal) && lib.Name.Split('/') is [var id, var version] && id.Contains("-linux-") | id.Contains("-win-") | id.Contains("-osx-"))
                    return $"{version} ({id})";
        }
        return null;
    }
}
