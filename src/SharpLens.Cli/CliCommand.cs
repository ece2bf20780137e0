using System.CommandLine;

namespace SharpLens.Cli;

/// <summary>A subcommand of the <c>sharplens</c> tool.</summary>
internal interface ICliCommand
{
    /// <summary>The word after <c>sharplens</c>.</summary>
    string Name { get; }
    /// <summary>One line for the command list.</summary>
    string Summary { get; }
    /// <summary>Runs the command on its arguments; returns the process exit code. Usage errors throw <see cref="CliUsageException"/>.</summary>
    Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr);
}

/// <summary>
/// Base of every command: declares its options and arguments (<see cref="Symbols"/>), from which System.CommandLine
/// parses, validates, completes and writes <c>--help</c>. See the top of CliApp.cs for how to add an option or a command.
/// </summary>
internal abstract class CliCommand : ICliCommand
{
    private readonly Lazy<Command> _definition;

    protected CliCommand() => _definition = new(() =>
    {
        var c = new Command(Name, Summary);
        foreach (var s in Symbols)
            if (s is Option o) c.Add(o);
            else c.Add((Argument)s);
        return c;
    });

    /// <inheritdoc/>
    public abstract string Name { get; }
    /// <inheritdoc/>
    public abstract string Summary { get; }
    /// <summary>Extra paragraphs for <c>sharplens NAME --help</c> (file formats, environment), or null.</summary>
    public virtual string? Details => null;
    /// <summary>The options and arguments, one line each (see <see cref="Opt"/>), in the order help lists them.</summary>
    public abstract IReadOnlyList<Symbol> Symbols { get; }

    /// <summary>The System.CommandLine command built once from the declarations.</summary>
    internal Command Definition => _definition.Value;

    /// <inheritdoc/>
    public async Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr) =>
        await ExecuteAsync(args.BindTo(Definition), stdout, stderr).ConfigureAwait(false);

    /// <summary>The command's work, on parsed arguments.</summary>
    protected abstract Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr);
}

/// <summary>One-line declarations of command options and arguments. Values stay strings: bodies parse and check them.</summary>
internal static class Opt
{
    /// <summary><c>--name VALUE</c> (the last one wins if repeated). <paramref name="required"/> marks it in help and makes the parser insist.</summary>
    public static Option<string> Value(string name, string valueName, string description, bool required = false) =>
        new("--" + name) { HelpName = valueName, Description = description, Required = required };

    /// <summary><c>--name VALUE</c> whose value is one of <paramref name="choices"/> (offered by tab completion; the body checks it).</summary>
    public static Option<string> Choice(string name, string valueName, string description, IEnumerable<string> choices, bool required = false)
    {
        var o = Value(name, valueName, description, required);
        o.CompletionSources.Add(choices.ToArray());
        return o;
    }

    /// <summary>A repeatable <c>--name VALUE</c>: every occurrence adds one value.</summary>
    public static Option<string[]> Many(string name, string valueName, string description) =>
        new("--" + name) { HelpName = valueName, Description = description, AllowMultipleArgumentsPerToken = false };

    /// <summary>A boolean <c>--name</c> that never takes a value (so a following word stays positional).</summary>
    public static Option<bool> Flag(string name, string description) =>
        new("--" + name) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>Any number of positional arguments (the body checks how many it needs).</summary>
    public static Argument<string[]> Args(string name, string description) =>
        new(name) { Description = description, Arity = ArgumentArity.ZeroOrMore };
}
