using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>Small tensor helpers shared by the components.</summary>
internal static class Ops
{
    /// <summary><c>x @ w + b</c> over the last axis of <paramref name="x"/>, as one GEMM (addmm) on a 2-D view.</summary>
    public static Tensor Affine(Tensor x, Tensor w, Tensor? b)
    {
        var shape = x.shape;
        var x2 = x.reshape(-1, shape[^1]);
        var y = b is null ? x2.matmul(w) : addmm(b, x2, w, 1.0f, 1.0f);
        shape[^1] = w.shape[^1];
        return y.view(shape);
    }

    /// <summary>Registers a parameter-derived tensor with the model, not with the caller's dispose scope.</summary>
    public static Tensor Keep(Tensor t) => t.DetachFromDisposeScope();
}
