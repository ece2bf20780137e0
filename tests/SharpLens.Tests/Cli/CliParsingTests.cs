using SharpLens.Cli;
using SharpLens.Cli.Commands;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>The System.CommandLine front end: help from declarations, response files, completion, typo suggestions, exit codes.</summary>
public sealed class CliParsingTests
{
    [Fact]
    public void EveryCommandsHelpListsEachDeclaredOptionAndItsDetails()
    {
        foreach (var command in CliApp.Commands)
        {
            var (code, stdout, stderr) = Run(command.Name, "--help");
            Assert.True(code == 0, stderr);
            Assert.Contains($"sharplens {command.Name}", stdout);
            foreach (var option in command.Definition.Options.Where(o => !o.Hidden))
                Assert.Contains(option.Name, stdout);
            if (command.Details is { } details) Assert.Contains(details.Split('\n')[0].Trim(), stdout);
        }
        var (_, root, _) = Run("--help");
        foreach (var command in CliApp.Commands) Assert.Matches($@"(?m)^\s+{command.Name}\b.*{System.Text.RegularExpressions.Regex.Escape(command.Summary)}", root);
        Assert.Contains("--model <M> (REQUIRED)", Run("dla", "--help").Out);
    }

    [Fact]
    public void NoArgumentsPrintsHelpWithExitTwoAndHelpWordWithZero()
    {
        var none = Run();
        Assert.Equal(2, none.Code);   // a usage error, as README's exit codes say
        Assert.Contains("tokenize", none.Out);
        Assert.Equal(0, Run("help").Code);
        var topic = Run("help", "run");
        Assert.Equal(0, topic.Code);
        Assert.Contains("--tokens-file", topic.Out);
    }

    [Fact]
    public void TyposInCommandsAndOptionsSuggestTheClosestName()
    {
        var command = Run("tokenze", "x");
        Assert.Equal(2, command.Code);
        Assert.StartsWith("error: unknown command 'tokenze'. Did you mean 'tokenize'", command.Err);

        var option = Run("run", "--modle", "x", "--out", "y.safetensors");
        Assert.Equal(2, option.Code);
        Assert.StartsWith("error: unknown option --modle. Did you mean '--model'", option.Err);
        Assert.Contains("sharplens run --help", option.Err);

        var extra = Run("models", "extra");
        Assert.Equal(2, extra.Code);
        Assert.Contains("unexpected argument 'extra'", extra.Err);
        Assert.Contains("Option '--out' is required", Run("run", "--model", "x", "--prompt", "a").Err);
    }

    [Fact]
    public void APromptGivenWithoutItsOptionIsQuotedByItsStartOnly()
    {
        string prompt = string.Concat(Enumerable.Repeat("When Mary and John went to the store, John gave a drink to Mary. ", 40));
        foreach (var argv in new[] { new[] { "run", "--model", "x", "--out", "y.safetensors", prompt }, new[] { "ioi", prompt }, new[] { prompt } })
        {
            var r = Run(argv);
            Assert.Equal(2, r.Code);
            Assert.Contains($"'{prompt[..80]}…' ({prompt.Length} characters)", r.Err);
            Assert.True(r.Err.Length < 400, r.Err);
        }
    }

    [Fact]
    public void ResponseFilesAndEqualsSyntaxAndDoubleDashWork()
    {
        using var tmp = new TempFolder("cli-");
        string dir = tmp.Path;
        try
        {
            string rsp = Path.Combine(dir, "args.rsp");
            File.WriteAllLines(rsp, ["--json", "--model=gpt2", "--no-bos", "Hello"]);
            var (code, stdout, stderr) = Run("tokenize", "@" + rsp, "--", "--x");
            Assert.True(code == 0, stderr);
            var items = System.Text.Json.JsonDocument.Parse(stdout).RootElement;
            Assert.Equal([15496], items[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal("--x", items[1].GetProperty("text").GetString());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void SuggestDirectiveCompletesCommandsOptionsAndChoices()
    {
        Assert.Equal(["tokenize"], Lines(Run("[suggest:13]", "sharplens tok").Out));
        Assert.Contains("--tokens-file", Lines(Run("[suggest:20]", "sharplens run --toke").Out));
        Assert.Equal(["head_out_all_pos", "head_out_by_pos"], Lines(Run("[suggest:30]", "sharplens patch --kind head_out").Out));
        foreach (var shell in new[] { "bash", "zsh", "pwsh" })
        {
            var script = Run("completion", shell);
            Assert.Equal(0, script.Code);
            Assert.Contains("[suggest:", script.Out);
        }
        var bad = Run("completion", "fish");
        Assert.Equal(2, bad.Code);
        Assert.Contains("unknown shell 'fish'", bad.Err);
    }

    [Fact]
    public async Task ExceptionsMapToExitCodesAndMessages()
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        Assert.Equal(1, await CliApp.Guard(() => throw new SharpLensException("bad input"), "run", false, e, default));
        Assert.Equal("error: bad input", e.ToString().Trim());

        e = new StringWriter();
        Assert.Equal(70, await CliApp.Guard(() => throw new InvalidOperationException("boom"), "run", false, e, default));
        Assert.StartsWith("error: internal error (InvalidOperationException): boom", e.ToString());
        Assert.Contains("--verbose", e.ToString());
        Assert.DoesNotContain(" at ", e.ToString());
        Assert.Single(Lines(e.ToString()));

        // A native error's message: its C++ backtrace is dropped, the error stays one line.
        e = new StringWriter();
        Assert.Equal(70, await CliApp.Guard(() => throw new System.Runtime.InteropServices.ExternalException(
            "expected m1 and m2 to have the same dtype\nException raised from addmm_impl_cpu_\nframe #0: c10::Error"), "run", false, e, default));
        Assert.Equal("error: internal error (ExternalException): expected m1 and m2 to have the same dtype " +
            "(run again with --verbose or SHARPLENS_DEBUG=1 for the stack trace, and please report it)", Lines(e.ToString()).Single());

        // The file system refusing (a link loop, no permission) is the user's environment: exit 1, one line naming the path.
        e = new StringWriter();
        Assert.Equal(1, await CliApp.Guard(() => throw new IOException("Too many levels of symbolic links in '/m/model.safetensors'."), "run", false, e, default));
        Assert.Equal("error: Too many levels of symbolic links in '/m/model.safetensors'.", e.ToString().Trim());

        e = new StringWriter();
        Assert.Equal(70, await CliApp.Guard(() => throw new InvalidOperationException("boom"), "run", true, e, default));
        Assert.Contains("ExceptionsMapToExitCodesAndMessages", e.ToString()); // the stack trace

        e = new StringWriter();
        Assert.Equal(2, await CliApp.Guard(() => throw new CliUsageException("give one"), "run", false, e, default));
        Assert.StartsWith("error: give one", e.ToString());

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        e = new StringWriter();
        Assert.Equal(130, await CliApp.Guard(() => throw new OperationCanceledException(cts.Token), "run", false, e, cts.Token));
        Assert.Equal(0, o.ToString().Length);
    }

    [Fact]
    public void VersionPrintsPackageTorchSharpAndLibtorchVersions()
    {
        var (code, stdout, _) = Run("version");
        Assert.Equal(0, code);
        Assert.Matches(@"(?m)^sharplens \d+\.\d+\.\d+", stdout);
        Assert.Contains("TorchSharp 0.107.0", stdout);
        Assert.Matches(@"(?m)^libtorch \d+\.\d+\.\d+ \(libtorch-cpu-", stdout);
    }

    private static string[] Lines(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Fact]
    public void ReadingAnUndeclaredOptionIsAProgrammingError()
    {
        var e = Assert.Throws<InvalidOperationException>(() => CliArgs.Parse([]).BindTo(new VersionCommand().Definition).Option("model"));
        Assert.Contains("does not declare it", e.Message);
    }
}
