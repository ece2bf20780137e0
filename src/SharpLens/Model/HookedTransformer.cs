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
public sealed record ModelOutput(Tensor? Logits, Tensor? Loss);

/// <summary>
/// A decoder-only transformer whose every activation can be read and replaced by its TransformerLens hook name
/// (TransformerLens's <c>HookedTransformer</c>). Parameters carry TransformerLens's state-dict names and
/// head-major shapes. Inference only: no autograd graph is ever built. The model owns its parameter tensors.
/// </summary>
public sealed partial class HookedTransformer : IDisposable
{
    private readonly Dictionary<string, Tensor> _params = new(StringComparer.Ordinal);
    private readonly List<string> _paramOrder = [];
    private readonly List<Tensor> _derived = []; // fused views of parameters, freed with the model
    private readonly List<HookPoint> _hookPoints = [];
    private readonly Dictionary<string, HookPoint> _hookDict = new(StringComparer.Ordinal);
    private readonly Embed _embed;
    private readonly PosEmbed _posEmbed;
    private readonly TransformerBlock[] _blocks;
    private readonly LayerNorm? _lnFinal;
    private readonly Unembed _unembed;
    private bool _disposed;

    // Reuse freed tensor memory instead of faulting fresh pages in on every forward (see NativeMemory).
    static HookedTransformer() => NativeMemory.Configure();

    /// <summary>
    /// Builds a model from a config and a TransformerLens-named state dict. Every parameter of
    /// <see cref="ParameterLayout.For"/> must be present with its shape; extra names are an error. The model takes
    /// ownership of the tensors (they are converted to float32 when stored in another float type).
    /// </summary>
    public HookedTransformer(HookedTransformerConfig config, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        Config = config;
        LoadParameters(stateDict);
        int h = config.NHeads, dh = config.DHead;

        HookPoint Hp(string name)
        {
            var p = new HookPoint(name);
            _hookPoints.Add(p);
            _hookDict.Add(name, p);
            return p;
        }

        _embed = new Embed(_params["embed.W_E"], Hp("hook_embed"));
        _posEmbed = new PosEmbed(_params["pos_embed.W_pos"], Hp("hook_pos_embed"));
        _blocks = new TransformerBlock[config.NLayers];
        for (int l = 0; l < config.NLayers; l++)
        {
            string p = $"blocks.{l}.";
            var residPre = Hp(p + "hook_resid_pre");
            var attnIn = Hp(p + "hook_attn_in");
            var qIn = Hp(p + "hook_q_input"); var kIn = Hp(p + "hook_k_input"); var vIn = Hp(p + "hook_v_input");
            var ln1 = Norm(p + "ln1", Hp(p + "ln1.hook_scale"), Hp(p + "ln1.hook_normalized"))!;
            var attnHooks = new AttentionHooks(Hp(p + "attn.hook_q"), Hp(p + "attn.hook_k"), Hp(p + "attn.hook_v"),
                Hp(p + "attn.hook_attn_scores"), Hp(p + "attn.hook_pattern"), Hp(p + "attn.hook_z"), Hp(p + "attn.hook_result"));
            var (wQkv, bQkv) = FuseQkv(l);
            var attn = new Attention(config, l, P(p + "attn.W_Q"), P(p + "attn.W_K"), P(p + "attn.W_V"), P(p + "attn.W_O"),
                P(p + "attn.b_Q"), P(p + "attn.b_K"), P(p + "attn.b_V"), P(p + "attn.b_O"), wQkv, bQkv,
                Derived(P(p + "attn.W_O").view(h * dh, config.DModel)), attnHooks);
            var attnOut = Hp(p + "hook_attn_out");
            var residMid = Hp(p + "hook_resid_mid");
            var mlpIn = Hp(p + "hook_mlp_in");
            LayerNorm? ln2 = null; Mlp? mlp = null;
            HookPoint mlpOut;
            if (!config.AttnOnly)
            {
                ln2 = Norm(p + "ln2", Hp(p + "ln2.hook_scale"), Hp(p + "ln2.hook_normalized"));
                mlp = new Mlp(P(p + "mlp.W_in"), P(p + "mlp.b_in"), P(p + "mlp.W_out"), P(p + "mlp.b_out"), config.ActFn,
                    Hp(p + "mlp.hook_pre"), Hp(p + "mlp.hook_post"));
            }
            mlpOut = Hp(p + "hook_mlp_out");
            var residPost = Hp(p + "hook_resid_post");
            _blocks[l] = new TransformerBlock(config, ln1, attn, ln2, mlp,
                new BlockHooks(residPre, attnIn, qIn, kIn, vIn, attnOut, residMid, mlpIn, mlpOut, residPost));
        }
        _lnFinal = Norm("ln_final", Hp("ln_final.hook_scale"), Hp("ln_final.hook_normalized"));
        _unembed = new Unembed(P("unembed.W_U"), P("unembed.b_U"), Hp("unembed.hook_in"), Hp("unembed.hook_out"));
    }

    /// <summary>The architecture. The opt-in hook switches (<c>UseAttnResult</c>, ...) may be changed at any time.</summary>
    public HookedTransformerConfig Config { get; }

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

    private LayerNorm? Norm(string prefix, HookPoint scale, HookPoint normalized) => Config.NormalizationType switch
    {
        "LN" => new LayerNorm(P(prefix + ".w"), P(prefix + ".b"), Config.Eps, scale, normalized),
        "LNPre" => new LayerNorm(null, null, Config.Eps, scale, normalized),
        _ => null,
    };

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
            if (t.dtype != ScalarType.Float32) t = t.to_type(ScalarType.Float32);
            _params[name] = Ops.Keep(t);
            _paramOrder.Add(name);
        }
    }

    /// <summary>
    /// One contiguous [d_model, 3·heads·d_head] matrix for q, k and v so the common path does a single GEMM; the
    /// TransformerLens-shaped parameters become views into it (no second copy).
    /// </summary>
    private (Tensor W, Tensor B) FuseQkv(int layer)
    {
        string p = $"blocks.{layer}.attn.";
        long d = Config.DModel, h = Config.NHeads, dh = Config.DHead;
        using var scope = NewDisposeScope();
        var b = stack([P(p + "b_Q"), P(p + "b_K"), P(p + "b_V")], 0).contiguous(); // [3, h, dh] (small: always copied)
        string[] bnames = ["b_Q", "b_K", "b_V"];
        for (int i = 0; i < 3; i++)
        {
            _params[p + bnames[i]].Dispose();
            _params[p + bnames[i]] = b.select(0, i).DetachFromDisposeScope();
        }
        var bFused = Derived(b.view(3 * h * dh));
        // Weights converted from GPT-2's c_attn are already views of one [d, 3, h, dh] buffer: use it as is.
        var q = P(p + "W_Q");
        long[] viewStrides = [dh, 3 * h * dh, 1];
        long step = h * dh * q.element_size();
        if (q.stride().SequenceEqual(viewStrides) && P(p + "W_K").stride().SequenceEqual(viewStrides) && P(p + "W_V").stride().SequenceEqual(viewStrides)
            && P(p + "W_K").DataAddress() == q.DataAddress() + step && P(p + "W_V").DataAddress() == q.DataAddress() + 2 * step)
            return (Derived(q.as_strided([d, 3 * h * dh], [3 * h * dh, 1], q.storage_offset())), bFused);

        var w = stack([P(p + "W_Q"), P(p + "W_K"), P(p + "W_V")], 0)   // [3, h, d, dh]
            .permute(2, 0, 1, 3).contiguous();                         // [d, 3, h, dh]
        string[] names = ["W_Q", "W_K", "W_V"];
        for (int i = 0; i < 3; i++)
        {
            _params[p + names[i]].Dispose();
            _params[p + names[i]] = w.select(1, i).permute(1, 0, 2).DetachFromDisposeScope(); // [h, d, dh] view
        }
        return (Derived(w.view(d, 3 * h * dh)), bFused);
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
        _params.Clear();
        _derived.Clear();
    }
}
