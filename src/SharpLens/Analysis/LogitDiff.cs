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
            throw new SharpLensException($"Answer tokens must be [batch = {logits.shape[0]}, 2] (correct, incorrect); got [{string.Join(", ", answerTokens.shape)}].");
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

    /// <summary>x[:, -1] or, with per-prompt positions, x[b, pos[b]] along axis 1 (axis 2 onward kept).</summary>
    public static Tensor FinalPosition(Tensor x, Tensor? finalPositions)
    {
        if (finalPositions is null) return x.select(1, -1);
        var idx = finalPositions.to_type(ScalarType.Int64).view(-1, 1, 1).expand(-1, 1, x.shape[^1]);
        if (x.dim() == 3) return x.gather(1, idx).squeeze(1);
        throw new SharpLensException($"FinalPosition expects [batch, pos, d], got [{string.Join(", ", x.shape)}].");
    }
}
