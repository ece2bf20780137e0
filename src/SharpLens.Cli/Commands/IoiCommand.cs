using SharpLens.Cli.Dla;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens ioi</c>: the seed notebook — IOI prompts, logit differences and direct logit attribution.</summary>
internal sealed class IoiCommand : ICliCommand
{
    public string Name => "ioi";
    public string Summary => "Run the IOI direct-logit-attribution notebook (tables, JSON, HTML report).";
    public string Usage => """
        usage: sharplens ioi [--model gpt2-small] [--report ioi.html] [--json ioi.json] [--top-k 10] [--pattern-prompt 0]
          --model           official name, Hugging Face repo id or local folder (default gpt2-small)
          --report FILE     write one self-contained offline HTML report (plots, tables, attention view)
          --json FILE       write the numbers as JSON
          --top-k K         number of top heads to list and show attention patterns for (default 10)
          --pattern-prompt  which prompt's attention patterns the report shows (default 0)
        """;

    public Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var o = new DlaOptions(args.Option("model") ?? "gpt2-small", args.Option("report"), args.Option("json"),
            args.Int("top-k", 10, min: 1), args.Int("pattern-prompt", 0, min: 0));
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"unexpected argument '{args.Positionals[0]}'.");
        return Task.FromResult(DlaSession.Run(o, DlaInput.Ioi, "Indirect object identification: direct logit attribution", stdout, stderr));
    }
}
