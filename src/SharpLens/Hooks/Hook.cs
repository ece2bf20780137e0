namespace SharpLens.Hooks;

/// <summary>
/// Which hook points a hook attaches to, and the function: an exact TransformerLens name
/// (<c>blocks.0.attn.hook_z</c>) or a predicate over names (TransformerLens's <c>fwd_hooks</c> with a filter).
/// </summary>
public sealed class Hook
{
    private Hook(string? name, Func<string, bool>? predicate, HookFunction function)
    {
        Name = name; Predicate = predicate; Function = function;
    }

    /// <summary>The exact hook name, or null when <see cref="Predicate"/> selects the hook points.</summary>
    public string? Name { get; }
    /// <summary>Selects hook points by name, or null when <see cref="Name"/> is set.</summary>
    public Func<string, bool>? Predicate { get; }
    /// <summary>The function to run.</summary>
    public HookFunction Function { get; }

    /// <summary>A hook on one hook point, by exact name.</summary>
    public static Hook At(string name, HookFunction function) => new(name, null, function);

    /// <summary>A hook on every hook point whose name satisfies <paramref name="predicate"/>.</summary>
    public static Hook Where(Func<string, bool> predicate, HookFunction function) => new(null, predicate, function);

    /// <summary>A hook given as (name, function), TransformerLens's tuple form.</summary>
    public static implicit operator Hook((string Name, HookFunction Function) t) => At(t.Name, t.Function);
}
