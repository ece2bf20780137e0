using static TorchSharp.torch;

namespace SharpLens.Hooks;

/// <summary>
/// A private observer of a forward pass on this thread: while it is active every hook point that fires reports its
/// activation to it and runs none of its attached hooks. The streaming export's shape pass uses it, so its tiny
/// forwards are invisible to the hooks a user attached (they see each real forward exactly once).
/// </summary>
internal static class HookProbe
{
    [ThreadStatic] private static Action<HookPoint, Tensor>? s_probe;

    /// <summary>The active probe on this thread, or null.</summary>
    public static Action<HookPoint, Tensor>? Current => s_probe;

    /// <summary>Starts probing on this thread; dispose the result to end it (also after an exception).</summary>
    public static IDisposable Begin(Action<HookPoint, Tensor> probe)
    {
        if (s_probe is not null) throw new InvalidOperationException("A hook probe is already active on this thread (probes do not nest).");
        s_probe = probe;
        return new End();
    }

    private sealed class End : IDisposable
    {
        public void Dispose() => s_probe = null;
    }
}
