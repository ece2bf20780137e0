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

    internal HookPoint(string name) => Name = name;

    /// <summary>The TransformerLens hook name.</summary>
    public string Name { get; }

    /// <summary>Whether any hook is attached.</summary>
    public bool HasHooks => _hooks.Count > 0;

    /// <summary>Number of attached hooks (temporary and permanent).</summary>
    public int HookCount => _hooks.Count;

    /// <summary>Runs the attached hooks in the order they were added, each seeing the previous one's output.</summary>
    public Tensor Apply(Tensor activation)
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
