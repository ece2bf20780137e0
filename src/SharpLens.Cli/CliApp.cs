// How to add an option or a command to the sharplens tool (parsing, help, completion, response files and typo
// suggestions come from System.CommandLine; bodies read values through CliArgs):
//
//   Option:  one line in the command's Symbols list, then read it in ExecuteAsync:
//              Opt.Value("top-k", "K", "heads to list (default 10)"),   →  args.Int("top-k", 10, min: 1)
//              Opt.Flag("no-bos", "do not prepend BOS"),                 →  args.Flag("no-bos")
//              Opt.Many("prompt", "TEXT", "a prompt (repeatable)"),      →  args.Options("prompt")
//              Opt.Choice("kind", "KIND", "...", Kinds.Keys),            →  args.Option("kind")  (completion offers the keys)
//              Opt.Args("TEXT", "texts to tokenize"),                    →  args.Positionals
//            Reading an option that is not declared throws at once, so a missing declaration shows up in any test.
//   Command: a `sealed class XCommand : CliCommand` in Commands/ (Name, Summary, optional Details, Symbols,
//            ExecuteAsync) and one line in CliApp.Commands below. Usage mistakes: throw CliUsageException (exit 2);
//            bad input: SharpLensException (exit 1).

using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using SharpLens.Cli.Commands;
using SharpLens.Tokenization;

namespace SharpLens.Cli;

/// <summary>
/// Dispatches <c>sharplens COMMAND ...</c>: parses with System.CommandLine, prints help, and maps failures to exit codes
/// (0 ok, 1 user error, 2 usage error, 70 internal error, 130 interrupted).
/// </summary>
internal static class CliApp
{
    /// <summary>Every command, in the order <c>sharplens --help</c> lists them. Add new commands here.</summary>
    internal static IReadOnlyList<CliCommand> Commands { get; } =
    [
        new IoiCommand(),
        new DlaCommand(),
        new PatchCommand(),
        new AttributeCommand(),
        new GenerateCommand(),
        new RunCommand(),
        new SaeCommand(),
        new SweepCommand(),
        new WorkerCommand(),
        new TokenizeCommand(),
        new DownloadCommand(),
        new ModelsCommand(),
        new CompletionCommand(),
        new VersionCommand(),
    ];

    /// <summary>Exit code of an unexpected exception (BSD EX_SOFTWARE).</summary>
    internal const int InternalErrorExitCode = 70;
    /// <summary>Exit code after Ctrl+C (128 + SIGINT), as shells report it.</summary>
    internal const int InterruptedExitCode = 130;

    /// <summary><c>--verbose</c> on any command: stack traces for internal errors.</summary>
    private static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces of internal errors (or set SHARPLENS_DEBUG=1).", Arity = ArgumentArity.Zero, Recursive = true };

    private static readonly Lazy<RootCommand> Root = new(() =>
    {
        // HelpName: the tool runs as SharpLens.Cli.dll (or testhost in tests); help should name the command users type.
        var root = new RootCommand("sharplens — mechanistic interpretability for .NET (TransformerLens semantics)") { HelpName = "sharplens" };
        root.Add(Verbose);
        foreach (var c in Commands) root.Add(c.Definition);
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new HelpWithDetails((HelpAction)help.Action!);
        return root;
    });

    /// <summary>The parser's command tree (for help and completion tests).</summary>
    internal static RootCommand RootCommand => Root.Value;

    public static async Task<int> RunAsync(string[] argv, TextWriter stdout, TextWriter stderr, CancellationToken cancellation = default)
    {
        var invocation = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
        if (argv.Length == 0 || argv is ["help"])
        {
            RootCommand.Parse(["--help"]).Invoke(invocation);
            return argv.Length == 0 ? 2 : 0;   // no command is a usage error (README: exit 2)
        }
        if (argv is ["help", var topic]) argv = [topic, "--help"];

        var result = RootCommand.Parse(argv);
        // --help, [suggest] (tab completion) and the other directives are the library's own actions.
        if (result.Action is not null and not ParseErrorAction) return await result.InvokeAsync(invocation);

        var command = Commands.FirstOrDefault(c => c.Definition == result.CommandResult.Command);
        var errors = UsageErrors(result, result.CommandResult.Command).ToList();
        if (errors.Count > 0 || command is null)
        {
            // The first mistake only: the later ones are usually its consequences.
            if (errors.Count > 0) stderr.WriteLine($"error: {errors[0]}");
            stderr.WriteLine(command is null ? "Run 'sharplens --help' for the list of commands." : $"Run 'sharplens {command.Name} --help' for its options.");
            return 2;
        }

        bool verbose = result.GetValue(Verbose) || Environment.GetEnvironmentVariable("SHARPLENS_DEBUG") is "1" or "true";
        return await Guard(() => command.RunAsync(CliArgs.From(result, command.Definition, cancellation), stdout, stderr), command.Name, verbose, stderr, cancellation);
    }

    /// <summary>The one top-level exception handler: runs a command body and turns what it throws into a message and an exit code.</summary>
    internal static async Task<int> Guard(Func<Task<int>> body, string commandName, bool verbose, TextWriter stderr, CancellationToken cancellation)
    {
        try
        {
            return await body();
        }
        catch (CliUsageException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine($"Run 'sharplens {commandName} --help' for its options.");
            return 2;
        }
        catch (SharpLensException e)
        {
            stderr.WriteLine($"error: {OneLine(e.Message)}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The file system refused (a symbolic link loop, a dangling link, no permission, a full disk): the user's
            // environment, not a bug. .NET's message names the path.
            stderr.WriteLine($"error: {OneLine(e.Message)}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            stderr.WriteLine("interrupted.");
            return InterruptedExitCode;
        }
        catch (Exception e)
        {
            // One line (scripts and users read the first line; a native error's message carries a C++ backtrace).
            stderr.WriteLine($"error: internal error ({e.GetType().Name}): {OneLine(e.Message)} " +
                "(run again with --verbose or SHARPLENS_DEBUG=1 for the stack trace, and please report it)");
            if (verbose) stderr.WriteLine(e);
            return InternalErrorExitCode;
        }
    }

    /// <summary>
    /// The first line of a message, or all of it joined when its first line is too short to say anything: an error is
    /// always one line on stderr. Native (libtorch) messages continue with a C++ backtrace, which is dropped.
    /// </summary>
    internal static string OneLine(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length <= 1) return lines.FirstOrDefault() ?? message.Trim();
        int frames = Array.FindIndex(lines, l => l.StartsWith("Exception raised from", StringComparison.Ordinal) || l.StartsWith("frame #", StringComparison.Ordinal));
        return string.Join(" ", frames > 0 ? lines[..frames] : lines);
    }

    /// <summary>The library's help, followed by the command's <see cref="CliCommand.Details"/> (file formats, environment).</summary>
    private sealed class HelpWithDetails(HelpAction help) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult result)
        {
            int code = help.Invoke(result);
            if (Commands.FirstOrDefault(c => c.Definition == result.CommandResult.Command)?.Details is { } details)
                result.InvocationConfiguration.Output.WriteLine(details);
            return code;
        }
    }

    /// <summary>
    /// The parse errors of <paramref name="command"/>, with our wording for unknown words: the closest declared option
    /// or command is suggested, as for every other name SharpLens checks.
    /// </summary>
    internal static IEnumerable<string> UsageErrors(ParseResult result, Command command)
    {
        var options = command.Options.Concat(RootCommand.Options.Where(o => o.Recursive)).Where(o => !o.Hidden).Select(o => o.Name).ToList();
        // A word like --jsno lands in a command's positional arguments; before a '--' separator it is a mistyped option.
        var misplaced = result.Tokens.TakeWhile(t => t.Type != TokenType.DoubleDash)
            .Where(t => t.Type == TokenType.Argument && t.Value.StartsWith("--", StringComparison.Ordinal) && t.Value.Length > 2)
            .Select(t => t.Value);
        var unknown = misplaced.Concat(result.UnmatchedTokens).Distinct().ToList();
        foreach (var token in unknown)
        {
            if (command is RootCommand && !token.StartsWith('-'))
            {
                yield return $"unknown command {TextEncoding.Excerpt(token)}." + NameSuggestions.DidYouMean(token, command.Subcommands.Select(c => c.Name));
                yield break; // the words after an unknown command mean nothing
            }
            yield return token.StartsWith('-') && token.Length > 1
                ? $"unknown option {token}." + NameSuggestions.DidYouMean(token, options)
                : $"unexpected argument {TextEncoding.Excerpt(token)}.";
        }
        // The library's own errors, minus its generic wording for the unknown words reported above.
        foreach (var e in result.Errors)
            if (!result.UnmatchedTokens.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal)))
                yield return e.Message;
    }
}
