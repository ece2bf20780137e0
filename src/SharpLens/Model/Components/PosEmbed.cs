using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Learned absolute positions: <c>hook_pos_embed = W_pos[offset : offset + pos]</c> broadcast over the batch.
/// With an attention mask (left padding), each prompt's positions count from its first real token, as in TransformerLens.
/// </summary>
internal sealed class PosEmbed(Tensor wPos, HookPoint hookPosEmbed)
{
    /// <param name="tokens">The new tokens [batch, pos].</param>
    /// <param name="pastLength">Positions already in the key/value cache.</param>
    /// <param name="positions">[batch, past + pos] positions from the padding mask, or null (0, 1, ...).</param>
    public Tensor Forward(Tensor tokens, int pastLength, Tensor? positions)
    {
        long batch = tokens.shape[0], pos = tokens.shape[1];
        var embed = positions is null
            ? wPos.narrow(0, pastLength, pos).unsqueeze(0).expand(batch, pos, wPos.shape[1])
            : wPos.index_select(0, positions.narrow(1, pastLength, pos).reshape(-1)).view(batch, pos, wPos.shape[1]);
        return hookPosEmbed.Apply(embed);
    }

    /// <summary>
    /// Position of every token of a padding mask [batch, n] (1 = real): the number of real tokens before it, 0 for
    /// padding (TransformerLens's <c>get_offset_position_ids</c>). Shared by learned and rotary positions.
    /// </summary>
    public static Tensor PositionsFromMask(Tensor mask) => (mask.cumsum(1) - 1).clamp_min(0);
}
