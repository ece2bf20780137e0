using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Analysis;
using SharpLens.Gradients;
using SharpLens.Model;
using SharpLens.Sae;
using static TorchSharp.torch;

namespace SharpLens.Cluster;

/// <summary>Merged result of a patching sweep (the same numbers <c>sharplens patch</c> gives for the whole dataset).</summary>
/// <param name="Axes">Axis names of the values, e.g. ["layer", "pos"].</param>
/// <param name="Shape">Shape of the values.</param>
/// <param name="Values">Metric after each patch, row-major.</param>
/// <param name="CleanMetric">Mean logit difference of the clean run.</param>
/// <param name="CorruptedMetric">Mean logit difference of the corrupted run.</param>
public sealed record PatchSweepResult(string[] Axes, long[] Shape, double[] Values, double CleanMetric, double CorruptedMetric);

/// <summary>
/// Runs one work item of each analysis and merges per-item results. Every merged quantity is either a mean over
/// prompts (merged as the prompt-count-weighted mean of the items' means) or a per-prompt row (concatenated in dataset
/// order), so the merged result equals one process running the whole dataset up to float summation order.
/// </summary>
public static class SweepAnalyses
{
    /// <summary>Runs work item <paramref name="item"/> of <paramref name="spec"/> on <paramref name="model"/>; the result is JSON.</summary>
    public static string RunItem(HookedTransformer model, SweepSpec spec, int item, SparseAutoencoder? sae = null)
    {
        var prompts = spec.ItemPrompts(item);
        using var scope = NewDisposeScope();
        var answers = tensor(prompts.SelectMany(p => new long[] { p.CorrectId, p.IncorrectId }).ToArray(), [prompts.Count, 2]);
        var o = new JsonObject { ["count"] = prompts.Count };
        switch (spec.Analysis)
        {
            case SweepAnalysis.Patch:
            case SweepAnalysis.Attribution:
            {
                var kind = PatchKindNames.Parse(spec.Kind ?? "");
                var direction = spec.Direction == "noising" ? PatchDirection.Noising : PatchDirection.Denoising;
                var clean = PromptTensors.RightPadded(prompts.Select(p => p.Ids).ToList(), 0).Tokens;
                var corrupted = PromptTensors.RightPadded(prompts.Select(p => p.CorruptedIds
                    ?? throw new SharpLensException("A patching sweep needs a corrupted prompt for every clean prompt.")).ToList(), 0).Tokens;
                Tensor Metric(Tensor logits) => LogitDiff.Mean(logits, answers);
                PatchingResult result;
                if (spec.Analysis == SweepAnalysis.Attribution)
                    result = AttributionPatching.Run(model, [kind], clean, corrupted, Metric, direction).Single().ToPatchingResult();
                else
                {
                    // As 'sharplens patch': run the target prompts with the source prompts' activations.
                    var (source, target) = direction == PatchDirection.Denoising ? (clean, corrupted) : (corrupted, clean);
                    var (_, cache) = model.RunWithCache(source);
                    using (cache) result = Patching.Run(model, kind, target, cache, Metric);
                }
                // Every value is a mean over the item's prompts (the metric is the mean logit difference, and attribution's
                // gradient of that mean carries the 1/count), so items merge as prompt-count-weighted means.
                o["axes"] = new JsonArray(result.Axes.Select(a => (JsonNode)a).ToArray());
                o["shape"] = new JsonArray(result.Values.shape.Select(d => (JsonNode)d).ToArray());
                o["values"] = Numbers(result.Values.to_type(ScalarType.Float64).data<double>().ToArray());
                o["clean_metric"] = (double)Metric(model.Forward(clean)).item<float>();
                o["corrupted_metric"] = (double)Metric(model.Forward(corrupted)).item<float>();
                break;
            }
            case SweepAnalysis.Dla:
            {
                var (tokens, lengths) = PromptTensors.RightPadded(prompts.Select(p => p.Ids).ToList(), PromptTensors.PadId(model));
                var r = DirectLogitAttribution.Run(model, tokens, answers, lengths, topK: 0);
                o["logit_diffs"] = Numbers(r.LogitDiffs.Select(v => (double)v));
                o["avg_logit_diff"] = r.AvgLogitDiff;
                o["identity_error"] = r.IdentityError;
                o["identity_error_with_bias"] = r.IdentityErrorWithBias;
                o["bias_term"] = r.BiasTerm;
                o["logit_soft_cap"] = r.LogitSoftCap;
                o["uncapped_avg_logit_diff"] = r.UncappedAvgLogitDiff;
                o["identity_error_with_bias_uncapped"] = r.IdentityErrorWithBiasUncapped;
                o["decomposition_sum_error"] = r.DecompositionSumError;
                o["head_sum_error"] = r.HeadSumError;
                o["notes"] = new JsonArray(r.Notes.Select(n => (JsonNode)n).ToArray());
                o["accumulated_labels"] = new JsonArray(r.AccumulatedLabels.Select(l => (JsonNode)l).ToArray());
                o["accumulated"] = Numbers(r.AccumulatedLogitDiffs.Select(v => (double)v));
                o["decomposed_labels"] = new JsonArray(r.DecomposedLabels.Select(l => (JsonNode)l).ToArray());
                o["decomposed"] = Numbers(r.DecomposedLogitDiffs.Select(v => (double)v));
                o["heads"] = Numbers(r.HeadLogitDiffs.Cast<float>().Select(v => (double)v));
                break;
            }
            case SweepAnalysis.SaeStats:
            {
                if (sae is null) throw new SharpLensException("An SAE statistics sweep needs an SAE (--sae).");
                var (tokens, lengths) = PromptTensors.RightPadded(prompts.Select(p => p.Ids).ToList(), PromptTensors.PadId(model));
                var real = (arange(tokens.shape[1]).unsqueeze(0) < tensor(lengths.Select(l => (long)l).ToArray()).unsqueeze(1)); // [b, p]
                string actsName = sae.HookName + ".hook_sae_acts_post";
                bool padded = lengths.Any(l => l != tokens.shape[1]);
                var (_, cache) = model.RunWithCacheWithSaes(tokens, [sae], namesFilter: n => n == actsName,
                    attentionMask: padded ? real.to_type(ScalarType.Int64) : null);
                using (cache)
                {
                    var acts = cache[actsName].masked_select(real.unsqueeze(-1)).view(-1, sae.Config.DSae); // [real tokens, d_sae]
                    var fires = acts.gt(0).to_type(ScalarType.Float64);
                    o["tokens"] = acts.shape[0];
                    o["fire_counts"] = Numbers(fires.sum(0L).data<double>().ToArray());
                    o["activation_sums"] = Numbers(acts.to_type(ScalarType.Float64).sum(0L).data<double>().ToArray());
                    o["l0_sum"] = fires.sum().item<double>();
                }
                break;
            }
            default:
                throw new SharpLensException($"Unknown sweep analysis '{spec.Analysis}'. Allowed: {string.Join(", ", SweepAnalysis.All)}.");
        }
        return o.ToJsonString();
    }

    /// <summary>Merges a patching sweep's item results (exact or attribution, in dataset order).</summary>
    public static PatchSweepResult MergePatch(IReadOnlyList<string> itemResults)
    {
        var items = itemResults.Select(r => JsonNode.Parse(r)!.AsObject()).ToList();
        var first = items[0];
        long[] shape = first["shape"]!.AsArray().Select(x => x!.GetValue<long>()).ToArray();
        var weights = Weights(items);
        var values = new double[shape.Aggregate(1L, (a, b) => a * b)];
        double clean = 0, corrupted = 0;
        for (int i = 0; i < items.Count; i++)
        {
            var v = Doubles(items[i]["values"]!);
            if (v.Length != values.Length) throw new SharpLensException($"Sweep item {i} has {v.Length} values, item 0 has {values.Length}.");
            for (int j = 0; j < v.Length; j++) values[j] += weights[i] * v[j];
            clean += weights[i] * items[i]["clean_metric"]!.GetValue<double>();
            corrupted += weights[i] * items[i]["corrupted_metric"]!.GetValue<double>();
        }
        return new PatchSweepResult(first["axes"]!.AsArray().Select(a => a!.GetValue<string>()).ToArray(), shape, values, clean, corrupted);
    }

    /// <summary>Merges a DLA sweep's item results (in dataset order) into the result one run over every prompt gives.</summary>
    public static DlaResult MergeDla(IReadOnlyList<string> itemResults, int nLayers, int nHeads, int topK)
    {
        var items = itemResults.Select(r => JsonNode.Parse(r)!.AsObject()).ToList();
        var weights = Weights(items);
        double[] Mean(string key)
        {
            double[]? acc = null;
            for (int i = 0; i < items.Count; i++)
            {
                var v = Doubles(items[i][key]!);
                acc ??= new double[v.Length];
                for (int j = 0; j < v.Length; j++) acc[j] += weights[i] * v[j];
            }
            return acc!;
        }
        double Scalar(string key) => items.Select((o, i) => weights[i] * o[key]!.GetValue<double>()).Sum();
        var heads = Mean("heads");
        var headArr = new float[nLayers, nHeads];
        for (int l = 0; l < nLayers; l++)
            for (int h = 0; h < nHeads; h++) headArr[l, h] = (float)heads[l * nHeads + h];
        static List<string> Labels(JsonObject o, string key) => o[key]!.AsArray().Select(a => a!.GetValue<string>()).ToList();
        return new DlaResult
        {
            LogitDiffs = items.SelectMany(o => Doubles(o["logit_diffs"]!)).Select(v => (float)v).ToArray(),
            AvgLogitDiff = (float)Scalar("avg_logit_diff"),
            IdentityError = Scalar("identity_error"),
            IdentityErrorWithBias = Scalar("identity_error_with_bias"),
            BiasTerm = Scalar("bias_term"),
            AccumulatedLabels = Labels(items[0], "accumulated_labels"),
            AccumulatedLogitDiffs = Mean("accumulated").Select(v => (float)v).ToArray(),
            DecomposedLabels = Labels(items[0], "decomposed_labels"),
            DecomposedLogitDiffs = Mean("decomposed").Select(v => (float)v).ToArray(),
            HeadLogitDiffs = headArr,
            TopHeads = DirectLogitAttribution.TopHeads(headArr, topK),
            TopHeadPatterns = [],
            PatternPrompt = 0,
            LogitSoftCap = items[0]["logit_soft_cap"]?.GetValue<double>(),
            UncappedAvgLogitDiff = (float)Scalar("uncapped_avg_logit_diff"),
            IdentityErrorWithBiasUncapped = Scalar("identity_error_with_bias_uncapped"),
            DecompositionSumError = items.Max(o => o["decomposition_sum_error"]!.GetValue<double>()),
            HeadSumError = items.Max(o => o["head_sum_error"]!.GetValue<double>()),
            Notes = items.SelectMany(o => Labels(o, "notes")).Distinct().ToList(),
        };
    }

    /// <summary>Merges an SAE statistics sweep: firing counts and activation sums add up over items.</summary>
    public static JsonObject MergeSaeStats(IReadOnlyList<string> itemResults, SweepSpec spec, SaeConfig sae, int topK)
    {
        var items = itemResults.Select(r => JsonNode.Parse(r)!.AsObject()).ToList();
        double tokens = items.Sum(o => o["tokens"]!.GetValue<double>());
        double[] Sum(string key)
        {
            var acc = new double[sae.DSae];
            foreach (var o in items)
            {
                var v = Doubles(o[key]!);
                for (int j = 0; j < acc.Length; j++) acc[j] += v[j];
            }
            return acc;
        }
        var fires = Sum("fire_counts");
        var sums = Sum("activation_sums");
        var frequency = fires.Select(f => tokens > 0 ? f / tokens : 0).ToArray();
        return new JsonObject
        {
            ["model"] = spec.Model,
            ["dtype"] = spec.Dtype,
            ["sae"] = new JsonObject
            {
                ["location"] = spec.Sae, ["hook_name"] = sae.HookName, ["architecture"] = SaeConfig.ArchitectureNames[(int)sae.Architecture],
                ["d_in"] = sae.DIn, ["d_sae"] = sae.DSae,
            },
            ["prompts"] = spec.Prompts.Length,
            ["tokens"] = tokens,
            ["l0_mean"] = tokens > 0 ? items.Sum(o => o["l0_sum"]!.GetValue<double>()) / tokens : 0,
            ["dead_features"] = fires.Count(f => f == 0),
            ["feature_frequency"] = Numbers(frequency),
            ["feature_mean_activation"] = Numbers(sums.Select(v => tokens > 0 ? v / tokens : 0)),
            ["top_features"] = new JsonArray(Enumerable.Range(0, sae.DSae).OrderByDescending(i => fires[i]).ThenBy(i => i).Take(topK)
                .Select(i => (JsonNode)new JsonObject { ["id"] = i, ["frequency"] = frequency[i], ["mean_activation"] = tokens > 0 ? sums[i] / tokens : 0 })
                .ToArray()),
        };
    }

    /// <summary>Each item's share of the prompts (its mean's weight in the dataset mean).</summary>
    private static double[] Weights(IReadOnlyList<JsonObject> items)
    {
        var counts = items.Select(o => o["count"]!.GetValue<double>()).ToArray();
        double total = counts.Sum();
        return counts.Select(c => c / total).ToArray();
    }

    private static JsonArray Numbers(IEnumerable<double> values) => new(values.Select(v => (JsonNode)v).ToArray());

    private static double[] Doubles(JsonNode array) => array.AsArray().Select(x => x!.GetValue<double>()).ToArray();
}
