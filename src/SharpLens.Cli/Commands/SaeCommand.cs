using System.CommandLine;
using SharpLens.Cli.SaeCli;
using SharpLens.Tokenization;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens sae</c>: which features of an SAE fire on which tokens, how well it reconstructs, what it does to the logits.</summary>
internal sealed class SaeCommand : CliCommand
{
    public override string Name => "sae";
    public override string Summary => "Explain an SAE's features on prompts: top features per token, metrics, CE losses, feature DLA.";
    public override string Details => """
        --sae: a SAELens folder (cfg.json + sae_weights.safetensors), a Gemma Scope params.npz (or its folder), or
        org/repo/path/in/repo on the Hugging Face Hub. Prompts must tokenize to the same length.
        answers.json (one entry per prompt): [[correct_id, incorrect_id], ...] or
        [{"correct": " Mary", "incorrect": " John"}, ...] (single-token strings or ids) — adds feature DLA on the
        logit difference at the final position.
        Metrics use plain definitions: mse = mean over tokens and d_in; explained_variance = 1 − Σ‖x−x̂‖²/Σ‖x−x̄‖².
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("sae", "DIR|org/repo/path", "the SAE (SAELens folder, Gemma Scope params.npz, or on the Hub)", required: true),
        Opt.Value("sae-hook", "NAME", "the SAE's hook (overrides its config; needed for Gemma Scope outside its repo layout)"),
        Opt.Many("prompt", "TEXT", "text prompt (repeatable)"),
        Opt.Value("tokens-file", "tokens.json", "JSON array of arrays of token ids (all the same length)"),
        Opt.Value("answers", "answers.json", "correct/incorrect answer per prompt, for feature DLA (format below)"),
        Opt.Value("top-k", "K", "features per token and DLA features to list (default 10)"),
        Opt.Value("json", "FILE", "write the numbers as JSON"),
        Opt.Value("report", "FILE", "write one self-contained offline HTML report"),
        Opt.Flag("no-bos", "do not prepend the BOS token to --prompt texts"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var o = new SaeOptions(args.Required("model"), args.Required("sae"), args.Option("sae-hook"), args.Options("prompt"), args.Option("tokens-file"),
            args.Option("answers"), args.Int("top-k", 10, min: 1), args.Option("json"), args.Option("report"), args.Flag("no-bos"),
            ModelLoading.Revision(args), ModelLoading.Dtype(args), ModelLoading.UseWeightsCache(args));
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"unexpected argument {TextEncoding.Excerpt(args.Positionals[0])}.");
        if ((o.TokensFile is null) == (o.Prompts.Count == 0))
            throw new CliUsageException("give exactly one of --tokens-file or --prompt.");
        return Task.FromResult(SaeSession.Run(o, stdout, stderr));
    }
}
