using static TorchSharp.torch;

namespace SharpLens.Analysis;

/// <summary>The seed notebook's metric: logit of the correct answer minus the incorrect one at the final position.</summary>
public static class LogitDiff
{
    /// <summary>
    /// Per-prompt logit difference [batch] (the seed's <c>logits_to_ave_logit_diff(..., per_prompt=True)</c>).
    /// <paramref name="answerTokens"/> is [batch, 2] (correct, incorrect). <paramref name="finalPositions"/> gives each
    /// prompt's last real position when prompts are padded; null means the last position.
    /// </summary>
    public static Tensor PerPrompt(Tensor logits, Tensor answerTokens, Tensor? finalPositions = null)
    {
        if (answerTokens.dim() != 2 || answerTokens.shape[1] != 2 || answerTokens.shape[0] != logits.shape[0])
            throw new SharpLensException($"Answer tokens must be [batch = {logits.shape[0]}, 2] (correct, incorrect); got {TensorExtensions.ShapeText(answerTokens.shape)}.");
        using var scope = NewDisposeScope();
        var final = FinalPosition(logits, finalPositions);                       // [batch, vocab]
        var answers = final.gather(-1, answerTokens.to_type(ScalarType.Int64));   // [batch, 2]
        return (answers[.., 0] - answers[.., 1]).MoveToOuterDisposeScope();
    }

    /// <summary>Mean logit difference over prompts (scalar).</summary>
    public static Tensor Mean(Tensor logits, Tensor answerTokens, Tensor? finalPositions = null)
    {
        using var scope = NewDisposeScope();
        return PerPrompt(logits, answerTokens, finalPositions).mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The final position of [..., batch, pos, d] activations: <c>x[..., -1, :]</c>, or with per-prompt positions
    /// (<paramref name="finalPositions"/> [batch]) <c>x[..., b, pos[b], :]</c>. Returns [..., batch, d].
    /// </summary>
    public static Tensor FinalPosition(Tensor x, Tensor? finalPositions)
    {
        if (x.dim() < 3) throw new SharpLensException($"FinalPosition expects [..., batch, pos, d], got {TensorExtensions.ShapeText(x.shape)}.");
        if (finalPositions is null) return x.select(-2, -1);
        var shape = x.shape.ToArray();
        shape[^2] = 1;
        var view = Enumerable.Repeat(1L, shape.Length).ToArray();
        view[^3] = shape[^3];
        var idx = finalPositions.to_type(ScalarType.Int64).view(view).expand(shape);
        return x.gather(-2, idx).squeeze(-2);
    }
}
