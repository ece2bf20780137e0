using SharpLens.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    // Accumulated parameter gradients by TransformerLens name (torch's .grad), owned by the model until ZeroGrad.
    private readonly Dictionary<string, Tensor> _paramGrads = new(StringComparer.Ordinal);

    /// <summary>
    /// Runs the model with autograd, differentiates the scalar <paramref name="metric"/> of the logits (a loss, a
    /// logit difference, ...) and returns its value. Backward hooks attached to the model (<see cref="AddHook(string,
    /// HookFunction, HookDirection, bool)"/>, <see cref="Hooks"/>) run on the way back. With
    /// <paramref name="parameterGradients"/> the gradient of every parameter is added to <see cref="ParameterGrad"/>
    /// (accumulating, as torch's <c>.grad</c>; clear with <see cref="ZeroGrad"/>). The graph is freed before this returns.
    /// </summary>
    public float Backward(Tensor tokens, Func<Tensor, Tensor> metric, bool parameterGradients = true, Tensor? attentionMask = null)
    {
        using var scope = NewDisposeScope();
        GradientPass(tokens, attentionMask, metric, parameterGradients, out float value);
        return value;
    }

    /// <summary>
    /// The accumulated gradient of a parameter (a new tensor the caller owns), or null when no gradient run with
    /// parameter gradients reached it since the last <see cref="ZeroGrad"/>.
    /// </summary>
    public Tensor? ParameterGrad(string name)
    {
        _ = Parameter(name); // unknown names fail with suggestions
        return _paramGrads.TryGetValue(name, out var g) ? g.clone() : null;
    }

    /// <summary>Forgets every accumulated parameter gradient (torch's <c>zero_grad(set_to_none=True)</c>).</summary>
    public void ZeroGrad()
    {
        foreach (var g in _paramGrads.Values) g.Dispose();
        _paramGrads.Clear();
    }

    /// <summary>
    /// The gradient pass shared by every gradient API: forward with autograd from the hook points (and the parameters
    /// when asked), backward of the scalar metric through the backward hooks. Returns detached logits in the caller's
    /// dispose scope; every graph tensor dies with that scope.
    /// </summary>
    private Tensor GradientPass(Tensor tokens, Tensor? attentionMask, Func<Tensor, Tensor> metric, bool parameterGradients, out float value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var toks = PrepareTokens(tokens, 0);
        // Parameters and the fused views made from them are separate leaves; their gradients are summed per parameter.
        var leaves = parameterGradients ? _params.Values.Concat(_derived).Distinct().ToList() : [];
        using var grad = enable_grad();
        using var run = GradientRun.Begin();
        foreach (var p in leaves) p.requires_grad_(true);
        try
        {
            var logits = ForwardCore(toks, attentionMask, null, (0, null), null);
            var m = metric(logits);
            if (m.numel() != 1)
                throw new SharpLensException($"A gradient needs a scalar metric, but the metric returned shape {TensorExtensions.ShapeText(m.shape)}. " +
                    "Reduce it (e.g. mean over the batch) before differentiating.");
            if (!m.requires_grad)
                throw new SharpLensException("The metric does not depend on the logits it was given, so it has no gradient.");
            if (parameterGradients)
            {
                // backward() rather than autograd.grad: parameters a path does not use (W_Q beside the fused q/k/v
                // matrix) then simply get no .grad instead of an undefined tensor.
                m.backward();
                GradientRun.ThrowIfFailed();
                AccumulateParameterGrads(leaves);
            }
            else
            {
                using var grads = new DisposableList(autograd.grad([m.reshape([])], GradientRun.Leaves.ToList(), allow_unused: true));
                GradientRun.ThrowIfFailed();
            }
            value = m.item<float>();
            return logits.detach();
        }
        finally
        {
            foreach (var p in leaves) p.requires_grad_(false);
        }
    }

    /// <summary>
    /// Adds each parameter's gradient: its own plus its share of every fused view over the same storage (the fused
    /// q/k/v matrix, the flat W_O). Parameters aliasing each other otherwise (tied weights) stay separate, as in
    /// TransformerLens, whose parameters are copies.
    /// </summary>
    private void AccumulateParameterGrads(List<Tensor> leaves)
    {
        var gradOf = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var leaf in leaves)
            if (leaf.grad is { } g)
            {
                gradOf[leaf] = g;
                leaf.grad = null; // the model's own accumulator is _paramGrads
            }
        var derived = _derived.Where(gradOf.ContainsKey).ToList();
        foreach (var name in _paramOrder)
        {
            var p = _params[name];
            var members = derived.Where(d => SameStorage(d, p)).Prepend(p).Where(gradOf.ContainsKey).ToList();
            if (members.Count == 0) continue;
            Tensor total;
            if (members.Count == 1 && ReferenceEquals(members[0], p)) total = gradOf[p];
            else
            {
                // Scatter every member's gradient into one buffer laid out like the shared storage, read p's region.
                long lo = members.Append(p).Min(t => t.storage_offset());
                long hi = members.Append(p).Max(t => t.storage_offset() + t.shape.Zip(t.stride(), (n, s) => (n - 1) * s).Sum() + 1);
                var buffer = zeros(hi - lo, dtype: p.dtype);
                foreach (var t in members)
                {
                    using var region = buffer.as_strided(t.shape, t.stride(), t.storage_offset() - lo);
                    region.add_(gradOf[t]);
                }
                total = buffer.as_strided(p.shape, p.stride(), p.storage_offset() - lo);
            }
            if (_paramGrads.TryGetValue(name, out var acc)) acc.add_(total);
            else _paramGrads[name] = empty(p.shape, dtype: p.dtype).copy_(total).DetachFromDisposeScope();
        }
    }

    /// <summary>Disposes the tensors of a list (undefined ones included) when the list goes out of scope.</summary>
    private sealed class DisposableList(IList<Tensor> tensors) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in tensors) t?.Dispose();
        }
    }

    private static bool SameStorage(Tensor a, Tensor b) =>
        a.DataAddress() - a.storage_offset() * a.element_size() == b.DataAddress() - b.storage_offset() * b.element_size();
}
