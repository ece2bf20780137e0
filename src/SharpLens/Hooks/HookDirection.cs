namespace SharpLens.Hooks;

/// <summary>When a hook runs (TransformerLens's <c>dir="fwd"</c> / <c>dir="bwd"</c>).</summary>
public enum HookDirection
{
    /// <summary>On the activation during the forward pass.</summary>
    Forward,
    /// <summary>
    /// On the gradient flowing into the activation during a backward pass (only in gradient runs such as
    /// <c>HookedTransformer.Backward</c>). The function gets d metric / d activation and may return a replacement.
    /// </summary>
    Backward,
}
