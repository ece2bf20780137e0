namespace SharpLens.Hooks;

/// <summary>
/// Hooks attached for a limited time (TransformerLens's <c>model.hooks(...)</c> context manager). Disposing the
/// scope removes exactly the hooks it added, also when the forward pass inside it threw.
/// </summary>
public sealed class HookScope : IDisposable
{
    private readonly List<IDisposable> _registrations;

    internal HookScope(List<IDisposable> registrations) => _registrations = registrations;

    /// <summary>Number of (hook point, function) attachments this scope holds.</summary>
    public int Count => _registrations.Count;

    /// <summary>Detaches every hook this scope attached.</summary>
    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _registrations.Clear();
    }
}
