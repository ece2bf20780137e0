using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Model.Components;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    /// <summary>Logits [batch, pos, d_vocab_out] for token ids [batch, pos] (or [pos]).</summary>
    /// <param name="tokens">Token ids, int64 (or any integer type).</param>
    /// <param name="attentionMask">[batch, pos], 1 for real tokens and 0 for padding; null when nothing is padded.</param>
    public Tensor Forward(Tensor tokens, Tensor? attentionMask = null) =>
        Forward(tokens, ReturnType.Logits, attentionMask: attentionMask).Logits!;

    /// <summary>TransformerLens's <c>model(tokens, return_type=..., loss_per_token=...)</c>.</summary>
    public ModelOutput Forward(Tensor tokens, ReturnType returnType, bool lossPerToken = false, Tensor? attentionMask = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var toks = PrepareTokens(tokens, 0);
        var logits = ForwardCore(toks, attentionMask, null);
        if (returnType == ReturnType.None) return new ModelOutput(null, null);
        Tensor? loss = returnType is ReturnType.Loss or ReturnType.Both ? LossFromLogits(logits, toks, lossPerToken, attentionMask) : null;
        return new ModelOutput(
            returnType is ReturnType.Logits or ReturnType.Both ? logits.MoveToOuterDisposeScope() : null,
            loss?.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Forward pass with a key/value cache: <paramref name="tokens"/> are the new positions only; positions continue
    /// after those already in <paramref name="cache"/>. Used by generation.
    /// </summary>
    public Tensor Forward(Tensor tokens, KeyValueCache cache, Tensor? newAttentionMask = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var toks = PrepareTokens(tokens, (int)cache.Length);
        var mask = cache.ExtendMask(newAttentionMask ?? ones_like(toks));
        return ForwardCore(toks, mask, cache).MoveToOuterDisposeScope();
    }

    /// <summary>Next-token cross-entropy (TransformerLens's <c>lm_cross_entropy_loss</c>): mean, or [batch, pos-1] per token.</summary>
    public static Tensor LossFromLogits(Tensor logits, Tensor tokens, bool perToken = false, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        var logProbs = logits.log_softmax(-1);
        long pos = tokens.shape[1];
        var predicted = logProbs.narrow(1, 0, pos - 1).gather(-1, tokens.narrow(1, 1, pos - 1).unsqueeze(-1)).squeeze(-1);
        var loss = -predicted;
        if (attentionMask is not null)
        {
            // Only predictions of a real token from a real token count.
            var m = attentionMask.narrow(1, 1, pos - 1).logical_and(attentionMask.narrow(1, 0, pos - 1)).to_type(loss.dtype);
            loss = perToken ? loss * m : (loss * m).sum() / m.sum();
            return loss.MoveToOuterDisposeScope();
        }
        return (perToken ? loss : loss.mean()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Runs the model and caches activations (TransformerLens's <c>run_with_cache</c>). The cache owns its tensors:
    /// dispose it when done. With <paramref name="includeBackward"/> the run builds the autograd graph, differentiates
    /// <paramref name="metric"/> of the logits and also caches every activation's gradient as <c>&lt;hook&gt;_grad</c>
    /// (after the forward keys, in the order the backward pass reaches them). A gradient is the total over every use of
    /// the activation. Parameter gradients are not computed here (see <see cref="Backward"/>).
    /// </summary>
    /// <param name="tokens">Token ids [batch, pos].</param>
    /// <param name="namesFilter">Which hook points to cache; null caches all that fire.</param>
    /// <param name="removeBatchDim">Drop the batch axis (batch size must be 1).</param>
    /// <param name="attentionMask">Padding mask, as in <see cref="Forward(Tensor, Tensor?)"/>.</param>
    /// <param name="includeBackward">Also cache gradients (TransformerLens's <c>incl_bwd=True</c>).</param>
    /// <param name="metric">Logits → scalar to differentiate; required with <paramref name="includeBackward"/>.</param>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, Func<string, bool>? namesFilter = null,
        bool removeBatchDim = false, Tensor? attentionMask = null, bool includeBackward = false, Func<Tensor, Tensor>? metric = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (removeBatchDim && tokens.dim() == 2 && tokens.shape[0] != 1)
            throw new SharpLensException($"removeBatchDim needs a batch of exactly 1 prompt, got {tokens.shape[0]}.");
        if (includeBackward && metric is null)
            throw new SharpLensException("includeBackward needs a metric (logits → scalar tensor) to differentiate, e.g. the mean logit difference.");
        var cache = new ActivationCache(this, hasBatchDim: true);
        var regs = new List<IDisposable>();
        try
        {
            foreach (var hp in _hookPoints)
                if (namesFilter is null || namesFilter(hp.Name))
                {
                    regs.Add(hp.Add((act, point) => { cache.Store(point.Name, act); return null; }, permanent: false));
                    if (includeBackward)
                        regs.Add(hp.Add((g, point) => { cache.StoreOrAdd(point.Name + "_grad", g); return null; }, permanent: false, HookDirection.Backward));
                }
            Tensor logits;
            if (includeBackward)
            {
                using var scope = NewDisposeScope();
                logits = GradientPass(tokens, attentionMask, metric!, parameterGradients: false, out _).MoveToOuterDisposeScope();
            }
            else logits = Forward(tokens, attentionMask);
            if (removeBatchDim) cache.RemoveBatchDim();
            return (logits, cache);
        }
        catch
        {
            cache.Dispose();
            throw;
        }
        finally
        {
            foreach (var r in regs) r.Dispose();
        }
    }

    /// <summary>Caches exactly the named hook points; unknown names fail with the closest valid names.</summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, IEnumerable<string> names, bool removeBatchDim = false,
        Tensor? attentionMask = null, bool includeBackward = false, Func<Tensor, Tensor>? metric = null)
    {
        var set = names.ToHashSet(StringComparer.Ordinal);
        foreach (var n in set) GetHookPoint(n);
        return RunWithCache(tokens, set.Contains, removeBatchDim, attentionMask, includeBackward, metric);
    }

    /// <summary>
    /// Runs the model with temporary hooks (TransformerLens's <c>run_with_hooks</c>). With
    /// <paramref name="resetHooksEnd"/> the hooks are removed afterwards, also when the forward throws. Backward hooks
    /// need <paramref name="metric"/>: the run then differentiates it (no parameter gradients) so they fire before
    /// the hooks are removed.
    /// </summary>
    public Tensor RunWithHooks(Tensor tokens, IEnumerable<Hook> hooks, bool resetHooksEnd = true, Tensor? attentionMask = null,
        Func<Tensor, Tensor>? metric = null)
    {
        var list = hooks.ToList();
        if (metric is null && list.Any(h => h.Direction == HookDirection.Backward))
            throw new SharpLensException("Backward hooks only run in a gradient run: pass a metric (logits → scalar) to RunWithHooks, " +
                "or attach them with Hooks(...) around Backward(...).");
        var scope = AddHooks(list);
        try
        {
            if (metric is null) return Forward(tokens, attentionMask);
            using var inner = NewDisposeScope();
            return GradientPass(tokens, attentionMask, metric, parameterGradients: false, out _).MoveToOuterDisposeScope();
        }
        finally
        {
            if (resetHooksEnd) scope.Dispose();
        }
    }

    /// <summary>
    /// Attaches hooks until the returned scope is disposed (TransformerLens's <c>with model.hooks(...)</c>).
    /// Every name is checked before any hook is attached.
    /// </summary>
    public HookScope Hooks(params Hook[] hooks) => AddHooks(hooks);

    /// <summary>Attaches hooks until the returned scope is disposed.</summary>
    public HookScope AddHooks(IEnumerable<Hook> hooks)
    {
        var list = hooks.ToList();
        var targets = list.Select(h => (h, points: Resolve(h))).ToList(); // validate all names first
        var regs = new List<IDisposable>();
        foreach (var (h, points) in targets)
            foreach (var p in points) regs.Add(p.Add(h.Function, permanent: false, h.Direction));
        return new HookScope(regs);
    }

    /// <summary>
    /// Attaches a hook by name (TransformerLens's <c>add_hook</c>). Permanent hooks survive <see cref="ResetHooks"/>
    /// unless it is asked to remove them too. The returned handle detaches the hook when disposed.
    /// </summary>
    public IDisposable AddHook(string name, HookFunction function, bool permanent = false) =>
        AddHook(name, function, HookDirection.Forward, permanent);

    /// <summary>
    /// Attaches a forward or backward hook by name (TransformerLens's <c>add_hook(name, fn, dir=...)</c>). A backward
    /// hook receives the gradient of the activation in gradient runs and may return a replacement.
    /// </summary>
    public IDisposable AddHook(string name, HookFunction function, HookDirection direction, bool permanent = false) =>
        GetHookPoint(name).Add(function, permanent, direction);

    /// <summary>Attaches a hook to every hook point whose name satisfies <paramref name="predicate"/>.</summary>
    public IDisposable AddHook(Func<string, bool> predicate, HookFunction function, bool permanent = false,
        HookDirection direction = HookDirection.Forward) =>
        new HookScope(_hookPoints.Where(p => predicate(p.Name)).Select(p => (IDisposable)p.Add(function, permanent, direction)).ToList());

    /// <summary>Removes all temporary hooks, and permanent ones too when asked (TransformerLens's <c>reset_hooks</c>).</summary>
    public void ResetHooks(bool includingPermanent = false)
    {
        foreach (var p in _hookPoints) p.RemoveHooks(includingPermanent);
    }

    private IEnumerable<HookPoint> Resolve(Hook h) =>
        h.Name is not null ? [GetHookPoint(h.Name)] : _hookPoints.Where(p => h.Predicate!(p.Name)).ToList();

    private Tensor PrepareTokens(Tensor tokens, int pastLength)
    {
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        if (tokens.dim() != 2)
            throw new SharpLensException($"Tokens must have shape [batch, pos] or [pos], got {TensorExtensions.ShapeText(tokens.shape)}.");
        if (tokens.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte))
            throw new SharpLensException($"Tokens must be integer ids, got dtype {tokens.dtype}.");
        if (tokens.dtype != ScalarType.Int64) tokens = tokens.to_type(ScalarType.Int64);
        long pos = tokens.shape[1];
        if (pos == 0) throw new SharpLensException("Tokens are empty: a prompt needs at least one token.");
        if (pastLength + pos > Config.NCtx)
            throw new SharpLensException($"Sequence of {pastLength + pos} tokens is longer than the model's context n_ctx = {Config.NCtx}. " +
                "Shorten the input (or truncate when tokenizing).");
        if (tokens.numel() > 0)
        {
            long min = tokens.min().item<long>(), max = tokens.max().item<long>();
            if (min < 0 || max >= Config.DVocab)
            {
                long bad = min < 0 ? min : max;
                var where = (tokens == bad).nonzero()[0];
                throw new SharpLensException($"Token id {bad} at [batch {where[0].item<long>()}, pos {where[1].item<long>()}] is outside the vocabulary [0, {Config.DVocab}).");
            }
        }
        return tokens;
    }

    /// <summary>The forward pass proper; tensors live in the caller's dispose scope.</summary>
    private Tensor ForwardCore(Tensor tokens, Tensor? attentionMask, KeyValueCache? kv)
    {
        int past = (int)(kv?.Length ?? 0);
        var positions = attentionMask is null ? null : PosEmbed.PositionsFromMask(attentionMask);
        var resid = _embed.Forward(tokens);
        if (_posEmbed is not null) resid = resid + _posEmbed.Forward(tokens, past, positions);
        var ctx = new AttentionContext(attentionMask, positions);
        for (int l = 0; l < _blocks.Length; l++)
            resid = _blocks[l].Forward(resid, ctx, kv?.Layers[l]);
        if (_lnFinal is not null) resid = _lnFinal.Forward(resid);
        return _unembed.Forward(resid);
    }
}
