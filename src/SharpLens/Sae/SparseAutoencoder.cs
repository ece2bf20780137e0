using SharpLens.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Sae;

/// <summary>
/// A sparse autoencoder for inference with SAELens 6.x semantics (<c>StandardSAE</c>, <c>TopKSAE</c>,
/// <c>JumpReLUSAE</c>, <c>GatedSAE</c>): <see cref="Encode"/> maps an activation of the hook it was trained on to
/// feature activations, <see cref="Decode"/> maps them back. Spliced into a model
/// (<see cref="SaeSplicing.AddSae"/>) it replaces that hook point and exposes its own hook points
/// <c>&lt;hook&gt;.hook_sae_input</c>, <c>hook_sae_acts_pre</c>, <c>hook_sae_acts_post</c>, <c>hook_sae_recons</c>,
/// <c>hook_sae_error</c> and <c>hook_sae_output</c>. The SAE owns its weight tensors (float32).
/// </summary>
public sealed partial class SparseAutoencoder : IHookModule, IDisposable
{
    private const double LayerNormEps = 1e-5;
    private readonly Dictionary<string, Tensor> _weights;
    private readonly Tensor? _decoderNorms; // topk with rescale_acts_by_decoder_norm
    private NormState? _lastNorm;           // what Encode measured, for a following Decode (SAELens keeps it on the module)
    private int? _lastHeads;                // hook_z: heads of the last Encode's input, so Decode gives [..., head, d_head] back
    private bool _disposed;

    /// <summary>Builds an SAE from its config and SAELens state dict (names and shapes checked); takes ownership of the tensors.</summary>
    public SparseAutoencoder(SaeConfig config, IReadOnlyDictionary<string, Tensor> stateDict, Tensor? logSparsity = null, string? source = null)
    {
        Config = config;
        Source = source ?? config.HookName;
        _weights = Validate(config, stateDict, Source);
        if (logSparsity is not null && !logSparsity.shape.SequenceEqual([config.DSae]))
            throw new SharpLensException($"{Source}: sparsity has shape {TensorExtensions.ShapeText(logSparsity.shape)}, expected [{config.DSae}].");
        LogSparsity = logSparsity?.to_type(ScalarType.Float32).DetachFromDisposeScope();
        string h = config.HookName + ".";
        HookSaeInput = new HookPoint(h + "hook_sae_input");
        HookSaeActsPre = new HookPoint(h + "hook_sae_acts_pre");
        HookSaeActsPost = new HookPoint(h + "hook_sae_acts_post");
        HookSaeRecons = new HookPoint(h + "hook_sae_recons");
        HookSaeError = new HookPoint(h + "hook_sae_error");
        HookSaeOutput = new HookPoint(h + "hook_sae_output");
        HookPoints = [HookSaeInput, HookSaeActsPre, HookSaeActsPost, HookSaeRecons, HookSaeError, HookSaeOutput];
        if (config.Architecture == SaeArchitecture.TopK && config.RescaleActsByDecoderNorm)
            _decoderNorms = W_dec.norm(1).DetachFromDisposeScope();
    }

    /// <summary>The configuration.</summary>
    public SaeConfig Config { get; }
    /// <summary>Where the SAE was loaded from (for messages).</summary>
    public string Source { get; }
    /// <summary>The hook the SAE reads and replaces.</summary>
    public string HookName => Config.HookName;
    /// <summary>
    /// When spliced in: add the reconstruction error so the model's output is unchanged
    /// (<c>out = recons(hooked) + (x − recons(x without hooks))</c>), as SAELens's <c>use_error_term</c>.
    /// </summary>
    public bool UseErrorTerm { get; set; }

    /// <summary><c>log10</c> of each feature's firing fraction from training (<c>sparsity.safetensors</c>), when present.</summary>
    public Tensor? LogSparsity { get; }

    /// <summary>Encoder [d_in, d_sae].</summary>
    public Tensor W_enc => _weights["W_enc"];
    /// <summary>Decoder [d_sae, d_in]: row f is feature f's direction.</summary>
    public Tensor W_dec => _weights["W_dec"];
    /// <summary>Decoder bias [d_in].</summary>
    public Tensor b_dec => _weights["b_dec"];
    /// <summary>Parameters by SAELens name (<c>W_enc</c>, <c>b_enc</c>, <c>threshold</c>, <c>b_gate</c>, ...).</summary>
    public IReadOnlyDictionary<string, Tensor> StateDict => _weights;

    /// <summary>Input (after reshaping, before normalisation) [..., d_in].</summary>
    public HookPoint HookSaeInput { get; }
    /// <summary>Pre-activations [..., d_sae] (gated: the magnitude path).</summary>
    public HookPoint HookSaeActsPre { get; }
    /// <summary>Feature activations [..., d_sae]: hook here to ablate or steer features.</summary>
    public HookPoint HookSaeActsPost { get; }
    /// <summary>Reconstruction in the normalised, flattened space [..., d_in].</summary>
    public HookPoint HookSaeRecons { get; }
    /// <summary>Reconstruction error (with the error term only), in the hook's shape.</summary>
    public HookPoint HookSaeError { get; }
    /// <summary>What the model continues with, in the hook's shape.</summary>
    public HookPoint HookSaeOutput { get; }
    /// <inheritdoc/>
    public IReadOnlyList<HookPoint> HookPoints { get; }

    /// <summary>
    /// Feature activations [..., d_sae] of an activation at the SAE's hook ([..., d_in]; <c>hook_z</c> SAEs take
    /// [..., head, d_head] or the flattened [..., d_in]). Runs the SAE's hooks.
    /// </summary>
    public Tensor Encode(Tensor x)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var acts = EncodeCore(x, hooks: true, out var norm, out var shape);
        Remember(norm);
        _lastHeads = shape is null ? null : (int)shape[^2];
        return acts.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Reconstruction from feature activations, in the hook's space (de-normalised with what the last
    /// <see cref="Encode"/> measured, as SAELens does; <c>hook_z</c> SAEs give [..., head, d_head]).
    /// </summary>
    public Tensor Decode(Tensor featureActs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (NeedsNormState && _lastNorm is null)
            throw new SharpLensException($"SAE {Source} normalises its input ({Config.NormalizeActivations}): call Encode before Decode.");
        using var scope = NewDisposeScope();
        long[]? shape = _lastHeads is int heads ? [.. featureActs.shape[..^1], heads, Config.DIn / heads] : null;
        return DecodeCore(featureActs, _lastNorm, shape, hooks: true).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The spliced-in computation (SAELens's <c>SAE.forward</c>): <c>hook_sae_output(decode(encode(x)) [+ error])</c>,
    /// where the error is recomputed with the SAE's hooks disabled and passes <c>hook_sae_error</c>.
    /// </summary>
    public Tensor Forward(Tensor x)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // No dispose scope of its own: like the model's components, intermediates live in the forward pass's scope
        // (a gradient run keeps leaves made at the SAE's hook points until its backward pass).
        var acts = EncodeCore(x, hooks: true, out var norm, out var shape);
        var output = DecodeCore(acts, norm, shape, hooks: true);
        if (UseErrorTerm)
        {
            Tensor error;
            using (no_grad()) // SAELens: the error is a constant of the forward pass, also in gradient runs
                error = x - DecodeCore(EncodeCore(x, hooks: false, out var n2, out _), n2, shape, hooks: false);
            output = output + HookSaeError.Apply(error);
        }
        return HookSaeOutput.Apply(output);
    }

    /// <summary>An activation at the hook as the SAE sees it: hook_z flattened to [..., d_in] (width checked).</summary>
    public Tensor FlattenInput(Tensor x) => ReshapeIn(x, out _).alias();

    /// <summary>
    /// Per token [..., 1], the factor the decoder output is multiplied by when it leaves the normalised space: the
    /// unbiased std for <c>layer_norm</c>, ‖x‖/√d_in for <c>constant_norm_rescale</c>, 1 otherwise. A feature's
    /// contribution to the hook's activation is <c>act · W_dec[f] · factor</c>.
    /// </summary>
    public Tensor DenormalisationScale(Tensor x)
    {
        using var scope = NewDisposeScope();
        var flat = ReshapeIn(x, out _);
        var f = Config.NormalizeActivations switch
        {
            "layer_norm" => flat.std(-1, unbiased: true, keepdim: true),
            "constant_norm_rescale" => flat.norm(-1, keepdim: true) / Math.Sqrt(Config.DIn),
            _ => ones_like(flat.narrow(-1, 0, 1)),
        };
        return f.MoveToOuterDisposeScope();
    }

    private bool NeedsNormState => Config.NormalizeActivations is "layer_norm" or "constant_norm_rescale";

    private sealed record NormState(Tensor A, Tensor B);

    private void Remember(NormState? norm)
    {
        if (_lastNorm is not null) { _lastNorm.A.Dispose(); _lastNorm.B.Dispose(); }
        _lastNorm = norm is null ? null : new NormState(norm.A.detach().DetachFromDisposeScope(), norm.B.detach().DetachFromDisposeScope());
    }

    private Tensor Hook(HookPoint p, Tensor t, bool hooks) => hooks ? p.Apply(t) : t;

    /// <summary>Flattens hook_z input, checks the width.</summary>
    private Tensor ReshapeIn(Tensor x, out long[]? originalShape)
    {
        originalShape = null;
        if (x.dtype != ScalarType.Float32) x = x.to_type(ScalarType.Float32);
        long last = x.shape[^1];
        if (Config.ReshapeHookZ && last != Config.DIn && x.dim() >= 2 && x.shape[^1] * x.shape[^2] == Config.DIn)
        {
            originalShape = x.shape;
            return x.flatten(-2);
        }
        if (last != Config.DIn)
            throw new SharpLensException($"SAE {Source} has d_in = {Config.DIn}, but the activation at '{HookName}' has shape " +
                $"{TensorExtensions.ShapeText(x.shape)} (width {last}" + (Config.ReshapeHookZ ? $", {x.shape[^1]}·{(x.dim() >= 2 ? x.shape[^2] : 1)} heads" : "") +
                "). The SAE was trained on a different hook or model.");
        return x;
    }

    private Tensor EncodeCore(Tensor x, bool hooks, out NormState? norm, out long[]? originalShape)
    {
        var sae = Hook(HookSaeInput, ReshapeIn(x, out originalShape), hooks);
        norm = null;
        switch (Config.NormalizeActivations)
        {
            case "constant_norm_rescale":
            {
                var c = Math.Sqrt(Config.DIn) / sae.norm(-1, keepdim: true);
                norm = new NormState(c, c);
                sae = sae * c;
                break;
            }
            case "layer_norm":
            {
                var mu = sae.mean([-1], keepdim: true);
                var std = sae.std(-1, unbiased: true, keepdim: true);
                norm = new NormState(mu, std);
                sae = (sae - mu) / (std + LayerNormEps);
                break;
            }
        }
        if (Config.ApplyBDecToInput) sae = sae - b_dec;
        Tensor pre, acts;
        switch (Config.Architecture)
        {
            case SaeArchitecture.Gated:
            {
                var gate = (sae.matmul(W_enc) + _weights["b_gate"]) > 0;
                pre = Hook(HookSaeActsPre, sae.matmul(W_enc * _weights["r_mag"].exp()) + _weights["b_mag"], hooks);
                acts = gate.to_type(pre.dtype) * pre.relu();
                break;
            }
            case SaeArchitecture.JumpReLU:
                pre = Hook(HookSaeActsPre, sae.matmul(W_enc) + _weights["b_enc"], hooks);
                acts = pre.relu() * (pre > _weights["threshold"]).to_type(pre.dtype);
                break;
            case SaeArchitecture.TopK:
            {
                pre = Hook(HookSaeActsPre, sae.matmul(W_enc) + _weights["b_enc"], hooks);
                var scored = _decoderNorms is null ? pre : pre * _decoderNorms;
                var (values, indices) = scored.topk(Config.K, dim: -1);
                acts = zeros_like(scored).scatter(-1, indices, values.relu());
                break;
            }
            default:
                pre = Hook(HookSaeActsPre, sae.matmul(W_enc) + _weights["b_enc"], hooks);
                acts = pre.relu();
                break;
        }
        return Hook(HookSaeActsPost, acts, hooks);
    }

    private Tensor DecodeCore(Tensor acts, NormState? norm, long[]? originalShape, bool hooks)
    {
        if (acts.shape[^1] != Config.DSae)
            throw new SharpLensException($"SAE {Source} has d_sae = {Config.DSae}, but the feature activations have shape {TensorExtensions.ShapeText(acts.shape)}.");
        if (_decoderNorms is not null) acts = acts / _decoderNorms;
        var recons = Hook(HookSaeRecons, acts.matmul(W_dec) + b_dec, hooks);
        if (norm is not null)
            recons = Config.NormalizeActivations == "layer_norm" ? recons * norm.B + norm.A : recons / norm.A;
        return originalShape is null ? recons : recons.reshape(originalShape);
    }

    private static Dictionary<string, Tensor> Validate(SaeConfig c, IReadOnlyDictionary<string, Tensor> sd, string source)
    {
        var expected = new List<(string, long[])> { ("W_enc", [c.DIn, c.DSae]), ("W_dec", [c.DSae, c.DIn]), ("b_dec", [c.DIn]) };
        switch (c.Architecture)
        {
            case SaeArchitecture.Standard or SaeArchitecture.TopK: expected.Add(("b_enc", [c.DSae])); break;
            case SaeArchitecture.JumpReLU: expected.Add(("b_enc", [c.DSae])); expected.Add(("threshold", [c.DSae])); break;
            case SaeArchitecture.Gated: expected.Add(("b_gate", [c.DSae])); expected.Add(("b_mag", [c.DSae])); expected.Add(("r_mag", [c.DSae])); break;
        }
        string arch = SaeConfig.ArchitectureNames[(int)c.Architecture];
        var names = expected.Select(e => e.Item1).ToList();
        var missing = names.Where(n => !sd.ContainsKey(n)).ToList();
        if (missing.Count > 0)
            throw new SharpLensException($"{source}: a {arch} SAE needs the weights {string.Join(", ", names)}; missing {string.Join(", ", missing)}" +
                $" (the file has {string.Join(", ", sd.Keys)}).");
        var extra = sd.Keys.Where(k => !names.Contains(k)).ToList();
        if (extra.Count > 0)
            throw new SharpLensException($"{source}: unexpected weights {string.Join(", ", extra)} for a {arch} SAE (expected {string.Join(", ", names)})." +
                NameSuggestions.DidYouMean(extra[0], names));
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            var t = sd[name];
            if (!t.shape.SequenceEqual(shape))
                throw new SharpLensException($"{source}: weight '{name}' has shape {TensorExtensions.ShapeText(t.shape)}, but d_in = {c.DIn} and d_sae = {c.DSae} need {TensorExtensions.ShapeText(shape)}.");
            if (!t.is_floating_point())
                throw new SharpLensException($"{source}: weight '{name}' has dtype {t.dtype}; SAE weights must be floating point.");
            result[name] = (t.dtype == ScalarType.Float32 ? t : t.to_type(ScalarType.Float32)).DetachFromDisposeScope();
        }
        return result;
    }

    /// <summary>Frees the weights.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _weights.Values) t.Dispose();
        _weights.Clear();
        _decoderNorms?.Dispose();
        LogSparsity?.Dispose();
        Remember(null);
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"SAE({SaeConfig.ArchitectureNames[(int)Config.Architecture]}, {HookName}, d_in={Config.DIn}, d_sae={Config.DSae})";
}
