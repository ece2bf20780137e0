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
    /// <summary>Whether any step is on.</summary>
    public bool Any => FoldLayerNorm || CenterWritingWeights || CenterUnembed || FoldValueBiases;

    /// <summary>No processing (<c>from_pretrained_no_processing</c>).</summary>
    public static ProcessingOptions None { get; } = new() { FoldLayerNorm = false, CenterWritingWeights = false, CenterUnembed = false, FoldValueBiases = false };

    /// <summary>
    /// These options minus the steps that would change what an architecture computes, as TransformerLens's
    /// <c>from_pretrained</c> drops them, with one message per dropped step: no <c>fold_ln</c> or
    /// <c>center_writing_weights</c> in post-norm blocks (OLMo-2), no <c>center_unembed</c> with a final logit soft cap
    /// (Gemma 2).
    /// </summary>
    public (ProcessingOptions Options, IReadOnlyList<string> Warnings) For(HookedTransformerConfig cfg)
    {
        var options = this;
        var warnings = new List<string>();
        if (cfg.UsePostNormBlock && FoldLayerNorm)
        {
            warnings.Add("fold_ln skipped: this model's blocks are post-norm (OLMo-2): each norm follows the attention or MLP " +
                "output instead of feeding a linear layer, so there is nothing to fold its weight into.");
            options = options with { FoldLayerNorm = false };
        }
        if (cfg.UsePostNormBlock && CenterWritingWeights)
        {
            warnings.Add("center_writing_weights skipped: in post-norm blocks (OLMo-2) the residual receives the normalised " +
                "attention and MLP outputs, so centring the weights that write them would change the model.");
            options = options with { CenterWritingWeights = false };
        }
        if (cfg.OutputLogitsSoftCap is { } cap && CenterUnembed)
        {
            warnings.Add($"center_unembed skipped: logits are soft-capped (cap·tanh(logit/cap), cap {cap.ToString(System.Globalization.CultureInfo.InvariantCulture)}), " +
                "which does not commute with shifting every logit by the same amount.");
            options = options with { CenterUnembed = false };
        }
        return (options, warnings);
    }
}

/// <summary>
/// TransformerLens's weight processing. Each public step is a pure function from a state dict to a new one (inputs are
/// never modified: they may be memory-mapped). <see cref="Process"/> chains the steps and lets later steps update
/// tensors that earlier steps created in place, with each parameter's temporaries freed at once, so processing GPT-2
/// small allocates about one model's worth of memory instead of several.
/// </summary>
public static class WeightProcessing
{
    /// <summary>Tensors created by this processing run, which later steps may modify in place.</summary>
    private sealed class Owned
    {
        private readonly HashSet<Tensor> _set = new(ReferenceEqualityComparer.Instance);
        public bool Contains(Tensor t) => _set.Contains(t);
        public Tensor Add(Tensor t) { _set.Add(t); return t; }

        /// <summary>
        /// Whether <paramref name="t"/> may be updated in place: this run owns it and no other parameter of
        /// <paramref name="sd"/> starts at the same memory (GPT-2's W_U is a transposed view of W_E until it is folded).
        /// </summary>
        public bool Writable(Tensor t, Dictionary<string, Tensor> sd)
        {
            if (!_set.Contains(t)) return false;
            // Each step asks about many tensors of the same (unchanging) input dict: count its start addresses once
            // instead of once per question (hundreds of parameters in a large model).
            if (!ReferenceEquals(_countedFor, sd))
            {
                _starts = sd.Values.Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>()
                    .GroupBy(x => x.DataAddress()).ToDictionary(g => g.Key, g => g.Count());
                _countedFor = sd;
            }
            return _starts.GetValueOrDefault(t.DataAddress()) <= 1;
        }

        private Dictionary<string, Tensor>? _countedFor;
        private Dictionary<long, int> _starts = [];
    }

    /// <summary>Applies the selected steps in TransformerLens's order; returns the new state dict and config.</summary>
    /// <param name="sd">TransformerLens-named state dict.</param>
    /// <param name="cfg">Its config.</param>
    /// <param name="options">Which steps to apply.</param>
    /// <param name="inputsAreScratch">
    /// True when the caller will not use <paramref name="sd"/>'s tensors again and they are private memory (e.g. a
    /// copy-on-write mapping of the checkpoint): processing then updates them in place instead of allocating copies.
    /// </param>
    public static (Dictionary<string, Tensor> StateDict, HookedTransformerConfig Config) Process(
        Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, ProcessingOptions options, bool inputsAreScratch = false)
    {
        var owned = new Owned();
        if (inputsAreScratch)
            foreach (var t in sd.Values) owned.Add(t);
        if (options.FoldLayerNorm && cfg.NormalizationType is "LN" or "RMS")
        {
            // RMSNorm has no bias and does not centre, so neither do its folded weights (TransformerLens).
            sd = FoldLayerNorm(sd, cfg, centerWeights: cfg.NormalizationType == "LN", owned);
            cfg = ProcessedConfig(cfg, options);
        }
        // Centring writing weights only makes sense before a LayerNorm, which removes the mean; TransformerLens skips it
        // silently for RMSNorm models.
        bool hasLn = cfg.NormalizationType is "LN" or "LNPre";
        if (options.CenterWritingWeights && hasLn) sd = CenterWritingWeights(sd, cfg, owned);
        if (options.CenterUnembed) sd = CenterUnembed(sd, owned);
        if (options.FoldValueBiases) sd = FoldValueBiases(sd, cfg, options.CenterWritingWeights && hasLn, owned);
        return (sd, cfg);
    }

    /// <summary>
    /// The config of a model after <see cref="Process"/>: folding LayerNorm turns LN into LNPre and RMS into RMSPre;
    /// no other step changes the config.
    /// </summary>
    public static HookedTransformerConfig ProcessedConfig(HookedTransformerConfig cfg, ProcessingOptions options) =>
        options.FoldLayerNorm && cfg.NormalizationType is "LN" or "RMS"
            ? cfg.WithNormalization(cfg.NormalizationType == "LN" ? "LNPre" : "RMSPre")
            : cfg;

    /// <summary>
    /// Folds each norm's w into the following weights and (LayerNorm) its b into the following biases
    /// (<c>b' = b + Σ_d W·b_ln</c>, <c>W' = W·w_ln</c>), for ln1 → W_Q/W_K/W_V, ln2 → W_in (and W_gate) and
    /// ln_final → W_U/b_U, and (<paramref name="centerWeights"/>) centres the folded reading weights over d_model.
    /// The folded norm parameters are removed; sandwich norms (<c>ln1_post</c>) and q/k norms are never folded.
    /// </summary>
    public static Dictionary<string, Tensor> FoldLayerNorm(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool centerWeights = true) =>
        FoldLayerNorm(sd, cfg, centerWeights, new Owned());

    private static Dictionary<string, Tensor> FoldLayerNorm(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool centerWeights, Owned owned)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        // W: [..., d_model, out]; w, b: [d_model]. The bias gains b_ln·W, W is scaled row-wise, and centring subtracts the
        // mean of w·W over d_model, which is (w·W)/d_model. One product [w; b_ln]·W gives both vectors in a single read
        // of W (no copy of a transposed W); an owned W is then scaled and centred block by block (see RowBlocks).
        void Fold(string wName, string? bName, Tensor w, Tensor? b)
        {
            using var scope = NewDisposeScope();
            var W = sd[wName];
            var sums = (b is null ? w.unsqueeze(0) : stack([w, b])).matmul(W); // [..., 1 or 2, out]
            if (b is not null) o[bName!] = owned.Add((sd[bName!] + sums.select(-2, 1)).MoveToOuterDisposeScope());
            var mean = centerWeights ? sums.narrow(-2, 0, 1).div_(W.shape[^2]) : null;
            Tensor folded;
            if (owned.Writable(W, sd))
            {
                folded = W;
                foreach (var (start, length) in RowBlocks(W, -2))
                {
                    using var block = W.narrow(-2, start, length);
                    using var scale = w.narrow(0, start, length).unsqueeze(-1);
                    block.mul_(scale);
                    if (mean is not null) block.sub_(mean);
                }
            }
            else
            {
                folded = W * w.unsqueeze(-1);
                if (mean is not null) folded.sub_(mean);
            }
            o[wName] = owned.Add(folded.MoveToOuterDisposeScope());
        }
        Tensor? Bias(string name) => sd.GetValueOrDefault(name); // RMSNorm has none
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            foreach (var x in new[] { "W_Q", ParameterLayout.KeyValueName(cfg, "W_K"), ParameterLayout.KeyValueName(cfg, "W_V") })
                Fold(p + "attn." + x, p + "attn." + x.Replace('W', 'b'), sd[p + "ln1.w"], Bias(p + "ln1.b"));
            o.Remove(p + "ln1.w"); o.Remove(p + "ln1.b");
            if (cfg.AttnOnly) continue;
            Fold(p + "mlp.W_in", p + "mlp.b_in", sd[p + "ln2.w"], Bias(p + "ln2.b"));
            // The gate has no bias of its own: TransformerLens folds only the weight into it.
            if (cfg.GatedMlp) Fold(p + "mlp.W_gate", null, sd[p + "ln2.w"], null);
            o.Remove(p + "ln2.w"); o.Remove(p + "ln2.b");
        }
        Fold("unembed.W_U", "unembed.b_U", sd["ln_final.w"], Bias("ln_final.b"));
        o.Remove("ln_final.w"); o.Remove("ln_final.b");
        return o;
    }

    /// <summary>Subtracts the mean over <paramref name="dim"/>: in place on a tensor this run created, else into a new one.</summary>
    private static Tensor Center(Tensor t, int dim, Owned owned, Dictionary<string, Tensor> sd)
    {
        using var scope = NewDisposeScope();
        if (owned.Writable(t, sd))
        {
            if (dim == -1 && t.dim() >= 2 && t.is_contiguous())
            {
                // Rows are independent: centre block by block, so the subtraction finds each block still in cache.
                using var rows = t.view(-1, t.shape[^1]);
                foreach (var (start, length) in RowBlocks(rows, 0))
                {
                    using var block = rows.narrow(0, start, length);
                    using var m = block.mean([-1], keepdim: true);
                    block.sub_(m);
                }
            }
            else t.sub_(dim == int.MinValue ? t.mean() : t.mean([dim], keepdim: true));
            return t;
        }
        var mean = dim == int.MinValue ? t.mean() : t.mean([dim], keepdim: true);
        return owned.Add((t - mean).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Splits dimension <paramref name="dim"/> of <paramref name="t"/> into blocks of about 2 MB. Processing a big weight
    /// block by block with several in-place operations reads it from memory once (the later operations hit the cache)
    /// instead of once per operation — what bounds loading time on small machines.
    /// </summary>
    private static IEnumerable<(long Start, long Length)> RowBlocks(Tensor t, int dim)
    {
        long n = t.shape[dim < 0 ? t.dim() + dim : dim];
        long bytesPerRow = Math.Max(1, t.numel() / Math.Max(1, n) * t.element_size());
        long rows = Math.Clamp((2L << 20) / bytesPerRow, 1, Math.Max(1, n));
        for (long start = 0; start < n; start += rows) yield return (start, Math.Min(rows, n - start));
    }

    /// <summary>
    /// Centres every weight writing to the residual stream over d_model: W_E, W_pos, each W_O and W_out, and their
    /// biases b_O, b_out (so their mean over d_model is zero; LayerNorm removes that mean anyway).
    /// </summary>
    public static Dictionary<string, Tensor> CenterWritingWeights(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg) =>
        CenterWritingWeights(sd, cfg, new Owned());

    private static Dictionary<string, Tensor> CenterWritingWeights(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, Owned owned)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        void C(string name) => o[name] = Center(sd[name], -1, owned, sd);
        C("embed.W_E");
        if (sd.ContainsKey("pos_embed.W_pos")) C("pos_embed.W_pos");
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            C(p + "attn.W_O"); C(p + "attn.b_O");
            if (cfg.AttnOnly) continue;
            C(p + "mlp.W_out"); C(p + "mlp.b_out");
        }
        return o;
    }

    /// <summary>Centres W_U and b_U over the vocabulary (logit differences and probabilities are unchanged).</summary>
    public static Dictionary<string, Tensor> CenterUnembed(Dictionary<string, Tensor> sd) => CenterUnembed(sd, new Owned());

    private static Dictionary<string, Tensor> CenterUnembed(Dictionary<string, Tensor> sd, Owned owned)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal)
        {
            ["unembed.W_U"] = Center(sd["unembed.W_U"], -1, owned, sd),
            ["unembed.b_U"] = Center(sd["unembed.b_U"], int.MinValue, owned, sd),
        };
        return o;
    }

    /// <summary>
    /// Folds the value biases into the output bias: <c>b_O' = b_O + Σ_{head, d_head} b_V·W_O</c>, <c>b_V' = 0</c>
    /// (valid because attention patterns sum to 1). Like TransformerLens v3, b_O is re-centred afterwards when
    /// writing weights are centred.
    /// </summary>
    public static Dictionary<string, Tensor> FoldValueBiases(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool recenterOutputBias) =>
        FoldValueBiases(sd, cfg, recenterOutputBias, new Owned());

    private static Dictionary<string, Tensor> FoldValueBiases(Dictionary<string, Tensor> sd, HookedTransformerConfig cfg, bool recenterOutputBias, Owned owned)
    {
        var o = new Dictionary<string, Tensor>(sd, StringComparer.Ordinal);
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string p = $"blocks.{l}.attn.";
            using var scope = NewDisposeScope();
            string bVName = p + ParameterLayout.KeyValueName(cfg, "b_V");
            var bV = sd[bVName]; var wO = sd[p + "W_O"];                              // [kv, dh], [h, dh, d]
            // Each grouped-query value head serves n_heads / n_kv query heads, so its bias reaches W_O once per head.
            var bVPerHead = bV.shape[0] == wO.shape[0] ? bV : bV.repeat_interleave(wO.shape[0] / bV.shape[0], 0);
            var bO = sd[p + "b_O"] + einsum("hk,hkd->d", bVPerHead, wO);
            if (recenterOutputBias) bO.sub_(bO.mean());
            o[p + "b_O"] = owned.Add(bO.MoveToOuterDisposeScope());
            o[bVName] = owned.Add(zeros_like(bV).MoveToOuterDisposeScope());
        }
        return o;
    }
}
