using System.CommandLine;
using System.CommandLine.Parsing;
using SharpLens.Tokenization;

namespace SharpLens.Cli;

/// <summary>A command-line mistake: reported with a pointer to the command's help and exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// What a command body reads: the values System.CommandLine parsed for the options and arguments the command declared
/// (see <see cref="CliCommand.Symbols"/>), looked up by option name without the leading dashes.
/// </summary>
internal sealed class CliArgs
{
    private readonly IReadOnlyList<string>? _raw;
    private ParseResult? _result;
    private Command? _command;

    private CliArgs(IReadOnlyList<string>? raw, ParseResult? result, Command? command) => (_raw, _result, _command) = (raw, result, command);

    /// <summary>Arguments given to a command before it is known; parsed against its declarations when it runs (for calling a command directly).</summary>
    public static CliArgs Parse(IEnumerable<string> raw) => new(raw.ToList(), null, null);

    /// <summary>The values of a parse that succeeded for <paramref name="command"/>.</summary>
    internal static CliArgs From(ParseResult result, Command command, CancellationToken cancellation) => new(null, result, command) { Cancellation = cancellation };

    /// <summary>Cancelled when the user presses Ctrl+C (commands that can stop early watch it).</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Parses the raw arguments of <see cref="Parse"/> with <paramref name="command"/>'s declarations; usage errors throw.</summary>
    internal CliArgs BindTo(Command command)
    {
        if (_result is not null) return this;
        var result = command.Parse(_raw!);
        var errors = CliApp.UsageErrors(result, command).ToList();
        if (errors.Count > 0) throw new CliUsageException(errors[0]);
        return new CliArgs(null, result, command) { Cancellation = Cancellation };
    }

    private ParseResult Result => _result ?? throw new InvalidOperationException("CliArgs.Parse arguments are read only after the command binds them.");

    private Command Cmd => _command ?? throw new InvalidOperationException("CliArgs.Parse arguments are read only after the command binds them.");

    private Option Declared(string name) =>
        Cmd.Options.FirstOrDefault(o => o.Name == "--" + name || o.Aliases.Contains("--" + name))
        ?? throw new InvalidOperationException($"'{Cmd.Name}' reads --{name} but does not declare it in Symbols.");

    /// <summary>Arguments that are not options, in order.</summary>
    public List<string> Positionals =>
        Cmd.Arguments.SelectMany(a => Result.GetResult(a)?.Tokens ?? []).Select(t => t.Value).ToList();

    /// <summary>True when the flag <c>--name</c> was given.</summary>
    public bool Flag(string name) => Result.GetResult(Declared(name)) is { Implicit: false };

    /// <summary>The last value of <c>--name</c>, or null when it was not given.</summary>
    public string? Option(string name) => Result.GetResult(Declared(name)) is { Tokens.Count: > 0 } r ? r.Tokens[^1].Value : null;

    /// <summary>All values of a repeatable option, in order.</summary>
    public IReadOnlyList<string> Options(string name) =>
        Result.GetResult(Declared(name))?.Tokens.Select(t => t.Value).ToList() ?? [];

    /// <summary>The value of <c>--name</c>, or a usage error saying it is required.</summary>
    public string Required(string name) => Option(name) ?? throw new CliUsageException($"option --{name} is required.");

    /// <summary>An integer option with a default; a usage error when it does not parse or is below <paramref name="min"/>.</summary>
    public int Int(string name, int defaultValue, int min = int.MinValue)
    {
        var s = Option(name);
        if (s is null) return defaultValue;
        if (!int.TryParse(s, out int v) || v < min)
            throw new CliUsageException($"option --{name} must be an integer ≥ {min}, got {TextEncoding.Excerpt(s)}.");
        return v;
    }

    /// <summary>A typed value of an option declared with a value type other than string (e.g. <c>Option&lt;int&gt;</c>).</summary>
    public T? Value<T>(string name) => Result.GetValue<T>("--" + name);

    /// <summary>
    /// Nothing left to check: the parser already rejected options the command does not declare (with a suggestion).
    /// Kept so command bodies read as before.
    /// </summary>
    public void RejectUnknown() { }
}
