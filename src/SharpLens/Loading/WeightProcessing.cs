using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Which TransformerLens weight-processing steps to apply (all on by default, like <c>from_pretrained</c>).</summary>
public sealed record ProcessingOptions
{
    /// <summary>Fold LayerNorm weights and biases into the next linear layer; norms become LNPre.</summary>
    public bool FoldLayerNorm { get; init; } = true;
    /// <summary>Make every matrix writing to the residual stream have zero mean over d_model.</summary>
    public bool CenterWritingWeights { get; init; } = true;
    /// <summary>Make W_U and b_U have zero mean over the vocabulary (softmax is shift invariant).</summary>
    public bool CenterUnembed { get; init; } = true;
    /// <summary>Fold the value biases b_V into the output bias b_O.</summary>
    public bool FoldValueBiases { get; init; } = true;

    /// <summary>TransformerLens's <c>from_pretrained</c> defaults.</summary>
    public static ProcessingOptions Default { get; } = new();
    /// <summary>No processing (<c>from_pretrained_no_processing</c>).</summary>
    public static ProcessingOptions None { get; } = new() { FoldLayerNorm = false, CenterWritingWeights = false, CenterUnembed = false, FoldValueBiases = false };
}

/// <summary>
/// TransformerLens's weight processing, each step a pure function from a state dict to a new one (inputs are never
/// modified: they may be memory-mapped). Outputs are mathematically equivalent models whose weights are easier to
/// interpret.
/// </summary>
public static class WeightProcessing
{
    /// <summary>Applies the selected steps in TransformerLens's order; returns the new state dict and config.</summary>
    public static (Dictionary<string, Tensor> StateDict, HookedTransformerConfig Config) Process(
        Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, ProcessingOptions options)
    {
        if (options.FoldLayerNorm && cfg.NormalizationType == "LN")
        {
            sd = FoldLayerNorm(sd, cfg, centerWeights: true);
            cfg = cfg.WithNormalization("LNPre");
        }
        if (options.CenterWritingWeights && cfg.NormalizationType is "LN" or "LNPre") sd = CenterWritingWeights(sd, cfg);
        if (options.CenterUnembed) sd = CenterUnembed(sd);
        if (options.FoldValueBiases) sd = FoldValueBiases(sd, cfg, recenterOutputBias: options.CenterWritingWeights && cfg.NormalizationType is "LN" or "LNPre");
        return (sd, cfg);
    }

    /// <summary>
    /// Folds each LayerNorm's w into the following weights and its b into the following biases
    /// (<c>b' = b + Σ_d W·b_ln</c>, <c>W' = W·w_ln</c>), for ln1 → W_Q/W_K/W_V, ln2 → W_in and ln_final → W_U/b_U,
    /// and (<paramref name="centerWeights"/>) centres the folded reading weights over d_model. The LN parameters
    /// are removed.
    /// </summary>
    public static Dictionary<string, Tensor> FoldLayerNorm(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool centerWeights = true)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            var w1 = sd[p + "ln1.w"]; var b1 = sd[p + "ln1.b"];
            foreach (var x in new[] { "Q", "K", "V" })
            {
                var W = sd[p + "attn.W_" + x];                                        // [h, d, dh]
                o[p + "attn.b_" + x] = sd[p + "attn.b_" + x] + (W * b1.unsqueeze(-1)).sum(-2);
                var folded = W * w1.unsqueeze(-1);
                o[p + "attn.W_" + x] = centerWeights ? folded - folded.mean([-2], keepdim: true) : folded;
            }
            o.Remove(p + "ln1.w"); o.Remove(p + "ln1.b");
            if (cfg.AttnOnly) continue;
            var w2 = sd[p + "ln2.w"]; var b2 = sd[p + "ln2.b"];
            var wIn = sd[p + "mlp.W_in"];                                             // [d, d_mlp]
            o[p + "mlp.b_in"] = sd[p + "mlp.b_in"] + (wIn * b2.unsqueeze(-1)).sum(-2);
            var foldedIn = wIn * w2.unsqueeze(-1);
            o[p + "mlp.W_in"] = centerWeights ? foldedIn - foldedIn.mean([-2], keepdim: true) : foldedIn;
            o.Remove(p + "ln2.w"); o.Remove(p + "ln2.b");
        }
        var wU = sd["unembed.W_U"];                                                   // [d, vocab]
        o["unembed.b_U"] = sd["unembed.b_U"] + (wU * sd["ln_final.b"].unsqueeze(-1)).sum(-2);
        var foldedU = wU * sd["ln_final.w"].unsqueeze(-1);
        o["unembed.W_U"] = centerWeights ? foldedU - foldedU.mean([-2], keepdim: true) : foldedU;
        o.Remove("ln_final.w"); o.Remove("ln_final.b");
        return o;
    }

    /// <summary>
    /// Centres every weight writing to the residual stream over d_model: W_E, W_pos, each W_O and W_out, and their
    /// biases b_O, b_out (so their mean over d_model is zero; LayerNorm removes that mean anyway).
    /// </summary>
    public static Dictionary<string, Tensor> CenterWritingWeights(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        Tensor Center(Tensor t) => t - t.mean([-1], keepdim: true);
        o["embed.W_E"] = Center(sd["embed.W_E"]);
        o["pos_embed.W_pos"] = Center(sd["pos_embed.W_pos"]);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            o[p + "attn.W_O"] = Center(sd[p + "attn.W_O"]);
            o[p + "attn.b_O"] = Center(sd[p + "attn.b_O"]);
            if (cfg.AttnOnly) continue;
            o[p + "mlp.W_out"] = Center(sd[p + "mlp.W_out"]);
            o[p + "mlp.b_out"] = Center(sd[p + "mlp.b_out"]);
        }
        return o;
    }

    /// <summary>Centres W_U and b_U over the vocabulary (logit differences and probabilities are unchanged).</summary>
    public static Dictionary<string, Tensor> CenterUnembed(Dictionary<string, Tensor> sd)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        var wU = sd["unembed.W_U"]; var bU = sd["unembed.b_U"];
        o["unembed.W_U"] = wU - wU.mean([-1], keepdim: true);
        o["unembed.b_U"] = bU - bU.mean();
        return o;
    }

    /// <summary>
    /// Folds the value biases into the output bias: <c>b_O' = b_O + Σ_{head, d_head} b_V·W_O</c>, <c>b_V' = 0</c>
    /// (valid because attention patterns sum to 1). Like TransformerLens v3, b_O is re-centred afterwards when
    /// writing weights are centred.
    /// </summary>
    public static Dictionary<string, Tensor> FoldValueBiases(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool recenterOutputBias)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.attn.";
            var bV = sd[p + "b_V"]; var wO = sd[p + "W_O"];                          // [h, dh], [h, dh, d]
            var bO = sd[p + "b_O"] + (bV.unsqueeze(-1) * wO).sum([0, 1]);
            o[p + "b_O"] = recenterOutputBias ? bO - bO.mean() : bO;
            o[p + "b_V"] = zeros_like(bV);
        }
        return o;
    }
}
