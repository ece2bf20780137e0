using SharpLens.Analysis;
using SharpLens.Model.Components;
using static TorchSharp.torch;

namespace SharpLens.Cache;

/// <summary>A stack of residual-stream components and their labels (TransformerLens's <c>return_labels=True</c>).</summary>
/// <param name="Stack">[components, ..., d_model]; belongs to the caller's dispose scope.</param>
/// <param name="Labels">One label per component, e.g. <c>0_pre</c>, <c>L1H2</c>.</param>
public sealed record LabeledStack(Tensor Stack, IReadOnlyList<string> Labels)
{
    /// <summary>Lets <c>var (stack, labels) = ...</c> work.</summary>
    public void Deconstruct(out Tensor stack, out IReadOnlyList<string> labels) { stack = Stack; labels = Labels; }
}

public sealed partial class ActivationCache
{
    private int NLayers => Model.Config.NLayers;

    /// <summary>Whether the model adds learned positions (<c>hook_pos_embed</c>); rotary models have none to decompose.</summary>
    private bool HasLearnedPositions => Model.Config.PositionalEmbeddingType == "standard";

    /// <summary>-1 / null / n_layers all mean "input to the unembed".</summary>
    private int ResolveLayer(int? layer, string method, bool allowFinal = true)
    {
        int l = layer is null or -1 ? NLayers : layer.Value;
        if (l < 0 || l > NLayers || (!allowFinal && l == NLayers))
            throw new SharpLensException($"{method}: layer {layer} is out of range; allowed 0..{NLayers} (or -1 for the unembed input), n_layers = {NLayers}.");
        return l;
    }

    private static Tensor ApplySlice(Slice? slice, Tensor t, int dim) =>
        slice is { } s ? s.Apply(t, dim < 0 ? (int)t.dim() + dim : dim) : t;

    /// <summary>
    /// The residual stream accumulated up to the input of <paramref name="layer"/> (TransformerLens's
    /// <c>accumulated_resid</c>): resid_pre of each layer (plus resid_mid with <paramref name="inclMid"/>), and
    /// <c>final_post</c> when layer is the unembed. With <paramref name="applyLn"/> at the final layer, ln_final is
    /// recomputed per component (TransformerLens v3's logit-lens semantics); otherwise the cached scale is used.
    /// </summary>
    public LabeledStack AccumulatedResid(int? layer = null, bool inclMid = false, bool applyLn = false, Slice? posSlice = null, bool mlpInput = false)
    {
        int L = ResolveLayer(layer, nameof(AccumulatedResid));
        if (Model.Config.ParallelAttnMlp && (inclMid || mlpInput))
            throw new SharpLensException($"AccumulatedResid({(inclMid ? "inclMid" : "mlpInput")}: true) needs hook_resid_mid, but " +
                $"{Model.Config.ModelName} has parallel attention + MLP blocks (parallel_attn_mlp): attention and MLP both read " +
                "resid_pre, so there is no resid_mid. Use inclMid: false, mlpInput: false (TransformerLens raises KeyError here).");
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>(); var labels = new List<string>();
        for (int l = 0; l <= L; l++)
        {
            if (l == NLayers)
            {
                parts.Add(this[$"blocks.{NLayers - 1}.hook_resid_post"]); labels.Add("final_post");
                continue;
            }
            parts.Add(this[$"blocks.{l}.hook_resid_pre"]); labels.Add($"{l}_pre");
            if ((inclMid && l < L) || (mlpInput && l == L)) { parts.Add(this[$"blocks.{l}.hook_resid_mid"]); labels.Add($"{l}_mid"); }
        }
        var stackT = stack(parts.Select(p => ApplySlice(posSlice, p, -2)).ToArray(), 0);
        if (applyLn) stackT = ApplyLnToStack(stackT, L, mlpInput, posSlice, hasBatchDim: HasBatchDim, recomputeLn: L == NLayers);
        return new LabeledStack(stackT.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// The residual stream input to <paramref name="layer"/> split into the outputs of earlier components
    /// (TransformerLens's <c>decompose_resid</c>): embed, pos_embed, then each layer's attn_out and mlp_out
    /// (<paramref name="mode"/> "all", "attn" or "mlp"), plus attn_out of the layer itself with
    /// <paramref name="mlpInput"/>.
    /// </summary>
    public LabeledStack DecomposeResid(int? layer = null, bool mlpInput = false, string mode = "all", bool applyLn = false,
        Slice? posSlice = null, bool inclEmbeds = true)
    {
        int L = ResolveLayer(layer, nameof(DecomposeResid));
        if (mode is not ("all" or "attn" or "mlp"))
            throw new SharpLensException($"DecomposeResid: mode '{mode}' is not valid; allowed: all, attn, mlp.");
        bool inclAttn = mode != "mlp", inclMlp = mode != "attn" && !Model.Config.AttnOnly;
        using var scope = NewDisposeScope();
        var parts = new List<Tensor>(); var labels = new List<string>();
        if (inclEmbeds)
        {
            parts.Add(this["hook_embed"]); labels.Add("embed");
            if (HasLearnedPositions) { parts.Add(this["hook_pos_embed"]); labels.Add("pos_embed"); }
        }
        for (int l = 0; l < L; l++)
        {
            if (inclAttn) { parts.Add(this[$"blocks.{l}.hook_attn_out"]); labels.Add($"{l}_attn_out"); }
            if (inclMlp) { parts.Add(this[$"blocks.{l}.hook_mlp_out"]); labels.Add($"{l}_mlp_out"); }
        }
        if (mlpInput && inclAttn)
        {
            if (L == NLayers) throw new SharpLensException("DecomposeResid: mlpInput needs a layer below n_layers.");
            parts.Add(this[$"blocks.{L}.hook_attn_out"]); labels.Add($"{L}_attn_out");
        }
        if (parts.Count == 0) throw new SharpLensException("DecomposeResid: no components selected (layer 0 without embeddings).");
        var stackT = stack(parts.Select(p => ApplySlice(posSlice, p, -2)).ToArray(), 0);
        if (applyLn) stackT = ApplyLnToStack(stackT, L, mlpInput, posSlice, hasBatchDim: HasBatchDim);
        return new LabeledStack(stackT.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// Computes and caches <c>blocks.L.attn.hook_result</c> = z·W_O per head (no b_O) for every layer where it is
    /// missing (TransformerLens's <c>compute_head_results</c>). Returns false when all were already cached.
    /// </summary>
    public bool ComputeHeadResults()
    {
        bool computed = false;
        for (int l = 0; l < NLayers; l++)
        {
            string key = $"blocks.{l}.attn.hook_result";
            if (ContainsKey(key)) continue;
            using var scope = NewDisposeScope();
            var z = this[$"blocks.{l}.attn.hook_z"];                               // [..., h, dh]
            var wO = Model.Parameter($"blocks.{l}.attn.W_O");                       // [h, dh, d]
            Store(key, einsum("...hd,hdm->...hm", z, wO));
            computed = true;
        }
        return computed;
    }

    /// <summary>
    /// Every head's output before <paramref name="layer"/> as a [layer·n_heads, ..., d_model] stack labelled
    /// <c>L0H0, L0H1, ...</c> (TransformerLens's <c>stack_head_results</c>; computes head results if needed), with an
    /// optional <c>remainder</c> = resid_post of layer−1 minus the heads.
    /// </summary>
    public LabeledStack StackHeadResults(int? layer = -1, bool inclRemainder = false, Slice? posSlice = null, bool applyLn = false)
    {
        int L = ResolveLayer(layer, nameof(StackHeadResults));
        ComputeHeadResults();
        using var scope = NewDisposeScope();
        var labels = new List<string>();
        Tensor stackT;
        if (L > 0)
        {
            var parts = new List<Tensor>();
            for (int l = 0; l < L; l++)
            {
                parts.Add(ApplySlice(posSlice, this[$"blocks.{l}.attn.hook_result"], -3));
                for (int h = 0; h < Model.Config.NHeads; h++) labels.Add($"L{l}H{h}");
            }
            stackT = cat(parts.ToArray(), -2).movedim([-2], [0]);                      // heads first
        }
        else
        {
            var shape = ApplySlice(posSlice, this["hook_embed"], -2).shape;
            stackT = zeros(new long[] { 0 }.Concat(shape).ToArray());
        }
        if (inclRemainder)
        {
            var target = L == 0 ? ApplySlice(posSlice, this["blocks.0.hook_resid_pre"], -2) : ApplySlice(posSlice, this[$"blocks.{L - 1}.hook_resid_post"], -2);
            var remainder = stackT.shape[0] > 0 ? target - stackT.sum(0L) : target;
            stackT = cat([stackT, remainder.unsqueeze(0)], 0);
            labels.Add("remainder");
        }
        if (applyLn) stackT = ApplyLnToStack(stackT, L, posSlice: posSlice, hasBatchDim: HasBatchDim);
        return new LabeledStack(stackT.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// Each neuron's contribution to the residual stream in <paramref name="layer"/>
    /// (<c>post[..., n] · W_out[n]</c>, TransformerLens's <c>get_neuron_results</c>): [..., neurons, d_model].
    /// </summary>
    public Tensor GetNeuronResults(int layer, Slice? neuronSlice = null, Slice? posSlice = null)
    {
        ResolveLayer(layer, nameof(GetNeuronResults), allowFinal: false);
        using var scope = NewDisposeScope();
        var acts = ApplySlice(posSlice, this[$"blocks.{layer}.mlp.hook_post"], -2);
        var wOut = Model.Parameter($"blocks.{layer}.mlp.W_out");
        if (neuronSlice is { } ns) { acts = ns.Apply(acts, (int)acts.dim() - 1); wOut = ns.Apply(wOut, 0); }
        return (acts.unsqueeze(-1) * wOut).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Every neuron's contribution before <paramref name="layer"/> as a stack labelled <c>L0N0, ...</c>
    /// (TransformerLens's <c>stack_neuron_results</c>), with an optional remainder.
    /// </summary>
    public LabeledStack StackNeuronResults(int? layer = -1, Slice? posSlice = null, Slice? neuronSlice = null,
        bool inclRemainder = false, bool applyLn = false, bool mlpInput = false)
    {
        int L = ResolveLayer(layer, nameof(StackNeuronResults));
        using var scope = NewDisposeScope();
        var neuronIds = neuronSlice is { } ns0 ? ns0.Apply(arange(Model.Config.DMlp), 0).reshape(-1) : arange(Model.Config.DMlp);
        var ids = neuronIds.data<long>().ToArray();
        // Layers are concatenated along the neuron axis, so an int slice must not drop that axis.
        Slice? keepAxis = neuronSlice is null ? null : Slice.FromList(ids);
        var labels = new List<string>();
        var parts = new List<Tensor>();
        for (int l = 0; l < L; l++)
        {
            parts.Add(GetNeuronResults(l, keepAxis, posSlice));
            labels.AddRange(ids.Select(n => $"L{l}N{n}"));
        }
        Tensor stackT = parts.Count > 0
            ? cat(parts.ToArray(), -2).movedim([-2], [0])
            : zeros(new long[] { 0 }.Concat(ApplySlice(posSlice, this["hook_embed"], -2).shape).ToArray());
        if (inclRemainder)
        {
            string target = mlpInput ? $"blocks.{L}.hook_resid_mid" : L == 0 ? "blocks.0.hook_resid_pre" : $"blocks.{L - 1}.hook_resid_post";
            var full = ApplySlice(posSlice, this[target], -2);
            stackT = cat([stackT, (stackT.shape[0] > 0 ? full - stackT.sum(0L) : full).unsqueeze(0)], 0);
            labels.Add("remainder");
        }
        if (applyLn) stackT = ApplyLnToStack(stackT, L, mlpInput, posSlice, hasBatchDim: HasBatchDim);
        return new LabeledStack(stackT.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// Treats each component of <paramref name="residualStack"/> as input to <paramref name="layer"/> and applies that
    /// layer's normalization with the CACHED scale (TransformerLens's <c>apply_ln_to_stack</c>): centre over d_model
    /// (LayerNorm only; RMSNorm does not centre), divide by <c>blocks.L.ln1/ln2.hook_scale</c> (or <c>ln_final.hook_scale</c> for the unembed).
    /// <paramref name="posSlice"/> is applied to the cached scale only (slice the stack yourself first);
    /// <paramref name="batchSlice"/> applies to stack dim 1 when <paramref name="hasBatchDim"/>.
    /// With <paramref name="recomputeLn"/> at the unembed, ln_final statistics are recomputed per component (logit lens).
    /// </summary>
    public Tensor ApplyLnToStack(Tensor residualStack, int? layer = null, bool mlpInput = false, Slice? posSlice = null,
        Slice? batchSlice = null, bool hasBatchDim = true, bool recomputeLn = false)
    {
        string? norm = Model.Config.NormalizationType;
        if (norm is null) return residualStack.dtype == ScalarType.Float32 ? residualStack.alias() : residualStack.to_type(ScalarType.Float32);
        bool centre = norm is "LN" or "LNPre"; // RMSNorm only divides by the scale
        int L = ResolveLayer(layer, nameof(ApplyLnToStack));
        if (mlpInput && L == NLayers)
            throw new SharpLensException("ApplyLnToStack: mlpInput is only valid for a layer below n_layers (the unembed has no MLP).");
        using var scope = NewDisposeScope();
        var stackT = SharpLens.Model.Components.Ops.Up(residualStack); // float32 whatever the model's dtype, like the cached scale
        if (hasBatchDim && batchSlice is { } bs) stackT = bs.Apply(stackT, 1);
        if (recomputeLn && L == NLayers)
        {
            // Logit lens: each component gets its own ln_final statistics.
            var centred = centre ? stackT - stackT.mean([-1], keepdim: true) : stackT;
            var normed = centred / (centred.pow(2).mean([-1], keepdim: true) + Model.Config.Eps).sqrt();
            if (norm == "LN") normed = normed * Model.Parameter("ln_final.w") + Model.Parameter("ln_final.b");
            if (norm == "RMS") normed = normed * Model.Parameter("ln_final.w");
            return normed.MoveToOuterDisposeScope();
        }
        if (centre) stackT = stackT - stackT.mean([-1], keepdim: true);
        string key = L == NLayers ? "ln_final.hook_scale" : $"blocks.{L}.ln{(mlpInput ? 2 : 1)}.hook_scale";
        if (!ContainsKey(key))
            throw new SharpLensException($"ApplyLnToStack needs the cached LayerNorm scale '{key}', which is not in this cache. " +
                $"Run RunWithCache without a names filter, or include '{key}' in it.");
        var scaleT = ApplySlice(posSlice, this[key], -2);
        if (hasBatchDim && HasBatchDim && batchSlice is { } bs2) scaleT = bs2.Apply(scaleT, 0);
        if (!Broadcastable(stackT.shape, scaleT.shape))
            throw new SharpLensException($"ApplyLnToStack: a stack of shape {TensorExtensions.ShapeText(stackT.shape)} does not fit the cached scale '{key}' " +
                $"of shape {TensorExtensions.ShapeText(scaleT.shape)} after the position/batch slices. Slice the stack's positions the same way as posSlice " +
                "(the stack must be [components, batch?, pos?, d_model]).");
        return (stackT / scaleT).MoveToOuterDisposeScope();
    }

    /// <summary>True when dividing a tensor of shape <paramref name="a"/> by one of shape <paramref name="b"/> keeps shape <paramref name="a"/>.</summary>
    private static bool Broadcastable(long[] a, long[] b)
    {
        if (b.Length > a.Length) return false;
        for (int i = 1; i <= b.Length; i++)
            if (b[^i] != a[^i] && b[^i] != 1) return false;
        return true;
    }

    /// <summary>
    /// How much each component of <paramref name="residualStack"/> contributes to the logit of <paramref name="tokens"/>
    /// (minus <paramref name="incorrectTokens"/>'s), through ln_final's cached scale (TransformerLens's <c>logit_attrs</c>).
    /// </summary>
    public Tensor LogitAttrs(Tensor residualStack, Tensor tokens, Tensor? incorrectTokens = null, Slice? posSlice = null,
        Slice? batchSlice = null, bool hasBatchDim = true)
    {
        using var scope = NewDisposeScope();
        var directions = Model.TokensToResidualDirections(tokens);
        if (incorrectTokens is not null)
        {
            if (!incorrectTokens.shape.SequenceEqual(tokens.shape))
                throw new SharpLensException($"LogitAttrs: tokens {TensorExtensions.ShapeText(tokens.shape)} and incorrectTokens {TensorExtensions.ShapeText(incorrectTokens.shape)} must have the same shape.");
            directions = directions - Model.TokensToResidualDirections(incorrectTokens);
        }
        var scaled = ApplyLnToStack(residualStack, -1, posSlice: posSlice, batchSlice: batchSlice, hasBatchDim: hasBatchDim);
        if (hasBatchDim && scaled.dim() == 4 && directions.dim() == 2 && directions.shape[0] == scaled.shape[1])
            directions = directions.unsqueeze(-2); // per-prompt directions broadcast over positions
        return (scaled * directions).sum(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual stream input to <paramref name="layer"/> split into every head, every MLP (or neuron with
    /// <paramref name="expandNeurons"/>), embed, pos_embed and the accumulated biases (TransformerLens's
    /// <c>get_full_resid_decomposition</c>). The components sum to the residual stream.
    /// </summary>
    public LabeledStack GetFullResidDecomposition(int? layer = null, bool mlpInput = false, bool expandNeurons = true,
        bool applyLn = false, Slice? posSlice = null)
    {
        int L = ResolveLayer(layer, nameof(GetFullResidDecomposition));
        using var scope = NewDisposeScope();
        var (heads, headLabels) = StackHeadResults(L + (mlpInput ? 1 : 0), posSlice: posSlice);
        var labels = new List<string>(headLabels);
        var parts = new List<Tensor> { heads };
        if (!Model.Config.AttnOnly && L > 0)
        {
            var (mlps, mlpLabels) = expandNeurons
                ? StackNeuronResults(L, posSlice)
                : DecomposeResid(L, mlpInput, "mlp", posSlice: posSlice, inclEmbeds: false);
            parts.Add(mlps); labels.AddRange(mlpLabels);
        }
        parts.Add(ApplySlice(posSlice, this["hook_embed"], -2).unsqueeze(0)); labels.Add("embed");
        if (HasLearnedPositions) { parts.Add(ApplySlice(posSlice, this["hook_pos_embed"], -2).unsqueeze(0)); labels.Add("pos_embed"); }
        var bias = Model.AccumulatedBias(L, mlpInput, includeMlpBiases: expandNeurons);
        parts.Add(bias.expand(new long[] { 1 }.Concat(heads.shape.Skip(1)).ToArray())); labels.Add("bias");
        var stackT = cat(parts.ToArray(), 0);
        if (applyLn) stackT = ApplyLnToStack(stackT, L, mlpInput, posSlice, hasBatchDim: HasBatchDim);
        return new LabeledStack(stackT.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// Stacks one activation over layers (TransformerLens's <c>stack_activation</c>): e.g. <c>"resid_post"</c> →
    /// [n_layers, batch, pos, d_model].
    /// </summary>
    public Tensor StackActivation(string activationName, int? layer = -1, string? sublayerType = null)
    {
        int L = ResolveLayer(layer, nameof(StackActivation));
        using var scope = NewDisposeScope();
        var parts = Enumerable.Range(0, L).Select(l => this[activationName, l, sublayerType]).ToArray();
        return stack(parts, 0).MoveToOuterDisposeScope();
    }
}
