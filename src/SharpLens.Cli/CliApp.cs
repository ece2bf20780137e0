using SharpLens.Cli.Commands;

namespace SharpLens.Cli;

/// <summary>A subcommand of the <c>sharplens</c> tool.</summary>
internal interface ICliCommand
{
    /// <summary>The word after <c>sharplens</c>.</summary>
    string Name { get; }
    /// <summary>One line for the command list.</summary>
    string Summary { get; }
    /// <summary>Full usage text shown by <c>sharplens NAME --help</c> and on argument errors.</summary>
    string Usage { get; }
    /// <summary>Boolean options: never take the next argument as their value (so <c>--json TEXT</c> keeps TEXT positional).</summary>
    IReadOnlySet<string> Flags => new HashSet<string>();
    /// <summary>Runs the command; returns the process exit code.</summary>
    Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr);
}

/// <summary>Dispatches <c>sharplens COMMAND ...</c> to its command and turns user errors into exit code 1.</summary>
internal static class CliApp
{
    /// <summary>Every command, in the order <c>sharplens --help</c> lists them. Add new commands here.</summary>
    internal static IReadOnlyList<ICliCommand> Commands { get; } =
    [
        new IoiCommand(),
        new DlaCommand(),
        new PatchCommand(),
        new GenerateCommand(),
        new RunCommand(),
        new TokenizeCommand(),
        new DownloadCommand(),
        new ModelsCommand(),
        new VersionCommand(),
    ];

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr)
    {
        if (argv.Length == 0 || argv[0] is "-h" or "--help" or "help")
        {
            PrintHelp(stdout);
            return argv.Length == 0 ? 1 : 0;
        }
        var command = Commands.FirstOrDefault(c => c.Name == argv[0]);
        if (command is null)
        {
            stderr.WriteLine($"error: unknown command '{argv[0]}'." +
                NameSuggestions.DidYouMean(argv[0], Commands.Select(c => c.Name)) + " Run 'sharplens --help' for the list.");
            return 2;
        }
        try
        {
            var args = CliArgs.Parse(argv.Skip(1), command.Flags);
            if (args.Flag("help") || args.Flag("h"))
            {
                stdout.WriteLine(command.Usage);
                return 0;
            }
            return await command.RunAsync(args, stdout, stderr);
        }
        catch (CliUsageException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine(command.Usage);
            return 2;
        }
        catch (SharpLensException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static void PrintHelp(TextWriter w)
    {
        w.WriteLine("sharplens — mechanistic interpretability for .NET (TransformerLens semantics)");
        w.WriteLine();
        w.WriteLine("Commands:");
        foreach (var c in Commands) w.WriteLine($"  {c.Name,-10} {c.Summary}");
        w.WriteLine();
        w.WriteLine("Run 'sharplens COMMAND --help' for a command's options.");
    }
}
