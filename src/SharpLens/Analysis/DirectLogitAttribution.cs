using SharpLens.Cache;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>A head and its direct contribution to the logit difference.</summary>
/// <param name="Layer">Layer index.</param>
/// <param name="Head">Head index.</param>
/// <param name="LogitDiff">Mean contribution to the logit difference over prompts.</param>
public sealed record HeadScore(int Layer, int Head, float LogitDiff)
{
    /// <summary>TransformerLens-style label, e.g. <c>L9H6</c>.</summary>
    public string Label => $"L{Layer}H{Head}";
}

/// <summary>Attention pattern of one head on one prompt.</summary>
/// <param name="Layer">Layer index.</param>
/// <param name="Head">Head index.</param>
/// <param name="Pattern">[destination, source] weights over the prompt's real tokens.</param>
public sealed record HeadPattern(int Layer, int Head, float[,] Pattern);

/// <summary>Everything the seed notebook's direct-logit-attribution analysis computes, as plain numbers.</summary>
public sealed record DlaResult
{
    /// <summary>Per-prompt logit difference (correct − incorrect) at each prompt's final position.</summary>
    public required float[] LogitDiffs { get; init; }
    /// <summary>Mean of <see cref="LogitDiffs"/>.</summary>
    public required float AvgLogitDiff { get; init; }
    /// <summary>Seed check: scaled final residual · logit-diff directions / batch − average logit difference.</summary>
    public required double IdentityError { get; init; }
    /// <summary>The same check with the unembedding-bias difference added (exact up to float rounding).</summary>
    public required double IdentityErrorWithBias { get; init; }
    /// <summary>Mean unembedding-bias difference b_U[correct] − b_U[incorrect].</summary>
    public required double BiasTerm { get; init; }
    /// <summary>Labels of the accumulated residual stream (<c>0_pre, 0_mid, ..., final_post</c>).</summary>
    public required IReadOnlyList<string> AccumulatedLabels { get; init; }
    /// <summary>Logit difference read from the accumulated residual at each label (cached final LN scale).</summary>
    public required float[] AccumulatedLogitDiffs { get; init; }
    /// <summary>Labels of the decomposed residual stream (<c>embed, pos_embed, 0_attn_out, ...</c>).</summary>
    public required IReadOnlyList<string> DecomposedLabels { get; init; }
    /// <summary>Direct logit difference of each component.</summary>
    public required float[] DecomposedLogitDiffs { get; init; }
    /// <summary>Direct logit difference of every head [layer, head].</summary>
    public required float[,] HeadLogitDiffs { get; init; }
    /// <summary>Heads with the largest |direct logit difference|, largest first.</summary>
    public required IReadOnlyList<HeadScore> TopHeads { get; init; }
    /// <summary>Attention patterns of <see cref="TopHeads"/> on prompt <see cref="PatternPrompt"/>.</summary>
    public required IReadOnlyList<HeadPattern> TopHeadPatterns { get; init; }
    /// <summary>Index of the prompt whose attention patterns are shown.</summary>
    public required int PatternPrompt { get; init; }
    /// <summary>The model's final-logit soft cap (<c>output_logits_soft_cap</c>), or null when logits are not capped.</summary>
    public double? LogitSoftCap { get; init; }
    /// <summary>
    /// Mean logit difference of the uncapped logits (<c>unembed.hook_out</c>); equals <see cref="AvgLogitDiff"/> without
    /// a soft cap. Every attribution here is linear in these, not in the capped logits.
    /// </summary>
    public float UncappedAvgLogitDiff { get; init; }
    /// <summary>The seed check with the bias term against the uncapped logit difference (exact up to float rounding, cap or not).</summary>
    public double IdentityErrorWithBiasUncapped { get; init; }
    /// <summary>Max |Σ decomposed components − final residual| at the prompts' final positions (0 up to rounding for pre-norm blocks).</summary>
    public double DecompositionSumError { get; init; }
    /// <summary>Max over layers of |Σ head results − (attn_out − b_O)| at the final positions (0 up to rounding without post-attention norms).</summary>
    public double HeadSumError { get; init; }
    /// <summary>Statements about what does not add up for this architecture (soft cap, post-norm, sandwich norms); empty when everything sums.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>
/// The seed notebook's analysis: cache the run, measure the logit difference, and attribute it to the accumulated
/// residual stream, to each component and to each head through the cached final LayerNorm scale.
/// </summary>
public static class DirectLogitAttribution
{
    /// <summary>
    /// Runs the analysis. <paramref name="tokens"/> [batch, pos]; <paramref name="answerTokens"/> [batch, 2]
    /// (correct, incorrect); <paramref name="lengths"/> each prompt's real length when right-padded (null: all full).
    /// </summary>
    public static DlaResult Run(HookedTransformer model, Tensor tokens, Tensor answerTokens, int[]? lengths = null,
        int topK = 10, int patternPrompt = 0, IProgress<string>? progress = null)
    {
        long batch = tokens.shape[0], pos = tokens.shape[1];
        if (lengths is not null && lengths.Length != batch)
            throw new SharpLensException($"DLA: {lengths.Length} lengths given for {batch} prompts.");
        if (patternPrompt < 0 || patternPrompt >= batch)
            throw new SharpLensException($"DLA: pattern prompt {patternPrompt} is out of range 0..{batch - 1}.");
        bool padded = lengths is not null && lengths.Any(l => l != pos);
        using var scope = NewDisposeScope();
        Tensor? mask = null, finalPos = null;
        if (padded)
        {
            mask = (arange(pos).unsqueeze(0) < tensor(lengths!.Select(l => (long)l).ToArray()).unsqueeze(1)).to_type(ScalarType.Int64);
            finalPos = tensor(lengths!.Select(l => (long)l - 1).ToArray());
        }
        progress?.Report("running the model with every activation cached");
        var (logits, cache) = model.RunWithCache(tokens, attentionMask: mask);
        using (cache)
        {
            var perPrompt = LogitDiff.PerPrompt(logits, answerTokens, finalPos);
            var avg = perPrompt.mean();
            var dirs = model.TokensToResidualDirections(answerTokens);                // [b, 2, d]
            var diffDirs = dirs[.., 0] - dirs[.., 1];                                   // [b, d]

            // Project a [components, b, pos, d] stack, scaled by the cached final LN scale, on the directions.
            Tensor Project(Tensor stackAllPos)
            {
                var scaled = cache.ApplyLnToStack(stackAllPos, -1);
                var final = LogitDiff.FinalPosition(scaled, finalPos);                                    // [c, b, d]
                return einsum("cbd,bd->c", final, diffDirs) / batch;
            }

            progress?.Report("checking the seed's identity");
            // Projections, sums and checks in float32 whatever the model's dtype (bfloat16 caches are widened here).
            static Tensor Up(Tensor t) => Model.Components.Ops.Up(t);
            var finalResid = Up(cache[$"blocks.{model.Config.NLayers - 1}.hook_resid_post"]);
            var projected = Project(finalResid.unsqueeze(0))[0];
            var bU = Up(model.b_U);
            var biasTerm = (bU.index_select(0, answerTokens[.., 0]) - bU.index_select(0, answerTokens[.., 1])).mean();

            progress?.Report("accumulated and decomposed residual stream");
            var (accStack, accLabels) = cache.AccumulatedResid(-1, inclMid: !model.Config.ParallelAttnMlp); // parallel blocks have no resid_mid
            var acc = Project(accStack);
            var (decStack, decLabels) = cache.DecomposeResid(-1);
            decStack = Up(decStack);
            var dec = Project(decStack);

            progress?.Report("per-head direct logit attribution");
            var (headStack, _) = cache.StackHeadResults(-1);
            headStack = Up(headStack);
            var heads = Project(headStack).reshape(model.Config.NLayers, model.Config.NHeads);

            var headArr = heads.ToArray2D();
            var top = TopHeads(headArr, topK);
            int len = lengths?[patternPrompt] ?? (int)pos;
            var patterns = top.Select(s => new HeadPattern(s.Layer, s.Head,
                cache[$"blocks.{s.Layer}.attn.hook_pattern"][patternPrompt, s.Head].narrow(0, 0, len).narrow(1, 0, len).ToArray2D())).ToList();

            double og = avg.item<float>();
            double proj = projected.item<float>();
            double uncapped = LogitDiff.PerPrompt(cache["unembed.hook_out"], answerTokens, finalPos).mean().item<float>();

            progress?.Report("checking which decompositions sum");
            var cfg = model.Config;
            var finalResidAtEnd = LogitDiff.FinalPosition(finalResid.unsqueeze(0), finalPos)[0];                 // [b, d]
            double scaleOfResid = Math.Max(1.0, finalResidAtEnd.abs().max().item<float>());
            double decError = (LogitDiff.FinalPosition(decStack, finalPos).sum(dim: 0) - finalResidAtEnd).abs().max().item<float>();
            var headsAtEnd = LogitDiff.FinalPosition(headStack, finalPos)
                .reshape(cfg.NLayers, cfg.NHeads, batch, cfg.DModel).sum(1);                                     // [L, b, d]
            var attnOuts = stack(Enumerable.Range(0, cfg.NLayers)
                .Select(l => LogitDiff.FinalPosition(Up(cache[$"blocks.{l}.hook_attn_out"]).unsqueeze(0), finalPos)[0] - Up(model.b_O[l])).ToArray());
            double headError = (headsAtEnd - attnOuts).abs().max().item<float>();
            var notes = Notes(cfg, og, uncapped, proj + biasTerm.item<float>() - uncapped, decError, headError, 1e-3 * scaleOfResid);
            return new DlaResult
            {
                LogitDiffs = perPrompt.data<float>().ToArray(),
                AvgLogitDiff = (float)og,
                IdentityError = proj - og,
                IdentityErrorWithBias = proj + biasTerm.item<float>() - og,
                BiasTerm = biasTerm.item<float>(),
                AccumulatedLabels = accLabels,
                AccumulatedLogitDiffs = acc.data<float>().ToArray(),
                DecomposedLabels = decLabels,
                DecomposedLogitDiffs = dec.data<float>().ToArray(),
                HeadLogitDiffs = headArr,
                TopHeads = top,
                TopHeadPatterns = patterns,
                PatternPrompt = patternPrompt,
                LogitSoftCap = cfg.OutputLogitsSoftCap,
                UncappedAvgLogitDiff = (float)uncapped,
                IdentityErrorWithBiasUncapped = proj + biasTerm.item<float>() - uncapped,
                DecompositionSumError = decError,
                HeadSumError = headError,
                Notes = notes,
            };
        }
    }

    /// <summary>The <paramref name="topK"/> heads with the largest |logit difference| (ties: lower layer, then head first).</summary>
    public static IReadOnlyList<HeadScore> TopHeads(float[,] headLogitDiffs, int topK) =>
        Enumerable.Range(0, headLogitDiffs.GetLength(0))
            .SelectMany(l => Enumerable.Range(0, headLogitDiffs.GetLength(1)).Select(h => new HeadScore(l, h, headLogitDiffs[l, h])))
            .OrderByDescending(s => Math.Abs(s.LogitDiff)).ThenBy(s => s.Layer).ThenBy(s => s.Head)
            .Take(Math.Max(0, topK)).ToList();

    /// <summary>What a reader must know before taking the identity or the decompositions at face value.</summary>
    private static List<string> Notes(HookedTransformerConfig cfg, double capped, double uncapped, double uncappedIdentityError,
        double decError, double headError, double tolerance)
    {
        var notes = new List<string>();
        string F(double v) => v.ToString("G4", System.Globalization.CultureInfo.InvariantCulture);
        if (cfg.OutputLogitsSoftCap is { } cap)
            notes.Add($"Logits are soft-capped (cap·tanh(logit/cap), cap {F(cap)}): the average logit difference is {F(capped)} capped " +
                $"and {F(uncapped)} uncapped. Every attribution is linear in the uncapped logits, so the seed identity holds for the " +
                $"uncapped value (error {F(uncappedIdentityError)} with the bias term), not for the capped one.");
        if (Math.Abs(uncappedIdentityError) > 1e-3 * Math.Max(1, Math.Abs(uncapped)))
            notes.Add(cfg.NormalizationType is "LN" or "RMS"
                ? $"The final norm's weight is not folded into W_U (fold_ln was not applied{(cfg.UsePostNormBlock ? ": post-norm blocks" : "")}), " +
                  $"so the scaled residual projected on the W_U answer directions misses it: the seed identity is off by {F(uncappedIdentityError)}. " +
                  "Attributions below are projections without that weight."
                : $"The seed identity is off by {F(uncappedIdentityError)} (with the bias term, uncapped logits).");
        if (decError > tolerance)
            notes.Add(cfg.UsePostNormBlock
                ? $"Post-norm blocks: hook_attn_out / hook_mlp_out are taken before ln1 / ln2, so the decomposed components do not sum " +
                  $"to the final residual (they miss it by up to {F(decError)}); their attributions are not a decomposition of the logit difference."
                : $"The decomposed components do not sum to the final residual (they miss it by up to {F(decError)}).");
        if (headError > tolerance)
            notes.Add(cfg.UseNormalizationBeforeAndAfter
                ? $"Sandwich norms: per-head results are taken before ln1_post, so a layer's heads do not sum to its attn_out " +
                  $"(up to {F(headError)} apart); head attributions rank heads but do not add up to the layer's attribution."
                : $"Per-head results do not sum to attn_out − b_O (up to {F(headError)} apart).");
        return notes;
    }
}
