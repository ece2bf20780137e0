using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Hooks;

/// <summary>
/// A forward hook: receives the activation and the hook point, and returns a replacement tensor of the same shape
/// or null to leave the activation unchanged (observe only).
/// </summary>
public delegate Tensor? HookFunction(Tensor activation, HookPoint hook);

/// <summary>
/// A named place in the forward pass where an activation is born (TransformerLens's <c>HookPoint</c>), e.g.
/// <c>blocks.3.attn.hook_pattern</c>. With no hook attached <see cref="Apply"/> is a single list-count check.
/// </summary>
public sealed class HookPoint
{
    private readonly List<Registration> _hooks = [];
    private readonly List<HookPoint> _after = [];

    /// <summary>A hook point named <paramref name="name"/>; attach it to a model with <c>HookedTransformer.AddHookPointAfter</c> or expose it from an <see cref="IHookModule"/>.</summary>
    public HookPoint(string name) => Name = name;

    /// <summary>The TransformerLens hook name.</summary>
    public string Name { get; }

    /// <summary>Whether any hook is attached.</summary>
    public bool HasHooks => _hooks.Count > 0;

    /// <summary>Number of attached hooks (temporary and permanent).</summary>
    public int HookCount => _hooks.Count;

    /// <summary>The module running in place of this hook point (an SAE spliced in), or null.</summary>
    public IHookModule? Replacement { get; internal set; }

    /// <summary>
    /// Runs the attached hooks in the order they were added, each seeing the previous one's output — or, while a
    /// module is spliced in (<see cref="Replacement"/>), the module instead (this point's own hooks do not fire, as
    /// in TransformerLens when a HookPoint module is swapped out). Hook points chained after this one run last.
    /// </summary>
    public Tensor Apply(Tensor activation)
    {
        activation = Replacement is null ? RunHooks(activation) : Replacement.Forward(activation);
        foreach (var p in _after) activation = p.Apply(activation);
        return activation;
    }

    private Tensor RunHooks(Tensor activation)
    {
        if (_hooks.Count == 0) return activation;
        foreach (var h in _hooks.ToArray())
        {
            var replaced = h.Function(activation, this);
            if (replaced is null || ReferenceEquals(replaced, activation)) continue;
            if (!replaced.shape.SequenceEqual(activation.shape))
                throw new SharpLensException(
                    $"Hook on '{Name}' returned a tensor of shape {TensorExtensions.ShapeText(replaced.shape)}, but the activation has shape " +
                    $"{TensorExtensions.ShapeText(activation.shape)}. A hook must return null (observe) or a tensor of the same shape.");
            activation = replaced.dtype == activation.dtype ? replaced : replaced.to_type(activation.dtype);
        }
        return activation;
    }

    internal void Chain(HookPoint next) => _after.Add(next);

    internal void Unchain(HookPoint next) => _after.Remove(next);

    internal Registration Add(HookFunction function, bool permanent)
    {
        var r = new Registration(this, function, permanent);
        _hooks.Add(r);
        return r;
    }

    internal void Remove(Registration r) => _hooks.Remove(r);

    internal void RemoveHooks(bool includingPermanent) => _hooks.RemoveAll(h => includingPermanent || !h.Permanent);

    /// <inheritdoc/>
    public override string ToString() => $"HookPoint({Name}, {_hooks.Count} hooks)";

    /// <summary>One attached hook; disposing it detaches it.</summary>
    internal sealed class Registration(HookPoint point, HookFunction function, bool permanent) : IDisposable
    {
        public HookFunction Function { get; } = function;
        public bool Permanent { get; } = permanent;
        public void Dispose() => point.Remove(this);
    }
}
