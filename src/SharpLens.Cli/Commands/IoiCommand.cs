using System.CommandLine;
using SharpLens.Cli.Dla;
using SharpLens.Tokenization;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens ioi</c>: the seed notebook — IOI prompts, logit differences and direct logit attribution.</summary>
internal sealed class IoiCommand : CliCommand
{
    public override string Name => "ioi";
    public override string Summary => "Run the IOI direct-logit-attribution notebook (tables, JSON, HTML report).";
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder (default gpt2-small)"),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("report", "FILE", "write one self-contained offline HTML report (plots, tables, attention view)"),
        Opt.Value("json", "FILE", "write the numbers as JSON"),
        Opt.Value("top-k", "K", "number of top heads to list and show attention patterns for (default 10)"),
        Opt.Value("pattern-prompt", "N", "which prompt's attention patterns the report shows (default 0)"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var o = new DlaOptions(args.Option("model") ?? "gpt2-small", args.Option("report"), args.Option("json"),
            args.Int("top-k", 10, min: 1), args.Int("pattern-prompt", 0, min: 0), ModelLoading.Revision(args), ModelLoading.Dtype(args), ModelLoading.UseWeightsCache(args));
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"unexpected argument {TextEncoding.Excerpt(args.Positionals[0])}.");
        return Task.FromResult(DlaSession.Run(o, DlaInput.Ioi, "Indirect object identification: direct logit attribution", stdout, stderr));
    }
}
