using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>Token embedding: <c>hook_embed = W_E[tokens]</c>.</summary>
internal sealed class Embed(Tensor wE, HookPoint hookEmbed)
{
    public Tensor Forward(Tensor tokens)
    {
        var flat = wE.index_select(0, tokens.reshape(-1));
        return hookEmbed.Apply(flat.view(tokens.shape[0], tokens.shape[1], wE.shape[1]));
    }
}
