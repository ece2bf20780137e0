using Spectre.Console;

namespace SharpLens.Cli;

/// <summary>Spectre consoles for command output: colours on a terminal, plain wide text when redirected or captured.</summary>
internal static class CliConsole
{
    public static IAnsiConsole Create(TextWriter writer)
    {
        bool terminal = ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        // Redirected output has no width; keep prompts on one line instead of wrapping at 80 columns.
        if (!terminal) console.Profile.Width = 200;
        return console;
    }
}
