using System.CommandLine;
using SharpLens.Cli.Dla;
using SharpLens.Tokenization;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens dla</c>: the IOI analysis for the user's own prompts (different lengths allowed).</summary>
internal sealed class DlaCommand : CliCommand
{
    public override string Name => "dla";
    public override string Summary => "Direct logit attribution for your own prompts.json.";
    public override string Details => """
        prompts.json: [{"prompt": "...", "correct": " Mary", "incorrect": " John"}, ...]
                      or [{"tokens": [ids], "correct_id": 5, "incorrect_id": 7}, ...] (models without a tokenizer)
        Answers must be single tokens. Prompts may differ in length: they are right-padded and each is read at
        its own last real position.
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("prompts", "prompts.json", "the prompts and their answers (format below)", required: true),
        Opt.Value("report", "FILE", "write one self-contained offline HTML report"),
        Opt.Value("json", "FILE", "write the numbers as JSON"),
        Opt.Value("top-k", "K", "number of top heads to list and show attention patterns for (default 10)"),
        Opt.Value("pattern-prompt", "N", "which prompt's attention patterns the report shows (default 0)"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string model = args.Required("model");
        string prompts = args.Required("prompts");
        var o = new DlaOptions(model, args.Option("report"), args.Option("json"), args.Int("top-k", 10, min: 1), args.Int("pattern-prompt", 0, min: 0),
            ModelLoading.Revision(args), ModelLoading.Dtype(args), ModelLoading.UseWeightsCache(args));
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"unexpected argument {TextEncoding.Excerpt(args.Positionals[0])}.");
        DlaInput.CheckFile(prompts);
        return Task.FromResult(DlaSession.Run(o, m => DlaInput.FromFile(m, prompts), "Direct logit attribution", stdout, stderr));
    }
}
