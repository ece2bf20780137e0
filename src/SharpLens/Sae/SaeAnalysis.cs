using SharpLens.Hooks;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Sae;

/// <summary>
/// How well an SAE reconstructs the activations it was given (plain definitions; hook_z activations flattened to
/// [..., d_in]). Tensors belong to the caller's dispose scope.
/// </summary>
/// <param name="L0PerToken">Active features per token [batch, pos].</param>
/// <param name="L0Mean">Mean of <paramref name="L0PerToken"/>.</param>
/// <param name="L1PerToken">Sum of feature activations per token.</param>
/// <param name="MsePerToken">Mean squared error over d_in per token.</param>
/// <param name="Mse">Mean squared error over all tokens and d_in.</param>
/// <param name="ExplainedVariance"><c>1 − Σ‖x − x̂‖² / Σ‖x − mean_tokens(x)‖²</c> over all tokens.</param>
/// <param name="CosSimPerToken">Cosine similarity of input and reconstruction per token.</param>
public sealed record SaeReconstructionMetrics(Tensor L0PerToken, double L0Mean, Tensor L1PerToken, Tensor MsePerToken, double Mse,
    double ExplainedVariance, Tensor CosSimPerToken);

/// <summary>
/// Next-token cross-entropy with the SAE spliced in (no error term) vs the clean model vs the hook zero-ablated, and
/// the KL divergence from the clean predictions (SAELens's <c>get_recons_loss</c>). Per-token tensors
/// [batch, pos−1] (KL: [batch, pos]) belong to the caller's dispose scope.
/// </summary>
public sealed record SaeCrossEntropy(Tensor CleanPerToken, Tensor WithSaePerToken, Tensor ZeroAblationPerToken, Tensor KlWithSae,
    Tensor KlWithAblation, double Clean, double WithSae, double ZeroAblation)
{
    /// <summary>The CE loss score <c>(ablation − with SAE) / (ablation − clean)</c>: 1 = as good as the model, 0 = as bad as removing the activation.</summary>
    public double Score => (ZeroAblation - WithSae) / (ZeroAblation - Clean);
}

/// <summary>Feature-level analysis of an SAE on a model: activations, top features, metrics, CE losses, direct logit attribution, ablation.</summary>
public static class SaeAnalysis
{
    /// <summary>The clean activation at the SAE's hook (<c>sae_in</c>), in the hook's own shape.</summary>
    public static Tensor HookActivation(HookedTransformer model, SparseAutoencoder sae, Tensor tokens)
    {
        var (logits, cache) = model.RunWithCache(tokens, [sae.HookName]);
        using (cache)
        {
            logits.Dispose();
            return cache[sae.HookName].alias();
        }
    }

    /// <summary>Feature activations [batch, pos, d_sae] on the clean model's activation at the SAE's hook.</summary>
    public static Tensor FeatureActivations(HookedTransformer model, SparseAutoencoder sae, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        return sae.Encode(HookActivation(model, sae, tokens)).MoveToOuterDisposeScope();
    }

    /// <summary>The <paramref name="k"/> strongest features of every token: values and feature ids [..., k], strongest first.</summary>
    public static (Tensor Values, Tensor Indices) TopFeatures(Tensor featureActs, int k)
    {
        if (k <= 0) throw new SharpLensException($"top-k must be positive, got {k}.");
        var (values, indices) = featureActs.topk(Math.Min(k, (int)featureActs.shape[^1]), dim: -1);
        return (values, indices);
    }

    /// <summary>Fraction of tokens each feature fires on [d_sae].</summary>
    public static Tensor FeatureFrequency(Tensor featureActs)
    {
        using var scope = NewDisposeScope();
        return (featureActs > 0).to_type(ScalarType.Float32).reshape(-1, featureActs.shape[^1]).mean([0]).MoveToOuterDisposeScope();
    }

    /// <summary>L0, L1, MSE, explained variance and cosine similarity of the SAE's reconstruction of <paramref name="x"/> (an activation at its hook).</summary>
    public static SaeReconstructionMetrics Reconstruction(SparseAutoencoder sae, Tensor x)
    {
        using var scope = NewDisposeScope();
        var acts = sae.Encode(x);
        var flat = sae.FlattenInput(x);
        var recons = sae.FlattenInput(sae.Decode(acts));
        var err = (flat - recons).pow(2);
        var l0 = (acts > 0).sum(-1).to_type(ScalarType.Float32);
        var tokensFlat = flat.reshape(-1, flat.shape[^1]);
        double ev = 1 - (err.sum().item<float>() / (tokensFlat - tokensFlat.mean([0], keepdim: true)).pow(2).sum().item<float>());
        var cos = nn.functional.cosine_similarity(flat, recons, dim: -1);
        var m = new SaeReconstructionMetrics(l0.MoveToOuterDisposeScope(), l0.mean().item<float>(), acts.sum(-1).MoveToOuterDisposeScope(),
            err.mean([-1]).MoveToOuterDisposeScope(), err.mean().item<float>(), ev, cos.MoveToOuterDisposeScope());
        return m;
    }

    /// <summary>Cross-entropy and KL with the SAE spliced in (no error term), clean, and with the hook's activation replaced by zeros.</summary>
    public static SaeCrossEntropy CrossEntropy(HookedTransformer model, SparseAutoencoder sae, Tensor tokens)
    {
        using var scope = NewDisposeScope();
        var clean = model.Forward(tokens);
        var withSae = model.RunWithSaes(tokens, [sae], useErrorTerm: false);
        var ablated = model.RunWithHooks(tokens, [Hook.At(sae.HookName, (a, _) => zeros_like(a))]);
        var toks = tokens.dim() == 1 ? tokens.unsqueeze(0) : tokens;
        Tensor Ce(Tensor logits) => HookedTransformer.LossFromLogits(logits, toks, perToken: true);
        var logClean = clean.log_softmax(-1);
        Tensor Kl(Tensor logits) => (logClean.exp() * (logClean - logits.log_softmax(-1))).sum(-1);
        var (c, s, a) = (Ce(clean), Ce(withSae), Ce(ablated));
        var result = new SaeCrossEntropy(c.MoveToOuterDisposeScope(), s.MoveToOuterDisposeScope(), a.MoveToOuterDisposeScope(),
            Kl(withSae).MoveToOuterDisposeScope(), Kl(ablated).MoveToOuterDisposeScope(), c.mean().item<float>(), s.mean().item<float>(), a.mean().item<float>());
        return result;
    }

    /// <summary>
    /// Each feature's decoder direction as written into the residual stream [d_sae, d_model]: <c>W_dec</c> for hooks
    /// in the residual stream / attention or MLP output, <c>W_dec · W_O</c> per head for <c>attn.hook_z</c>, <c>W_dec · W_out</c>
    /// for <c>mlp.hook_post</c>.
    /// </summary>
    public static Tensor ResidualDirections(HookedTransformer model, SparseAutoencoder sae)
    {
        string h = sae.HookName;
        var layer = System.Text.RegularExpressions.Regex.Match(h, @"^blocks\.(\d+)\.");
        using var scope = NewDisposeScope();
        Tensor result;
        if (h.EndsWith(".attn.hook_z", StringComparison.Ordinal) && layer.Success && sae.Config.ReshapeHookZ)
        {
            var wO = model.Parameter($"blocks.{layer.Groups[1].Value}.attn.W_O"); // [h, dh, d_model]
            result = einsum("fhd,hdm->fm", sae.W_dec.reshape(sae.Config.DSae, wO.shape[0], wO.shape[1]), wO);
        }
        else if (h.EndsWith(".mlp.hook_post", StringComparison.Ordinal) && layer.Success)
            result = sae.W_dec.matmul(model.Parameter($"blocks.{layer.Groups[1].Value}.mlp.W_out"));
        else if (SaeSplicing.HookWidth(model.Config, h, false) == model.Config.DModel && !h.StartsWith("ln_final", StringComparison.Ordinal) && !h.StartsWith("unembed", StringComparison.Ordinal))
            result = sae.W_dec.alias();
        else
            throw new SharpLensException($"Feature direct logit attribution needs an SAE whose features write into the residual stream " +
                $"(resid, attn_out, mlp_out, attn.hook_z or mlp.hook_post hooks); '{h}' is not one.");
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Direct logit attribution of every feature at the final position [batch, d_sae]: activation × residual
    /// direction (× the SAE's de-normalisation factor), through the clean run's cached final LayerNorm scale,
    /// projected on <paramref name="logitDiffDirections"/> [batch, d_model] (as the seed does for heads).
    /// </summary>
    public static Tensor FeatureDla(HookedTransformer model, SparseAutoencoder sae, Tensor tokens, Tensor logitDiffDirections)
    {
        using var scope = NewDisposeScope();
        var (logits, cache) = model.RunWithCache(tokens, [sae.HookName, "ln_final.hook_scale"]);
        using (cache)
        {
            logits.Dispose();
            var x = cache[sae.HookName];
            var acts = sae.Encode(x);                                   // [b, p, f]
            var last = acts.select(1, -1);                              // [b, f]
            var scale = sae.DenormalisationScale(x).select(1, -1);      // [b, 1]
            var dirs = ResidualDirections(model, sae);                  // [f, d]
            var stack = (last * scale).t().unsqueeze(-1) * dirs.unsqueeze(1); // [f, b, d]
            var scaled = cache.ApplyLnToStack(stack, layer: -1, posSlice: -1);
            return einsum("fbd,bd->bf", scaled, logitDiffDirections).MoveToOuterDisposeScope();
        }
    }

    /// <summary>The logit-difference direction <c>W_U[:, correct] − W_U[:, incorrect]</c> per prompt [batch, d_model] for [batch, 2] answer tokens.</summary>
    public static Tensor LogitDiffDirections(HookedTransformer model, Tensor answerTokens)
    {
        using var scope = NewDisposeScope();
        var d = model.TokensToResidualDirections(answerTokens);
        return (d.select(1, 0) - d.select(1, 1)).MoveToOuterDisposeScope();
    }

    /// <summary>Feature ids by |mean DLA over the batch|, largest first (stable), with the means.</summary>
    public static IReadOnlyList<(int Feature, double MeanLogitDiff)> TopDla(Tensor featureDla, int k)
    {
        var mean = featureDla.mean([0]).data<float>().ToArray();
        return mean.Select((v, i) => (Feature: i, MeanLogitDiff: (double)v)).OrderByDescending(t => Math.Abs(t.MeanLogitDiff)).Take(k).ToList();
    }

    /// <summary>
    /// Logits with <paramref name="features"/> set to zero at <c>hook_sae_acts_post</c> at every position, the SAE spliced
    /// in (with the error term by default, so only the ablation changes the output).
    /// </summary>
    public static Tensor AblateFeatures(HookedTransformer model, SparseAutoencoder sae, Tensor tokens, IEnumerable<int> features, bool useErrorTerm = true)
    {
        var ids = features.Select(f => (long)f).ToArray();
        foreach (var f in ids)
            if (f < 0 || f >= sae.Config.DSae) throw new SharpLensException($"Feature {f} does not exist: the SAE has d_sae = {sae.Config.DSae} features (0..{sae.Config.DSae - 1}).");
        using var idx = tensor(ids);
        return model.RunWithHooksWithSaes(tokens, [sae], [Hook.At($"{sae.HookName}.hook_sae_acts_post", (a, _) => a.index_fill(-1, idx, 0))], useErrorTerm);
    }
}
