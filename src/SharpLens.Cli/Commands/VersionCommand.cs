using System.Reflection;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens version</c>: prints the tool and TorchSharp versions.</summary>
internal sealed class VersionCommand : ICliCommand
{
    public string Name => "version";
    public string Summary => "Print the SharpLens and TorchSharp versions.";
    public string Usage => "usage: sharplens version";

    public Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        args.RejectUnknown();
        stdout.WriteLine($"sharplens {typeof(VersionCommand).Assembly.GetName().Version}");
        stdout.WriteLine($"TorchSharp {typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion}");
        return Task.FromResult(0);
    }
}
