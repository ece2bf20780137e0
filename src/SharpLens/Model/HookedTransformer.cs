using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Model.Components;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>What <see cref="HookedTransformer.Forward(Tensor, ReturnType, bool, Tensor?)"/> returns (TransformerLens's <c>return_type</c>).</summary>
public enum ReturnType
{
    /// <summary>Logits [batch, pos, d_vocab_out].</summary>
    Logits,
    /// <summary>Next-token cross-entropy loss (mean, or [batch, pos-1] per token).</summary>
    Loss,
    /// <summary>Logits and loss.</summary>
    Both,
    /// <summary>Nothing (run for the hooks' side effects).</summary>
    None,
}

/// <summary>Output of a forward pass; the tensors belong to the caller's dispose scope.</summary>
/// <param name="Logits">Logits, when requested.</param>
/// <param name="Loss">Loss, when requested.</param>
public sealed record ModelOutput(Tensor? Logits, Tensor? Loss)
{
    /// <summary>With <c>stopAtLayer</c>: the residual stream entering that block (then there are no logits or loss).</summary>
    public Tensor? Residual { get; init; }
}

/// <summary>
/// A decoder-only transformer whose every activation can be read and replaced by its TransformerLens hook name
/// (TransformerLens's <c>HookedTransformer</c>). Parameters carry TransformerLens's state-dict names and
/// head-major shapes. Forward passes build no autograd graph; gradient runs (<see cref="Backward"/>, <c>RunWithCache(..., includeBackward: true)</c>) opt in. The model owns its parameter tensors.
/// </summary>
public sealed partial class HookedTransformer : IDisposable
{
    private readonly Dictionary<string, Tensor> _params = new(StringComparer.Ordinal);
    private readonly List<string> _paramOrder = [];
    private readonly List<Tensor> _derived = []; // fused views of parameters, freed with the model
    private readonly List<QkvProjection> _qkvProjections = []; // per layer, for the weights cache's fused layout
    private readonly bool _keepViews;
    private readonly List<HookPoint> _hookPoints = [];
    private readonly Dictionary<string, HookPoint> _hookDict = new(StringComparer.Ordinal);
    private readonly Embed _embed;
    private readonly PosEmbed? _posEmbed;
    private readonly Rotary[] _rotaries;
    private readonly TransformerBlock[] _blocks;
    private readonly INorm? _lnFinal;
    private readonly Unembed _unembed;
    private bool _disposed;

    // Reuse freed tensor memory instead of faulting fresh pages in on every forward (see NativeMemory).
    static HookedTransformer() => NativeMemory.Configure();

    /// <summary>
    /// Builds a model from a config and a TransformerLens-named state dict. Every parameter of
    /// <see cref="ParameterLayout.For"/> must be present with its shape; extra names are an error. The model takes
    /// ownership of the tensors (they are converted to the config's <see cref="HookedTransformerConfig.Dtype"/> when stored in another float type). The parts of every
    /// block (norms, attention, positions, MLP, layout) are chosen here from the config, once.
    /// </summary>
    public HookedTransformer(HookedTransformerConfig config, IReadOnlyDictionary<string, Tensor> stateDict)
        : this(config, stateDict, keepViews: false)
    {
    }

    /// <summary>
    /// <see cref="HookedTransformer(HookedTransformerConfig, IReadOnlyDictionary{string, Tensor})"/>; with
    /// <paramref name="keepViews"/> (the tensors are views of a mapped checkpoint in the model's dtype) the q/k/v
    /// projection multiplies them where they lie instead of copying them into one fused matrix.
    /// </summary>
    internal HookedTransformer(HookedTransformerConfig config, IReadOnlyDictionary<string, Tensor> stateDict, bool keepViews)
    {
        Config = config;
        _keepViews = keepViews;
        LoadParameters(stateDict);

        _embed = new Embed(_params["embed.W_E"], Hp("hook_embed"));
        if (config.PositionalEmbeddingType == "standard") _posEmbed = new PosEmbed(_params["pos_embed.W_pos"], Hp("hook_pos_embed"));
        // One rotary table per distinct base (Gemma 3's local layers use their own).
        var rotaries = new Dictionary<double, Rotary>();
        Rotary? RotaryFor(int layer)
        {
            if (config.PositionalEmbeddingType != "rotary") return null;
            double b = config.IsLocalLayer(layer) && config.RotaryBaseLocal is { } local ? local : config.RotaryBase;
            if (!rotaries.TryGetValue(b, out var r)) rotaries[b] = r = new Rotary(config, b);
            return r;
        }
        _blocks = new TransformerBlock[config.NLayers];
        for (int l = 0; l < config.NLayers; l++) _blocks[l] = BuildBlock(l, RotaryFor(l));
        _rotaries = [.. rotaries.Values];
        _lnFinal = Norm("ln_final", config.NormalizationType);
        _unembed = new Unembed(P("unembed.W_U"), P("unembed.b_U"), config.OutputLogitsSoftCap, Hp("unembed.hook_in"), Hp("unembed.hook_out"));
    }

    /// <summary>Creates the parts of block <paramref name="l"/> and their hook points, in forward order.</summary>
    private TransformerBlock BuildBlock(int l, Rotary? rotary)
    {
        var cfg = Config;
        string p = $"blocks.{l}.";
        bool postNorm = cfg.UsePostNormBlock;
        var residPre = Hp(p + "hook_resid_pre");
        var attnIn = Hp(p + "hook_attn_in");
        var qIn = Hp(p + "hook_q_input"); var kIn = Hp(p + "hook_k_input"); var vIn = Hp(p + "hook_v_input");
        var ln1 = postNorm ? null : Norm(p + "ln1", cfg.NormalizationType);
        var attnHooks = new AttentionHooks(Hp(p + "attn.hook_q"), Hp(p + "attn.hook_k"), Hp(p + "attn.hook_v"),
            null, null, null!, null!, null!, null!);
        QkNorm? qNorm = null, kNorm = null;
        if (cfg.UseQkNorm || cfg.UseQkNormOverProjection)
        {
            string? kind = Norms.Weighted(cfg.NormalizationType);
            qNorm = new QkNorm(Norm(p + "attn.q_norm", kind)!, perHead: cfg.UseQkNorm);
            kNorm = new QkNorm(Norm(p + "attn.k_norm", kind)!, perHead: cfg.UseQkNorm);
        }
        if (rotary is not null) attnHooks = attnHooks with { RotQ = Hp(p + "attn.hook_rot_q"), RotK = Hp(p + "attn.hook_rot_k") };
        attnHooks = attnHooks with
        {
            AttnScores = Hp(p + "attn.hook_attn_scores"), Pattern = Hp(p + "attn.hook_pattern"),
            Z = Hp(p + "attn.hook_z"), Result = Hp(p + "attn.hook_result"),
        };
        var (weights, qkv) = AttentionWeightsFor(l);
        var attn = new Attention(cfg, l, weights, qkv, qNorm, kNorm, rotary, attnHooks);
        INorm? ln1Post = null, ln2Post = null, ln2 = null;
        IMlp? mlp = null;
        if (cfg.UseNormalizationBeforeAndAfter) ln1Post = Norm(p + "ln1_post", Norms.Weighted(cfg.NormalizationType));
        if (postNorm) ln1 = Norm(p + "ln1", cfg.NormalizationType);
        var attnOut = Hp(p + "hook_attn_out");
        var residMid = TransformerBlock.HasResidMid(cfg) ? Hp(p + "hook_resid_mid") : null;
        var mlpIn = Hp(p + "hook_mlp_in");
        if (!cfg.AttnOnly)
        {
            if (!postNorm) ln2 = Norm(p + "ln2", cfg.NormalizationType);
            string m = p + "mlp.";
            mlp = cfg.GatedMlp
                ? new GatedMlp(P(m + "W_gate"), P(m + "W_in"), P(m + "b_in"), P(m + "W_out"), P(m + "b_out"), cfg.ActFn,
                    Hp(m + "hook_pre"), Hp(m + "hook_pre_linear"), Hp(m + "hook_post"))
                : new Mlp(P(m + "W_in"), P(m + "b_in"), P(m + "W_out"), P(m + "b_out"), cfg.ActFn, Hp(m + "hook_pre"), Hp(m + "hook_post"));
            if (cfg.UseNormalizationBeforeAndAfter) ln2Post = Norm(p + "ln2_post", Norms.Weighted(cfg.NormalizationType));
        }
        var mlpOut = Hp(p + "hook_mlp_out");
        if (postNorm && !cfg.AttnOnly) ln2 = Norm(p + "ln2", cfg.NormalizationType);
        var residPost = Hp(p + "hook_resid_post");
        return TransformerBlock.Create(cfg, new BlockParts(ln1, attn, ln2, mlp, ln1Post, ln2Post),
            new BlockHooks(residPre, attnIn, qIn, kIn, vIn, attnOut, residMid, mlpIn, mlpOut, residPost));
    }

    private HookPoint Hp(string name)
    {
        var p = new HookPoint(name);
        _hookPoints.Add(p);
        _hookDict.Add(name, p);
        return p;
    }

    /// <summary>The architecture. The opt-in hook switches (<c>UseAttnResult</c>, ...) may be changed at any time.</summary>
    public HookedTransformerConfig Config { get; }

    /// <summary>Type of the parameters and activations (<see cref="HookedTransformerConfig.Dtype"/>): float32, bfloat16 or float16.</summary>
    public ScalarType Dtype => Config.Dtype;

    /// <summary>Parameters by TransformerLens name (<c>blocks.0.attn.W_Q</c>), in TransformerLens's order. Read-only views.</summary>
    public IReadOnlyDictionary<string, Tensor> StateDict => _paramOrder.ToDictionary(n => n, n => _params[n]);

    /// <summary>Parameter names in TransformerLens's order.</summary>
    public IReadOnlyList<string> ParameterNames => _paramOrder;

    /// <summary>Every hook point, in forward order (opt-in ones included).</summary>
    public IReadOnlyList<HookPoint> HookPoints => _hookPoints;

    /// <summary>Names of every hook point (TransformerLens's <c>hook_dict</c> keys).</summary>
    public IEnumerable<string> HookNames => _hookPoints.Select(p => p.Name);

    /// <summary>A parameter by TransformerLens name; unknown names fail with the closest valid names.</summary>
    public Tensor Parameter(string name) =>
        _params.TryGetValue(name, out var t) ? t
        : throw new SharpLensException($"Unknown parameter '{name}'." + NameSuggestions.DidYouMean(name, _paramOrder));

    /// <summary>A hook point by exact name; unknown names fail with the closest valid names.</summary>
    public HookPoint GetHookPoint(string name) =>
        _hookDict.TryGetValue(name, out var p) ? p
        : throw new SharpLensException($"Unknown hook point '{name}'." + NameSuggestions.DidYouMean(name, _hookDict.Keys) +
            " Hook names look like 'blocks.0.attn.hook_pattern'; see HookedTransformer.HookNames.");

    private Tensor P(string name) => _params[name];

    /// <summary>The norm <paramref name="kind"/> at <paramref name="prefix"/> with its two hook points; null without normalization.</summary>
    private INorm? Norm(string prefix, string? kind) =>
        kind is null ? null : Norms.Create(kind, s => P(prefix + "." + s), Config.Eps, Hp(prefix + ".hook_scale"), Hp(prefix + ".hook_normalized"));

    private void LoadParameters(IReadOnlyDictionary<string, Tensor> stateDict)
    {
        var layout = ParameterLayout.For(Config);
        var expected = layout.Select(x => x.Name).ToHashSet();
        var missing = layout.Where(x => !stateDict.ContainsKey(x.Name)).Select(x => x.Name).ToList();
        if (missing.Count > 0)
            throw new SharpLensException($"State dict is missing {missing.Count} parameter(s) for this config: {string.Join(", ", missing.Take(8))}" +
                (missing.Count > 8 ? ", ..." : "") + ".");
        var unexpected = stateDict.Keys.Where(k => !expected.Contains(k)).ToList();
        if (unexpected.Count > 0)
            throw new SharpLensException($"State dict has {unexpected.Count} unexpected parameter(s): {string.Join(", ", unexpected.Take(8))}." +
                NameSuggestions.DidYouMean(unexpected[0], expected));
        foreach (var (name, shape) in layout)
        {
            var t = stateDict[name];
            if (!t.shape.SequenceEqual(shape))
                throw new SharpLensException($"Parameter '{name}' has shape {TensorExtensions.ShapeText(t.shape)}, expected {TensorExtensions.ShapeText(shape)} for this config.");
            if (!t.is_floating_point())
                throw new SharpLensException($"Parameter '{name}' has dtype {t.dtype}; parameters must be floating point.");
        }
        foreach (var (name, _) in layout)
        {
            var t = stateDict[name];
            if (t.dtype != Config.Dtype) t = t.to_type(Config.Dtype);
            _params[name] = Ops.Keep(t);
            _paramOrder.Add(name);
        }
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s attention parameters and the q/k/v projection its forward pass uses. When q, k and v
    /// already lie in one [q | k | v] storage — GPT-2's <c>c_attn</c>, Phi-3's <c>qkv_proj</c>, a weights-cache file —
    /// they are used as they are. With <see cref="_keepViews"/> (the parameters are views of a mapped checkpoint that
    /// needed no conversion) GPT-NeoX's interleaved <c>query_key_value</c> and separate <c>q_proj</c>/<c>k_proj</c>/<c>v_proj</c>
    /// matrices are multiplied where they are mapped. Otherwise (computed weights) they are copied into one
    /// [d_model, (heads + 2·kv_heads)·d_head] matrix for a single GEMM, and W_Q/W_K/W_V become views into it (no second copy).
    /// </summary>
    private (AttentionWeights Weights, QkvProjection Qkv) AttentionWeightsFor(int layer)
    {
        string p = $"blocks.{layer}.attn.";
        string wk = ParameterLayout.KeyValueName(Config, "W_K"), wv = ParameterLayout.KeyValueName(Config, "W_V");
        string bk = ParameterLayout.KeyValueName(Config, "b_K"), bv = ParameterLayout.KeyValueName(Config, "b_V");
        long d = Config.DModel, h = Config.NHeads, kv = Config.KvHeads, dh = Config.DHead, n = (h + 2 * kv) * dh;
        long[] widths = [h * dh, kv * dh, kv * dh];
        string[] wNames = ["W_Q", wk, wv], bNames = ["b_Q", bk, bv];
        long[] heads = [h, kv, kv];
        QkvProjection qkv;
        using (var scope = NewDisposeScope())
            qkv = FusedInPlace() ?? (_keepViews ? Interleaved() ?? Separate() : null) ?? FusedCopy();
        var weights = new AttentionWeights(P(p + "W_Q"), P(p + wk), P(p + wv), P(p + "W_O"), P(p + "b_Q"), P(p + bk), P(p + bv), P(p + "b_O"),
            Derived(P(p + "W_O").view(h * dh, d)));
        _qkvProjections.Add(qkv);
        return (weights, qkv);

        // q | k | v already adjacent in one storage, row-major [d, n] or as one nn.Linear [n, d] matrix: a strided view.
        QkvProjection? FusedInPlace()
        {
            Tensor w;
            if (Adjacent(wNames, widths, [dh, n, 1], 1) is { } wStart) w = P(p + "W_Q").as_strided([d, n], [n, 1], wStart);
            else if (Adjacent(wNames, widths, [dh * d, 1, d], d) is { } tStart) w = P(p + "W_Q").as_strided([d, n], [1, d], tStart);
            else return null;
            return QkvProjection.Fused(Derived(w), FusedBias(), h, kv, dh);
        }

        // GPT-NeoX's query_key_value: rows (head, [q|k|v], d_head) of one [h·3·dh, d] matrix, used transposed.
        QkvProjection? Interleaved()
        {
            if (kv != h || Adjacent(wNames, [dh, dh, dh], [3 * dh * d, 1, d], d) is not { } wStart) return null;
            var w = P(p + "W_Q").as_strided([d, 3 * h * dh], [1, d], wStart);
            Tensor b;
            if (Adjacent(bNames, [1, 1, 1], [3 * dh, 1], dh) is { } bStart) b = P(p + "b_Q").as_strided([3 * h * dh], [1], bStart);
            else
            {
                var stacked = stack(bNames.Select(x => P(p + x)).ToArray(), 1); // [h, 3, dh] (biases the checkpoint lacks: small)
                for (int i = 0; i < 3; i++) Replace(p + bNames[i], stacked.select(1, i));
                b = stacked.view(-1);
            }
            return QkvProjection.Interleaved(Derived(w), Derived(b), h, dh);
        }

        // Separate q/k/v matrices a GEMM takes as they are (nn.Linear weights transposed, or row-major [d, heads·dh]).
        QkvProjection? Separate()
        {
            var m = wNames.Select(x => QkvProjection.AsMatrix(P(p + x))).ToArray();
            if (m.Any(x => x is null)) return null;
            var b = new Tensor[3];
            for (int i = 0; i < 3; i++)
            {
                if (!P(p + bNames[i]).is_contiguous()) Replace(p + bNames[i], P(p + bNames[i]).contiguous());
                b[i] = Derived(P(p + bNames[i]).view(-1));
            }
            return QkvProjection.Separate(Derived(m[0]!), Derived(m[1]!), Derived(m[2]!), b[0], b[1], b[2], h, kv, dh);
        }

        QkvProjection FusedCopy()
        {
            var w = cat(wNames.Select(x => P(p + x).permute(1, 0, 2).reshape(d, -1)).ToArray(), 1); // [d, n]
            long off = 0;
            for (int i = 0; i < 3; i++)
            {
                Replace(p + wNames[i], w.narrow(1, off, widths[i]).view(d, heads[i], dh).permute(1, 0, 2));
                off += widths[i];
            }
            return QkvProjection.Fused(Derived(w), FusedBias(), h, kv, dh);
        }

        // The [n] bias: a view when b_Q | b_K | b_V are adjacent, else one small new vector they become views of.
        Tensor FusedBias()
        {
            if (Adjacent(bNames, widths, [dh, 1], 1) is { } bStart) return Derived(P(p + "b_Q").as_strided([n], [1], bStart));
            var b = cat(bNames.Select(x => P(p + x).reshape(-1)).ToArray(), 0);
            long off = 0;
            for (int i = 0; i < 3; i++)
            {
                Replace(p + bNames[i], b.narrow(0, off, widths[i]).view(heads[i], dh));
                off += widths[i];
            }
            return Derived(b);
        }

        // The storage offset of q when q, k and v have the given strides and follow each other in one storage,
        // k starting sizes[0] · rowElements elements after q and v sizes[1] · rowElements after k.
        long? Adjacent(string[] names, long[] sizes, long[] strides, long rowElements)
        {
            var t = names.Select(x => P(p + x)).ToArray();
            if (t.Any(x => !x.stride().SequenceEqual(strides))) return null;
            long step = t[0].element_size() * rowElements;
            if (t[1].DataAddress() != t[0].DataAddress() + sizes[0] * step || t[2].DataAddress() != t[0].DataAddress() + (sizes[0] + sizes[1]) * step)
                return null;
            return t[0].storage_offset();
        }
    }

    /// <summary>Each layer's q/k/v projection, as chosen when the model was built.</summary>
    internal IReadOnlyList<QkvProjection> QkvProjections => _qkvProjections;

    /// <summary>Replaces parameter <paramref name="name"/> by <paramref name="value"/> (a view of a tensor the model now owns).</summary>
    private void Replace(string name, Tensor value)
    {
        _params[name].Dispose();
        _params[name] = value.DetachFromDisposeScope();
    }

    private Tensor Derived(Tensor t)
    {
        _derived.Add(t.DetachFromDisposeScope());
        return t;
    }

    /// <summary>Frees every parameter tensor and detaches all hooks.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ResetHooks(includingPermanent: true);
        foreach (var t in _params.Values.Concat(_derived)) t.Dispose();
        foreach (var r in _rotaries) r.Dispose();
        _params.Clear();
        _derived.Clear();
    }
}
