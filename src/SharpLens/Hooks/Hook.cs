namespace SharpLens.Hooks;

/// <summary>
/// Which hook points a hook attaches to, and the function: an exact TransformerLens name
/// (<c>blocks.0.attn.hook_z</c>) or a predicate over names (TransformerLens's <c>fwd_hooks</c> with a filter).
/// </summary>
public sealed class Hook
{
    private Hook(string? name, Func<string, bool>? predicate, HookFunction function, HookDirection direction)
    {
        Name = name; Predicate = predicate; Function = function; Direction = direction;
    }

    /// <summary>The exact hook name, or null when <see cref="Predicate"/> selects the hook points.</summary>
    public string? Name { get; }
    /// <summary>Selects hook points by name, or null when <see cref="Name"/> is set.</summary>
    public Func<string, bool>? Predicate { get; }
    /// <summary>The function to run.</summary>
    public HookFunction Function { get; }
    /// <summary>Whether the function sees the activation (forward) or its gradient (backward).</summary>
    public HookDirection Direction { get; }

    /// <summary>A hook on one hook point, by exact name.</summary>
    public static Hook At(string name, HookFunction function, HookDirection direction = HookDirection.Forward) =>
        new(name, null, function, direction);

    /// <summary>A hook on every hook point whose name satisfies <paramref name="predicate"/>.</summary>
    public static Hook Where(Func<string, bool> predicate, HookFunction function, HookDirection direction = HookDirection.Forward) =>
        new(null, predicate, function, direction);

    /// <summary>A backward hook on one hook point (TransformerLens's <c>bwd_hooks</c> entry).</summary>
    public static Hook Backward(string name, HookFunction function) => At(name, function, HookDirection.Backward);

    /// <summary>A hook given as (name, function), TransformerLens's tuple form.</summary>
    public static implicit operator Hook((string Name, HookFunction Function) t) => At(t.Name, t.Function);
}
