using System.Globalization;
using SharpLens.Analysis;
using SharpLens.Model;
using SharpLens.Visualization;

namespace SharpLens.Cli.Dla;

/// <summary>The offline HTML report of a DLA run: the seed's tables plus layer, component and head attributions.</summary>
internal static class DlaReport
{
    private static string F3(double v) => v.ToString("F3", CultureInfo.InvariantCulture);

    public static HtmlReport Build(HookedTransformer model, string modelName, string title, IReadOnlyList<DlaPrompt> prompts, DlaResult r)
    {
        var report = new HtmlReport($"{title} — {modelName}");
        report.AddParagraph($"Model {modelName}: {model.Config.NLayers} layers, {model.Config.NHeads} heads per layer, d_model {model.Config.DModel}. " +
            "Logit difference = logit(correct) − logit(incorrect) at each prompt's final position; attributions use the cached final LayerNorm scale.");

        report.AddTable("prompts and answers", ["prompt", "clean", "corrupted"],
            prompts.Select(p => (IReadOnlyList<ReportCell>)[p.Prompt, p.Correct, p.Incorrect]).ToList());
        report.AddTable("Logit differences", ["Prompt", "Correct", "Incorrect", "Logit Difference", "Avg Logit Difference"],
            prompts.Select((p, i) => (IReadOnlyList<ReportCell>)[p.Prompt, ReportCell.Correct(p.Correct), ReportCell.Incorrect(p.Incorrect),
                ReportCell.Strong(F3(r.LogitDiffs[i])), ReportCell.Strong(i == 0 ? F3(r.AvgLogitDiff) : "")]).ToList());
        report.AddParagraph($"Average logit difference: {r.AvgLogitDiff.ToString("F4", CultureInfo.InvariantCulture)}. " +
            $"Seed check (scaled final residual projected on the logit-difference directions − average logit difference): " +
            $"{r.IdentityError.ToString("E3", CultureInfo.InvariantCulture)}; with the unembedding-bias term: " +
            $"{r.IdentityErrorWithBias.ToString("E3", CultureInfo.InvariantCulture)}." +
            (r.LogitSoftCap is null ? "" : $" Against the uncapped logits (average {r.UncappedAvgLogitDiff.ToString("F4", CultureInfo.InvariantCulture)}): " +
                $"{r.IdentityErrorWithBiasUncapped.ToString("E3", CultureInfo.InvariantCulture)}."));
        foreach (var note in r.Notes) report.AddParagraph("Note: " + note);

        report.AddHeading("Where the answer forms");
        report.AddFigure(Plots.Line("Logit difference from the accumulated residual stream", r.AccumulatedLabels,
            [new PlotSeries("logit diff", r.AccumulatedLogitDiffs)], "layer", "logit difference"));
        report.AddFigure(Plots.Bar("Direct logit attribution by component", r.DecomposedLabels, r.DecomposedLogitDiffs, "component", "logit difference"));
        var layers = Enumerable.Range(0, model.Config.NLayers).Select(l => l.ToString(CultureInfo.InvariantCulture)).ToList();
        var heads = Enumerable.Range(0, model.Config.NHeads).Select(h => h.ToString(CultureInfo.InvariantCulture)).ToList();
        report.AddFigure(Plots.Heatmap("Direct logit attribution per head", r.HeadLogitDiffs, heads, layers, "head", "layer"));
        report.AddTable($"Top {r.TopHeads.Count} heads by |direct logit attribution|", ["head", "layer", "index", "logit diff"],
            r.TopHeads.Select(h => (IReadOnlyList<ReportCell>)[h.Label, h.Layer.ToString(CultureInfo.InvariantCulture),
                h.Head.ToString(CultureInfo.InvariantCulture),
                h.LogitDiff >= 0 ? ReportCell.Correct(F3(h.LogitDiff)) : ReportCell.Incorrect(F3(h.LogitDiff))]).ToList());

        if (r.TopHeadPatterns.Count > 0)
        {
            var p = prompts[r.PatternPrompt];
            report.AddHeading("Attention patterns of the top heads");
            var view = new AttentionView($"Prompt {r.PatternPrompt}: {p.Prompt}", DlaOutput.StrTokens(model, p));
            foreach (var hp in r.TopHeadPatterns) view.AddHead($"L{hp.Layer}H{hp.Head}", hp.Pattern);
            report.AddAttentionView(view);
        }
        return report;
    }
}
