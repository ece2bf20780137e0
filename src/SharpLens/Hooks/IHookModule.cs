using static TorchSharp.torch;

namespace SharpLens.Hooks;

/// <summary>
/// A module that can run in place of a model's hook point (what HookedSAETransformer does when it swaps the
/// HookPoint at an SAE's hook for the SAE). Its own hook points become hook points of the model while it is spliced in.
/// </summary>
public interface IHookModule
{
    /// <summary>The module's hook points, in forward order, with their full names (e.g. <c>blocks.0.hook_resid_post.hook_sae_input</c>).</summary>
    IReadOnlyList<HookPoint> HookPoints { get; }

    /// <summary>Maps the activation arriving at the hook point to the one the model continues with (same shape).</summary>
    Tensor Forward(Tensor activation);
}
