using SharpLens.Analysis;
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
    public Tensor Forward(Tensor tokens, Tensor? attentionMask) => Forward(tokens, attentionMask, null, null);

    /// <summary>
    /// TransformerLens's <c>model(input, start_at_layer=..., stop_at_layer=...)</c>: runs blocks
    /// [<paramref name="startAtLayer"/>, <paramref name="stopAtLayer"/>) only. Without <paramref name="stopAtLayer"/> it
    /// returns the logits [batch, pos, d_vocab_out]; with it, the residual stream entering block
    /// <paramref name="stopAtLayer"/> (what <c>blocks.{stop}.hook_resid_pre</c> would see; <c>n_layers</c> gives the last
    /// block's output before <c>ln_final</c>) and no logits, so later layers, <c>ln_final</c> and the unembedding never run.
    /// Negative layers count from the end, as in Python. Tensors a hook receives are freed when their block ends
    /// (outside gradient runs): a hook that keeps one must clone it or detach it from the dispose scope.
    /// </summary>
    /// <param name="input">Token ids [batch, pos] (or [pos]); with <paramref name="startAtLayer"/>, the residual stream
    /// [batch, pos, d_model] entering that block (e.g. a cached <c>blocks.{start}.hook_resid_pre</c>).</param>
    /// <param name="attentionMask">Padding mask [batch, pos], as in <see cref="Forward(Tensor, Tensor?)"/>. With
    /// <paramref name="startAtLayer"/> it is the only source of padding information (as in TransformerLens).</param>
    /// <param name="startAtLayer">First block to run, in [-n_layers, n_layers]; null starts from the token embedding.</param>
    /// <param name="stopAtLayer">Block to stop before, in [-n_layers, n_layers]; null runs to the logits.</param>
    public Tensor Forward(Tensor input, Tensor? attentionMask = null, int? startAtLayer = null, int? stopAtLayer = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var range = LayerRange(startAtLayer, stopAtLayer);
        var x = startAtLayer is null ? PrepareTokens(input, 0) : PrepareResidual(input, attentionMask, range.Start);
        return ForwardCore(x, attentionMask, null, range, scope).MoveToOuterDisposeScope();
    }

    /// <summary>TransformerLens's <c>model(tokens, return_type=..., loss_per_token=...)</c>.</summary>
    public ModelOutput Forward(Tensor tokens, ReturnType returnType, bool lossPerToken, Tensor? attentionMask) =>
        Forward(tokens, returnType, lossPerToken, attentionMask, null, null, null);

    /// <summary>
    /// TransformerLens's <c>model(input, return_type=..., loss_per_token=..., start_at_layer=..., tokens=...,
    /// stop_at_layer=...)</c>. With <paramref name="stopAtLayer"/> the output holds only
    /// <see cref="ModelOutput.Residual"/> (see <see cref="Forward(Tensor, Tensor?, int?, int?)"/>).
    /// </summary>
    /// <param name="input">Token ids, or with <paramref name="startAtLayer"/> the residual stream entering that block.</param>
    /// <param name="returnType">What to compute.</param>
    /// <param name="lossPerToken">Loss per token [batch, pos-1] instead of the mean.</param>
    /// <param name="attentionMask">Padding mask [batch, pos].</param>
    /// <param name="startAtLayer">First block to run; null starts from the token embedding.</param>
    /// <param name="stopAtLayer">Block to stop before; null runs to the logits.</param>
    /// <param name="tokens">With <paramref name="startAtLayer"/>, the token ids the loss predicts (TransformerLens's <c>tokens</c>).</param>
    public ModelOutput Forward(Tensor input, ReturnType returnType, bool lossPerToken = false, Tensor? attentionMask = null,
        int? startAtLayer = null, int? stopAtLayer = null, Tensor? tokens = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var range = LayerRange(startAtLayer, stopAtLayer);
        var x = startAtLayer is null ? PrepareTokens(input, 0) : PrepareResidual(input, attentionMask, range.Start);
        var output = ForwardCore(x, attentionMask, null, range, scope);
        if (stopAtLayer is not null) return new ModelOutput(null, null) { Residual = output.MoveToOuterDisposeScope() };
        if (returnType == ReturnType.None) return new ModelOutput(null, null);
        Tensor? loss = null;
        if (returnType is ReturnType.Loss or ReturnType.Both)
        {
            var target = startAtLayer is null ? x
                : tokens is null ? throw new SharpLensException("A loss from startAtLayer needs the token ids it predicts: pass tokens: (as TransformerLens's tokens=).")
                : PrepareTokens(tokens, 0);
            loss = LossFromLogits(output, target, lossPerToken, attentionMask);
        }
        return new ModelOutput(
            returnType is ReturnType.Logits or ReturnType.Both ? output.MoveToOuterDisposeScope() : null,
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
        return ForwardCore(toks, mask, cache, (0, null), scope).MoveToOuterDisposeScope();
    }

    /// <summary>Next-token cross-entropy (TransformerLens's <c>lm_cross_entropy_loss</c>): mean, or [batch, pos-1] per token.</summary>
    public static Tensor LossFromLogits(Tensor logits, Tensor tokens, bool perToken = false, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        var logProbs = Components.Ops.Up(logits).log_softmax(-1); // float32 even for half logits
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
    /// the activation. Parameter gradients are not computed here (see <see cref="Backward"/>). To stop early, see
    /// <see cref="RunWithCache(Tensor, int, Func{string, bool}?, Slice, ScalarType?, bool, Tensor?)"/>; to write the
    /// activations to a file instead of holding them, <see cref="RunWithCacheToFile"/>.
    /// </summary>
    /// <param name="tokens">Token ids [batch, pos].</param>
    /// <param name="namesFilter">Which hook points to cache; null caches all that fire.</param>
    /// <param name="removeBatchDim">Drop the batch axis (batch size must be 1).</param>
    /// <param name="attentionMask">Padding mask, as in <see cref="Forward(Tensor, Tensor?)"/>.</param>
    /// <param name="includeBackward">Also cache gradients (TransformerLens's <c>incl_bwd=True</c>).</param>
    /// <param name="metric">Logits → scalar to differentiate; required with <paramref name="includeBackward"/>.</param>
    /// <param name="posSlice">Cache only these positions (TransformerLens's <c>pos_slice</c>; an int keeps the axis,
    /// as TL's <c>Slice.unwrap</c>). The position axis is axis 1 of every activation that has one, and the query axis of
    /// <c>hook_attn_scores</c>/<c>hook_pattern</c> (keys are kept). Sliced activations are copies, so the full tensor is
    /// not kept alive. Default: every position.</param>
    /// <param name="cacheDtype">Store cached activations converted to this floating dtype (e.g. bfloat16 halves the
    /// cache); null keeps the computed dtype.</param>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, Func<string, bool>? namesFilter = null,
        bool removeBatchDim = false, Tensor? attentionMask = null, bool includeBackward = false, Func<Tensor, Tensor>? metric = null,
        Slice posSlice = default, ScalarType? cacheDtype = null)
    {
        var (output, cache) = RunWithCacheCore(tokens, namesFilter, removeBatchDim, attentionMask, includeBackward, metric, null, posSlice, cacheDtype);
        return (output, cache);
    }

    /// <summary>Runs the model and caches activations (binary-compatible form; see the overload with <c>posSlice</c>).</summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, Func<string, bool>? namesFilter, bool removeBatchDim,
        Tensor? attentionMask, bool includeBackward, Func<Tensor, Tensor>? metric) =>
        RunWithCache(tokens, namesFilter, removeBatchDim, attentionMask, includeBackward, metric, default, null);

    /// <summary>
    /// TransformerLens's <c>run_with_cache(tokens, stop_at_layer=...)</c>: runs and caches only blocks before
    /// <paramref name="stopAtLayer"/> and returns the residual stream entering that block instead of logits (no later
    /// hook, <c>ln_final</c> or unembedding runs). Call with named arguments, e.g.
    /// <c>RunWithCache(tokens, stopAtLayer: 6, namesFilter: n =&gt; n.EndsWith("hook_resid_post"))</c>.
    /// </summary>
    /// <param name="tokens">Token ids [batch, pos].</param>
    /// <param name="stopAtLayer">Block to stop before, in [-n_layers, n_layers] (negative counts from the end).</param>
    /// <param name="namesFilter">Which hook points to cache; null caches all that fire.</param>
    /// <param name="posSlice">Cache only these positions (see the main overload).</param>
    /// <param name="cacheDtype">Store cached activations in this dtype.</param>
    /// <param name="removeBatchDim">Drop the batch axis (batch size must be 1).</param>
    /// <param name="attentionMask">Padding mask [batch, pos].</param>
    public (Tensor Residual, ActivationCache Cache) RunWithCache(Tensor tokens, int stopAtLayer, Func<string, bool>? namesFilter = null,
        Slice posSlice = default, ScalarType? cacheDtype = null, bool removeBatchDim = false, Tensor? attentionMask = null) =>
        RunWithCacheCore(tokens, namesFilter, removeBatchDim, attentionMask, false, null, stopAtLayer, posSlice, cacheDtype);

    private (Tensor Output, ActivationCache Cache) RunWithCacheCore(Tensor tokens, Func<string, bool>? namesFilter, bool removeBatchDim,
        Tensor? attentionMask, bool includeBackward, Func<Tensor, Tensor>? metric, int? stopAtLayer, Slice posSlice, ScalarType? cacheDtype)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (removeBatchDim && tokens.dim() == 2 && tokens.shape[0] != 1)
            throw new SharpLensException($"removeBatchDim needs a batch of exactly 1 prompt, got {tokens.shape[0]}.");
        if (includeBackward && metric is null)
            throw new SharpLensException("includeBackward needs a metric (logits → scalar tensor) to differentiate, e.g. the mean logit difference.");
        var transform = CacheTransform.Create(posSlice, cacheDtype, tokens.shape[^1]);
        var range = LayerRange(null, stopAtLayer);
        var cache = new ActivationCache(this, hasBatchDim: true);
        var regs = new List<IDisposable>();
        try
        {
            foreach (var hp in _hookPoints)
                if (namesFilter is null || namesFilter(hp.Name))
                {
                    regs.Add(hp.Add((act, point) => { cache.Store(point.Name, transform.Apply(point.Name, act)); return null; }, permanent: false));
                    if (includeBackward)
                        regs.Add(hp.Add((g, point) => { cache.StoreOrAdd(point.Name + "_grad", transform.Apply(point.Name, g)); return null; },
                            permanent: false, HookDirection.Backward));
                }
            Tensor output;
            if (includeBackward)
            {
                using var scope = NewDisposeScope();
                output = GradientPass(tokens, attentionMask, metric!, parameterGradients: false, out _).MoveToOuterDisposeScope();
            }
            else
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                output = ForwardCore(PrepareTokens(tokens, 0), attentionMask, null, range, scope).MoveToOuterDisposeScope();
            }
            if (removeBatchDim) cache.RemoveBatchDim();
            return (output, cache);
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
        Tensor? attentionMask = null, bool includeBackward = false, Func<Tensor, Tensor>? metric = null, Slice posSlice = default,
        ScalarType? cacheDtype = null) =>
        RunWithCache(tokens, CheckedNames(names).Contains, removeBatchDim, attentionMask, includeBackward, metric, posSlice, cacheDtype);

    /// <summary>Caches exactly the named hook points (binary-compatible form; see the overload with <c>posSlice</c>).</summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(Tensor tokens, IEnumerable<string> names, bool removeBatchDim,
        Tensor? attentionMask, bool includeBackward, Func<Tensor, Tensor>? metric) =>
        RunWithCache(tokens, names, removeBatchDim, attentionMask, includeBackward, metric, default, null);

    private HashSet<string> CheckedNames(IEnumerable<string> names)
    {
        var set = names.ToHashSet(StringComparer.Ordinal);
        foreach (var n in set) GetHookPoint(n);
        return set;
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
        if (tokens.shape[1] == 0) throw new SharpLensException("Tokens are empty: a prompt needs at least one token.");
        CheckTokens(tokens, pastLength: pastLength);
        return tokens;
    }

    /// <summary>
    /// Checks that <paramref name="tokens"/> [batch, pos] (integer ids) fit this model: no longer than its context
    /// n_ctx (after <paramref name="pastLength"/> cached positions) and every id inside the vocabulary. A failure is a
    /// <see cref="SharpLensException"/> whose message starts with <paramref name="source"/> (e.g. the file the ids came
    /// from) when given. Every forward pass runs this check; call it to fail before other work.
    /// </summary>
    public void CheckTokens(Tensor tokens, string? source = null, int pastLength = 0)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        string Prefix(string sentence) => source is null ? char.ToUpperInvariant(sentence[0]) + sentence[1..] : $"{source}: {sentence}";
        long pos = tokens.shape[^1];
        if (pastLength + pos > Config.NCtx)
            throw new SharpLensException(Prefix($"sequence of {pastLength + pos} tokens is longer than the model's context n_ctx = {Config.NCtx}. " +
                "Shorten the input (or truncate when tokenizing)."));
        if (tokens.numel() > 0)
        {
            long min = tokens.min().item<long>(), max = tokens.max().item<long>();
            if (min < 0 || max >= Config.DVocab)
            {
                long bad = min < 0 ? min : max;
                var where = (tokens.reshape(-1, pos) == bad).nonzero()[0];
                throw new SharpLensException(Prefix($"token id {bad} at [batch {where[0].item<long>()}, pos {where[1].item<long>()}] is outside the vocabulary [0, {Config.DVocab})."));
            }
        }
    }

    /// <summary>
    /// Blocks [Start, Stop) as TransformerLens's <c>blocks[start_at_layer:stop_at_layer]</c>, with negative layers
    /// counting from the end. Stop is null when the pass runs to the logits. Out-of-range layers are an error here
    /// (Python would clamp them silently), and so is a start after the stop.
    /// </summary>
    private (int Start, int? Stop) LayerRange(int? startAtLayer, int? stopAtLayer)
    {
        int n = Config.NLayers;
        int Resolve(int v, string what) => v >= -n && v <= n ? (v < 0 ? v + n : v)
            : throw new SharpLensException($"{what} = {v} is out of range for a model with {n} layers; allowed is [{-n}, {n}] " +
                "(negative counts from the end, as in TransformerLens).");
        int start = startAtLayer is { } a ? Resolve(a, "startAtLayer") : 0;
        int? stop = stopAtLayer is { } b ? Resolve(b, "stopAtLayer") : null;
        if (stop < start)
            throw new SharpLensException($"startAtLayer = {startAtLayer} (block {start}) comes after stopAtLayer = {stopAtLayer} (block {stop}); " +
                "the start must not be after the stop.");
        return (start, stop);
    }

    /// <summary>Checks a residual stream given to start at block <paramref name="layer"/>.</summary>
    private Tensor PrepareResidual(Tensor resid, Tensor? attentionMask, int layer)
    {
        if (resid.dim() != 3 || resid.shape[2] != Config.DModel)
            throw new SharpLensException($"With startAtLayer the input is the residual stream entering block {layer}, shape [batch, pos, d_model = {Config.DModel}]; " +
                $"got {TensorExtensions.ShapeText(resid.shape)}. (Token ids go in without startAtLayer.)");
        if (!resid.is_floating_point()) throw new SharpLensException($"The residual stream must be floating point; got dtype {resid.dtype}.");
        if (resid.shape[1] > Config.NCtx)
            throw new SharpLensException($"Residual stream of {resid.shape[1]} positions is longer than the model's context n_ctx = {Config.NCtx}.");
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(resid.shape[..2]))
            throw new SharpLensException($"attentionMask has shape {TensorExtensions.ShapeText(attentionMask.shape)} but the residual stream has [batch, pos] = " +
                $"{TensorExtensions.ShapeText(resid.shape[..2])}.");
        return resid.dtype == Config.Dtype ? resid : resid.to_type(Config.Dtype); // e.g. a float32 residual into a bfloat16 model
    }

    /// <summary>
    /// The forward pass proper: tokens (range start 0 from the embedding) or the residual entering block range.Start.
    /// Returns the logits, or the residual stream before block range.Stop. Tensors live in the caller's dispose scope
    /// <paramref name="scope"/>, except each block's intermediates, freed when the block ends (tensors a hook leaves in
    /// the scope included); with a null scope nothing is freed early.
    /// </summary>
    private Tensor ForwardCore(Tensor input, Tensor? attentionMask, KeyValueCache? kv, (int Start, int? Stop) range, DisposeScope? scope)
    {
        int past = (int)(kv?.Length ?? 0);
        var positions = attentionMask is null ? null : PosEmbed.PositionsFromMask(attentionMask);
        var ctx = new AttentionContext(attentionMask, positions);
        // Free what the pass made once the next block has it (embeddings, earlier blocks' outputs and intermediates), so
        // a pass holds one block's activations at a time. They live in the caller's scope (not a nested one): a hook's
        // MoveToOuterDisposeScope must still reach the caller's caller. Tensors from outside the scope (the input, a
        // patch taken from a cache) are never touched. Gradient runs keep everything (the graph and the hook leaves).
        if (GradientRun.Active) scope = null;
        var keep = scope is null ? null : new HashSet<IDisposable>(scope.DisposablesView, ReferenceEqualityComparer.Instance);
        var resid = input;
        if (input.dtype == ScalarType.Int64)
        {
            resid = _embed.Forward(input);
            if (_posEmbed is not null) resid = resid + _posEmbed.Forward(input, past, positions);
        }
        for (int l = range.Start; l < (range.Stop ?? _blocks.Length); l++)
        {
            var next = _blocks[l].Forward(resid, ctx, kv?.Layers[l]);
            if (scope is not null)
                foreach (var t in scope.DisposablesView.Where(t => !keep!.Contains(t) && !ReferenceEquals(t, next)).ToList()) t.Dispose();
            resid = next;
        }
        if (range.Stop is not null) return resid;
        if (_lnFinal is not null) resid = _lnFinal.Forward(resid);
        return _unembed.Forward(resid);
    }
}
