using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Hooks;

/// <summary>
/// A hook function: a forward hook receives the activation, a backward hook the gradient d metric / d activation;
/// either returns a replacement tensor of the same shape, or null to leave the value unchanged (observe only).
/// </summary>
public delegate Tensor? HookFunction(Tensor activation, HookPoint hook);

/// <summary>
/// A named place in the forward pass where an activation is born (TransformerLens's <c>HookPoint</c>), e.g.
/// <c>blocks.3.attn.hook_pattern</c>. With no hook attached and no gradient run <see cref="Apply"/> is a couple of
/// field checks.
/// </summary>
public sealed class HookPoint
{
    private readonly List<Registration> _hooks = [];
    private readonly List<Registration> _backwardHooks = [];
    private readonly List<HookPoint> _after = [];

    /// <summary>A hook point named <paramref name="name"/>; attach it to a model with <c>HookedTransformer.AddHookPointAfter</c> or expose it from an <see cref="IHookModule"/>.</summary>
    public HookPoint(string name) => Name = name;

    /// <summary>The TransformerLens hook name.</summary>
    public string Name { get; }

    /// <summary>
    /// Whether any hook (forward or backward) is attached — or the streaming shape pass is observing this thread's
    /// forward, so components that skip unobserved intermediates (fused attention) fire every hook point for it.
    /// </summary>
    public bool HasHooks => _hooks.Count + _backwardHooks.Count > 0 || HookProbe.Current is not null;

    /// <summary>Number of attached hooks (forward and backward, temporary and permanent).</summary>
    public int HookCount => _hooks.Count + _backwardHooks.Count;

    /// <summary>Number of attached backward hooks.</summary>
    public int BackwardHookCount => _backwardHooks.Count;

    /// <summary>The module running in place of this hook point (an SAE spliced in), or null.</summary>
    public IHookModule? Replacement { get; internal set; }

    /// <summary>
    /// Runs the attached forward hooks in the order they were added, each seeing the previous one's output — or, while
    /// a module is spliced in (<see cref="Replacement"/>), the module instead (this point's own hooks do not fire, as
    /// in TransformerLens when a HookPoint module is swapped out). Hook points chained after this one run last. In a
    /// gradient run the hooked value is routed through the backward hooks (they see its gradient, as
    /// TransformerLens's full backward hooks on the HookPoint's output).
    /// </summary>
    public Tensor Apply(Tensor activation)
    {
        if (Replacement is not null)
        {
            // A spliced module (an SAE, float32 like SAELens's) hands back the model's dtype, as SAELens casts sae_out back.
            var dtype = activation.dtype;
            activation = Replacement.Forward(activation);
            if (activation.dtype != dtype) activation = activation.to_type(dtype);
        }
        else
        {
            // A probe (the streaming shape pass) only observes: attached hooks must not see its forwards.
            if (HookProbe.Current is { } probe) probe(this, activation);
            else if (_hooks.Count > 0) activation = RunHooks(_hooks, activation, "activation");
            if (GradientRun.Active) activation = GradientRun.Track(activation, _backwardHooks.Count > 0 ? this : null);
        }
        foreach (var p in _after) activation = p.Apply(activation);
        return activation;
    }

    /// <summary>
    /// The gradient that flows upstream of this hook point: each backward hook receives the ORIGINAL gradient and the
    /// last non-null return wins (TransformerLens passes torch's grad_output to every hook).
    /// </summary>
    internal Tensor ApplyBackward(Tensor grad)
    {
        Tensor result = grad;
        foreach (var h in _backwardHooks.ToArray())
        {
            var replaced = h.Function(grad, this);
            if (replaced is null || ReferenceEquals(replaced, grad)) continue;
            result = Checked(replaced, grad, "gradient");
        }
        return result;
    }

    private Tensor RunHooks(List<Registration> hooks, Tensor value, string what)
    {
        foreach (var h in hooks.ToArray())
        {
            var replaced = h.Function(value, this);
            if (replaced is null || ReferenceEquals(replaced, value)) continue;
            value = Checked(replaced, value, what);
        }
        return value;
    }

    private Tensor Checked(Tensor replaced, Tensor original, string what)
    {
        if (!replaced.shape.SequenceEqual(original.shape))
            throw new SharpLensException(
                $"Hook on '{Name}' returned a tensor of shape {TensorExtensions.ShapeText(replaced.shape)}, but the {what} has shape " +
                $"{TensorExtensions.ShapeText(original.shape)}. A hook must return null (observe) or a tensor of the same shape.");
        return replaced.dtype == original.dtype ? replaced : replaced.to_type(original.dtype);
    }

    internal void Chain(HookPoint next) => _after.Add(next);

    internal void Unchain(HookPoint next) => _after.Remove(next);

    internal Registration Add(HookFunction function, bool permanent, HookDirection direction = HookDirection.Forward)
    {
        var r = new Registration(this, function, permanent, direction);
        (direction == HookDirection.Forward ? _hooks : _backwardHooks).Add(r);
        return r;
    }

    internal void Remove(Registration r)
    {
        if (!_hooks.Remove(r)) _backwardHooks.Remove(r);
    }

    internal void RemoveHooks(bool includingPermanent)
    {
        _hooks.RemoveAll(h => includingPermanent || !h.Permanent);
        _backwardHooks.RemoveAll(h => includingPermanent || !h.Permanent);
    }

    /// <inheritdoc/>
    public override string ToString() => $"HookPoint({Name}, {HookCount} hooks)";

    /// <summary>One attached hook; disposing it detaches it.</summary>
    internal sealed class Registration(HookPoint point, HookFunction function, bool permanent, HookDirection direction) : IDisposable
    {
        public HookFunction Function { get; } = function;
        public bool Permanent { get; } = permanent;
        public HookDirection Direction { get; } = direction;
        public void Dispose() => point.Remove(this);
    }
}
