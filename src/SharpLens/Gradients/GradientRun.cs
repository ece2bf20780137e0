using SharpLens.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens;

/// <summary>
/// State of the gradient run on this thread. Outside a gradient run every forward stays under <c>no_grad</c> and
/// <see cref="HookPoint.Apply"/> never looks here beyond one flag.
/// </summary>
internal static class GradientRun
{
    [ThreadStatic] private static State? s_state;

    /// <summary>Whether a gradient run is building a graph on this thread.</summary>
    public static bool Active => s_state is not null;

    /// <summary>Starts a gradient run; dispose the result to end it (also after an exception).</summary>
    public static IDisposable Begin()
    {
        if (s_state is not null) throw new SharpLensException("A gradient run is already in progress on this thread (gradient runs do not nest).");
        s_state = new State();
        return new End();
    }

    /// <summary>Leaf activations the graph starts from (activations that did not depend on a parameter that needs a gradient).</summary>
    public static IReadOnlyList<Tensor> Leaves => s_state!.Leaves;

    /// <summary>
    /// Makes a hook point's activation part of the graph: an activation that does not depend on anything with a
    /// gradient (the embeddings, or a value a forward hook replaced) becomes a leaf, and a hook point with backward
    /// hooks routes the activation through an identity whose backward runs them.
    /// </summary>
    public static Tensor Track(Tensor activation, HookPoint? backwardHooks)
    {
        if (!activation.is_floating_point()) return activation;
        if (!activation.requires_grad)
        {
            activation = activation.detach().requires_grad_(true);
            s_state!.Leaves.Add(activation);
        }
        return backwardHooks is null ? activation : BackwardHookFunction.apply(activation, backwardHooks);
    }

    /// <summary>Remembers the first exception a backward hook threw (it cannot cross the native autograd engine).</summary>
    public static void Fail(Exception e) => s_state!.Error ??= e;

    /// <summary>Rethrows a backward hook's exception after the backward pass returned.</summary>
    public static void ThrowIfFailed()
    {
        if (s_state?.Error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e).Throw();
    }

    private sealed class State
    {
        public readonly List<Tensor> Leaves = [];
        public Exception? Error;
    }

    private sealed class End : IDisposable
    {
        public void Dispose() => s_state = null;
    }
}

/// <summary>
/// Identity in the forward pass whose backward runs a hook point's backward hooks on the incoming gradient
/// (TorchSharp has no tensor backward hooks).
/// </summary>
internal sealed class BackwardHookFunction : autograd.SingleTensorFunction<BackwardHookFunction>
{
    public override string Name => "SharpLensBackwardHook";

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        ctx.save_data("hook", vars[1]);
        return ((Tensor)vars[0]).alias();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var hook = (HookPoint)ctx.get_data("hook");
        try
        {
            return [hook.ApplyBackward(grad_output), null!]; // one entry per forward argument (the hook point has none)
        }
        catch (Exception e)
        {
            GradientRun.Fail(e); // an exception must not unwind through the native engine
            return [grad_output, null!];
        }
    }
}
