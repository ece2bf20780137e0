using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Cli.Dla;
using SharpLens.Gradients;
using SharpLens.Model;
using SharpLens.Visualization;
using static TorchSharp.torch;
using SharpLens.Tokenization;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens attribute</c>: integrated-gradients attribution of the logit difference to each input token.</summary>
internal sealed class AttributeCommand : CliCommand
{
    public override string Name => "attribute";
    public override string Summary => "Integrated gradients: how much each input token's embedding contributes to the logit difference.";
    public override string Details => """
        Baseline: zero token embedding, positional embedding kept; Riemann midpoint over --steps points. answers.json:
        [[correct_id, incorrect_id], ...], one pair per prompt. Attributions of a prompt sum to its logit difference
        minus the baseline's (up to the reported completeness gap).
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("prompt", "TEXT", "the prompt"),
        Opt.Value("tokens-file", "tokens.json", "JSON array of arrays of token ids (all the same length)"),
        Opt.Value("answers", "answers.json", "[[correct_id, incorrect_id], ...], one pair per prompt", required: true),
        Opt.Value("steps", "N", "interpolation steps (default 20)"),
        Opt.Value("json", "FILE", "write the attributions as JSON"),
        Opt.Value("report", "FILE", "write an HTML report with the coloured token table"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelName = args.Required("model"), answersFile = args.Required("answers");
        string? prompt = args.Option("prompt"), tokensFile = args.Option("tokens-file"), json = args.Option("json"), report = args.Option("report");
        string stepsText = args.Option("steps") ?? "20";
        var dtype = ModelLoading.Dtype(args);
        args.RejectUnknown();
        if ((prompt is null) == (tokensFile is null)) throw new CliUsageException("give exactly one of --prompt or --tokens-file.");
        if (!int.TryParse(stepsText, NumberStyles.Integer, CultureInfo.InvariantCulture, out int steps) || steps < 1)
            throw new CliUsageException($"--steps must be a positive integer, got {TextEncoding.Excerpt(stepsText)}.");
        AtomicFile.RequireFolders(json, report);
        var answerIds = RunCommand.ReadTokensFile(answersFile);
        if (answerIds[0].Length != 2) throw new SharpLensException($"{answersFile}: each entry must be [correct_id, incorrect_id].");

        using var model = ModelLoading.Load(modelName, stderr, revision: ModelLoading.Revision(args), dtype: dtype,
            useWeightsCache: ModelLoading.UseWeightsCache(args));
        using var scope = NewDisposeScope();
        var tokens = tokensFile is not null
            ? RunCommand.ReadTokensFile(tokensFile) is var ids ? tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length], ScalarType.Int64) : null!
            : model.ToTokens(prompt!).Tokens;
        if (answerIds.Length != tokens.shape[0])
            throw new SharpLensException($"{answersFile} has {answerIds.Length} pairs but there are {tokens.shape[0]} prompts.");
        if (answerIds.SelectMany(a => a).FirstOrDefault(id => id < 0 || id >= model.Config.DVocabOut, -1) is var bad and not -1)
            throw new SharpLensException($"{answersFile}: token id {bad} is outside the vocabulary [0, {model.Config.DVocabOut}).");
        var answers = tensor(answerIds.SelectMany(a => a).ToArray(), [answerIds.Length, 2], ScalarType.Int64);
        var ig = IntegratedGradients.Run(model, tokens, l => LogitDiff.PerPrompt(l, answers), steps);
        // The mean metric gives each prompt a 1/batch share: scale back so a prompt's row is in logit-difference units.
        var perToken = ig.Attributions * tokens.shape[0];
        var rows = new JsonArray();
        var report_ = report is null ? null : new HtmlReport($"Integrated gradients — {modelName}");
        for (int b = 0; b < tokens.shape[0]; b++)
        {
            var str = model.Tokenizer is null ? tokens[b].data<long>().Select(i => i.ToString(CultureInfo.InvariantCulture)).ToList() : model.ToStrTokens(tokens[b]);
            var vals = perToken[b].data<float>().ToArray();
            float scale = Math.Max(1e-12f, vals.Max(Math.Abs));
            stdout.WriteLine($"prompt {b}: logit diff {ig.MetricInputPerPrompt[b].item<float>():F4}, baseline {ig.MetricBaselinePerPrompt[b].item<float>():F4}");
            for (int p = 0; p < vals.Length; p++) stdout.WriteLine($"  {p,4}  {str[p],-20} {vals[p],10:F4}");
            rows.Add(new JsonObject { ["tokens"] = new JsonArray(str.Select(s => (JsonNode)s).ToArray()), ["attributions"] = new JsonArray(vals.Select(v => (JsonNode)v).ToArray()),
                ["metric"] = ig.MetricInputPerPrompt[b].item<float>(), ["baseline_metric"] = ig.MetricBaselinePerPrompt[b].item<float>() });
            report_?.AddTable($"prompt {b}", ["pos", "token", "attribution"], vals.Select((v, p) => (IReadOnlyList<ReportCell>)
                [new ReportCell(p.ToString(CultureInfo.InvariantCulture)), new ReportCell(str[p], Colour(v / scale), Bold: true), new ReportCell(v.ToString("F4", CultureInfo.InvariantCulture), Colour(v / scale))]).ToList());
        }
        stdout.WriteLine($"completeness gap {ig.CompletenessGap.ToString("G4", CultureInfo.InvariantCulture)} ({steps} steps)");
        DlaOutput.WriteOutputs(stdout, // all or none
            (json, () => DlaOutput.ToJsonText(new JsonObject { ["method"] = "integrated_gradients", ["dtype"] = ModelDtype.Name(model.Dtype), ["baseline"] = "zero token embedding",
                ["steps"] = steps, ["completeness_gap"] = ig.CompletenessGap, ["prompts"] = rows })),
            (report, () => report_!.Render()));
        return Task.FromResult(0);
    }

    /// <summary>Red for positive, blue for negative (TransformerLens's RdBu look), intensity by |v| ≤ 1.</summary>
    private static ReportColor Colour(float v)
    {
        byte fade = (byte)(200 * (1 - Math.Min(1, Math.Abs(v))));
        return v >= 0 ? new ReportColor(178, fade, fade) : new ReportColor(fade, fade, 172);
    }
}
