using SharpLens.Cli.Dla;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens dla</c>: the IOI analysis for the user's own prompts (different lengths allowed).</summary>
internal sealed class DlaCommand : ICliCommand
{
    public string Name => "dla";
    public string Summary => "Direct logit attribution for your own prompts.json.";
    public string Usage => """
        usage: sharplens dla --model M --prompts prompts.json [--report out.html] [--json out.json] [--top-k 10] [--pattern-prompt 0]
          prompts.json: [{"prompt": "...", "correct": " Mary", "incorrect": " John"}, ...]
                        or [{"tokens": [ids], "correct_id": 5, "incorrect_id": 7}, ...] (models without a tokenizer)
          Answers must be single tokens. Prompts may differ in length: they are right-padded and each is read at
          its own last real position.
        """;

    public Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string model = args.Required("model");
        string prompts = args.Required("prompts");
        var o = new DlaOptions(model, args.Option("report"), args.Option("json"), args.Int("top-k", 10, min: 1), args.Int("pattern-prompt", 0, min: 0));
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"unexpected argument '{args.Positionals[0]}'.");
        return Task.FromResult(DlaSession.Run(o, m => DlaInput.FromFile(m, prompts), "Direct logit attribution", stdout, stderr));
    }
}
