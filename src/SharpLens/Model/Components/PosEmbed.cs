using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Learned absolute positions: <c>hook_pos_embed = W_pos[offset : offset + pos]</c> broadcast over the batch.
/// With an attention mask (left padding), each prompt's positions count from its first real token, as in TransformerLens.
/// </summary>
internal sealed class PosEmbed(Tensor wPos, HookPoint hookPosEmbed)
{
    public Tensor Forward(Tensor tokens, int pastLength, Tensor? attentionMask)
    {
        long batch = tokens.shape[0], pos = tokens.shape[1];
        Tensor embed;
        if (attentionMask is null)
        {
            embed = wPos.narrow(0, pastLength, pos).unsqueeze(0).expand(batch, pos, wPos.shape[1]);
        }
        else
        {
            // Mask covers past + current positions; a real token's position = number of real tokens before it.
            var shifted = attentionMask.cumsum(1) - 1;
            var ids = shifted.clamp_min(0).narrow(1, pastLength, pos);
            embed = wPos.index_select(0, ids.reshape(-1)).view(batch, pos, wPos.shape[1]);
        }
        return hookPosEmbed.Apply(embed);
    }
}
