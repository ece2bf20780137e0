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
    private readonly List<AttentionWeights> _attentionWeights = []; // per layer, for the weights cache's fused layout
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
    {
        Config = config;
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
        var attn = new Attention(cfg, l, AttentionWeightsFor(l), qNorm, kNorm, rotary, attnHooks);
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
    /// One [d_model, (heads + 2·kv_heads)·d_head] matrix (and one bias vector) for q, k and v so the common path does a
    /// single GEMM; the TransformerLens-shaped parameters become views into it (no second copy). When they already are
    /// such views — GPT-2's <c>c_attn</c>, or a weights-cache file — they are used as they are, without copying.
    /// </summary>
    private AttentionWeights AttentionWeightsFor(int layer)
    {
        string p = $"blocks.{layer}.attn.";
        string wk = ParameterLayout.KeyValueName(Config, "W_K"), wv = ParameterLayout.KeyValueName(Config, "W_V");
        string bk = ParameterLayout.KeyValueName(Config, "b_K"), bv = ParameterLayout.KeyValueName(Config, "b_V");
        long d = Config.DModel, h = Config.NHeads, kv = Config.KvHeads, dh = Config.DHead, n = (h + 2 * kv) * dh;
        long[] widths = [h * dh, kv * dh, kv * dh];
        string[] wNames = ["W_Q", wk, wv], bNames = ["b_Q", bk, bv];
        long[] heads = [h, kv, kv];
        Tensor wFused, bFused;
        using (var scope = NewDisposeScope())
        {
            if (FusedViews(bNames, widths, [dh, 1], 1) is { } bStart)
            {
                bFused = Derived(P(p + "b_Q").as_strided([n], [1], bStart));
            }
            else
            {
                var b = cat(bNames.Select(x => P(p + x).reshape(-1)).ToArray(), 0); // [n] (small)
                long off = 0;
                for (int i = 0; i < 3; i++)
                {
                    _params[p + bNames[i]].Dispose();
                    _params[p + bNames[i]] = b.narrow(0, off, widths[i]).view(heads[i], dh).DetachFromDisposeScope();
                    off += widths[i];
                }
                bFused = Derived(b);
            }

            if (FusedViews(wNames, widths, [dh, n, 1], 1) is { } wStart)
            {
                wFused = Derived(P(p + "W_Q").as_strided([d, n], [n, 1], wStart));
            }
            else if (FusedViews(wNames, widths, [dh * d, 1, d], d) is { } tStart)
            {
                // One nn.Linear [q | k | v, d_model] matrix (Phi-3's qkv_proj): its transpose, a strided view the GEMM takes as is.
                wFused = Derived(P(p + "W_Q").as_strided([d, n], [1, d], tStart));
            }
            else
            {
                var w = cat(wNames.Select(x => P(p + x).permute(1, 0, 2).reshape(d, -1)).ToArray(), 1); // [d, n]
                long off = 0;
                for (int i = 0; i < 3; i++)
                {
                    _params[p + wNames[i]].Dispose();
                    _params[p + wNames[i]] = w.narrow(1, off, widths[i]).view(d, heads[i], dh).permute(1, 0, 2).DetachFromDisposeScope();
                    off += widths[i];
                }
                wFused = Derived(w);
            }
        }
        var weights = new AttentionWeights(P(p + "W_Q"), P(p + wk), P(p + wv), P(p + "W_O"), P(p + "b_Q"), P(p + bk), P(p + bv), P(p + "b_O"),
            wFused, bFused, Derived(P(p + "W_O").view(h * dh, d)));
        _attentionWeights.Add(weights);
        return weights;

        // The storage offset of q when q, k and v have the given strides and follow each other in one storage (q | k | v),
        // each part sizes[i] · rowElements elements long.
        long? FusedViews(string[] names, long[] sizes, long[] strides, long rowElements)
        {
            var t = names.Select(x => P(p + x)).ToArray();
            if (t.Any(x => !x.stride().SequenceEqual(strides))) return null;
            long step = t[0].element_size() * rowElements;
            if (t[1].DataAddress() != t[0].DataAddress() + sizes[0] * step || t[2].DataAddress() != t[0].DataAddress() + (sizes[0] + sizes[1]) * step)
                return null;
            return t[0].storage_offset();
        }
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
