using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    /// <summary>Token embedding [d_vocab, d_model].</summary>
    public Tensor W_E => P("embed.W_E");
    /// <summary>Positional embedding [n_ctx, d_model] (learned positions only; rotary models have none).</summary>
    public Tensor W_pos => Parameter("pos_embed.W_pos");
    /// <summary>Unembedding [d_model, d_vocab_out].</summary>
    public Tensor W_U => P("unembed.W_U");
    /// <summary>Unembedding bias [d_vocab_out].</summary>
    public Tensor b_U => P("unembed.b_U");

    /// <summary>Query weights of every layer [n_layers, n_heads, d_model, d_head] (a new tensor; dispose it).</summary>
    public Tensor W_Q => StackLayers("attn.W_Q");
    /// <summary>Key weights [n_layers, n_heads, d_model, d_head]; grouped-query key heads are repeated for the query heads they serve.</summary>
    public Tensor W_K => StackLayers("attn.W_K");
    /// <summary>Value weights [n_layers, n_heads, d_model, d_head]; grouped-query value heads are repeated like <see cref="W_K"/>.</summary>
    public Tensor W_V => StackLayers("attn.W_V");
    /// <summary>Output weights [n_layers, n_heads, d_head, d_model].</summary>
    public Tensor W_O => StackLayers("attn.W_O");
    /// <summary>Query biases [n_layers, n_heads, d_head].</summary>
    public Tensor b_Q => StackLayers("attn.b_Q");
    /// <summary>Key biases [n_layers, n_heads, d_head] (grouped-query heads repeated).</summary>
    public Tensor b_K => StackLayers("attn.b_K");
    /// <summary>Value biases [n_layers, n_heads, d_head] (grouped-query heads repeated).</summary>
    public Tensor b_V => StackLayers("attn.b_V");
    /// <summary>Attention output biases [n_layers, d_model].</summary>
    public Tensor b_O => StackLayers("attn.b_O");
    /// <summary>MLP input weights [n_layers, d_model, d_mlp].</summary>
    public Tensor W_in => StackLayers("mlp.W_in");
    /// <summary>Gate weights of a gated MLP [n_layers, d_model, d_mlp].</summary>
    public Tensor W_gate => Config.GatedMlp ? StackLayers("mlp.W_gate")
        : throw new SharpLensException("This model's MLP is not gated: it has no W_gate.");
    /// <summary>MLP input biases [n_layers, d_mlp].</summary>
    public Tensor b_in => StackLayers("mlp.b_in");
    /// <summary>MLP output weights [n_layers, d_mlp, d_model].</summary>
    public Tensor W_out => StackLayers("mlp.W_out");
    /// <summary>MLP output biases [n_layers, d_model].</summary>
    public Tensor b_out => StackLayers("mlp.b_out");

    /// <summary>
    /// The QK circuit <c>W_Q W_Kᵀ</c> of every head as a lazily multiplied [n_layers, n_heads, d_model, d_model]
    /// matrix (TransformerLens's <c>model.QK</c>). Dispose it.
    /// </summary>
    public Analysis.FactoredMatrix QK
    {
        get
        {
            using var scope = NewDisposeScope();
            return new Analysis.FactoredMatrix(W_Q, W_K.transpose(-2, -1));
        }
    }

    /// <summary>The OV circuit <c>W_V W_O</c> of every head, [n_layers, n_heads, d_model, d_model] (TransformerLens's <c>model.OV</c>). Dispose it.</summary>
    public Analysis.FactoredMatrix OV
    {
        get
        {
            using var scope = NewDisposeScope();
            return new Analysis.FactoredMatrix(W_V, W_O);
        }
    }

    private Tensor StackLayers(string suffix)
    {
        if (Config.AttnOnly && suffix.StartsWith("mlp.", StringComparison.Ordinal))
            throw new SharpLensException($"This model is attention-only: it has no '{suffix}' parameters.");
        return stack(Enumerable.Range(0, Config.NLayers).Select(l => LayerParameter(l, suffix)).ToArray(), 0);
    }

    /// <summary>
    /// A parameter of one layer by its TransformerLens property name (<c>attn.W_K</c>): under grouped-query attention
    /// the key/value ones are <c>_W_K</c> ... with n_key_value_heads, repeated here for the query heads they serve
    /// (TransformerLens's <c>W_K</c> property, <c>repeat_interleave</c> over heads). A new tensor for those, else the parameter.
    /// </summary>
    public Tensor LayerParameter(int layer, string suffix)
    {
        string name = $"blocks.{layer}.{suffix}";
        if (Config.UsesGroupedQueryNames && suffix is "attn.W_K" or "attn.W_V" or "attn.b_K" or "attn.b_V")
            return Parameter($"blocks.{layer}.attn._{suffix[5..]}").repeat_interleave(Config.NHeads / Config.KvHeads, 0);
        return Parameter(name);
    }

    /// <summary>
    /// Sum of the output biases of the layers before <paramref name="layer"/> (TransformerLens's
    /// <c>accumulated_bias</c>): every b_O and, with <paramref name="includeMlpBiases"/>, every b_out; with
    /// <paramref name="mlpInput"/> also b_O of <paramref name="layer"/> itself. [d_model].
    /// </summary>
    public Tensor AccumulatedBias(int layer, bool mlpInput = false, bool includeMlpBiases = true)
    {
        if (layer < 0 || layer > Config.NLayers)
            throw new SharpLensException($"AccumulatedBias: layer {layer} is out of range; allowed 0..{Config.NLayers} (n_layers = the unembed).");
        if (mlpInput && layer == Config.NLayers)
            throw new SharpLensException($"AccumulatedBias: mlpInput needs a layer below n_layers = {Config.NLayers}.");
        using var scope = NewDisposeScope();
        var acc = zeros(Config.DModel);
        for (int l = 0; l < layer; l++)
        {
            acc += P($"blocks.{l}.attn.b_O");
            if (includeMlpBiases && !Config.AttnOnly) acc += P($"blocks.{l}.mlp.b_out");
        }
        if (mlpInput) acc += P($"blocks.{layer}.attn.b_O");
        return acc.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual-stream direction of each token (TransformerLens's <c>tokens_to_residual_directions</c>):
    /// <c>W_U[:, tokens]</c> with d_model moved last, so [batch, 2] answer tokens give [batch, 2, d_model]. Float32 whatever
    /// the model's dtype: DLA projections run in float32.
    /// </summary>
    public Tensor TokensToResidualDirections(Tensor tokens)
    {
        long max = tokens.numel() == 0 ? 0 : tokens.max().item<long>(), min = tokens.numel() == 0 ? 0 : tokens.min().item<long>();
        if (min < 0 || max >= Config.DVocabOut)
            throw new SharpLensException($"Token id {(min < 0 ? min : max)} is outside the output vocabulary [0, {Config.DVocabOut}).");
        using var scope = NewDisposeScope();
        var cols = W_U.index_select(1, tokens.reshape(-1).to_type(ScalarType.Int64)); // [d_model, n]
        var shape = tokens.shape.Append(Config.DModel).ToArray();
        return Components.Ops.Up(cols.t().reshape(shape)).MoveToOuterDisposeScope();
    }

    /// <summary>The residual direction of one token id [d_model].</summary>
    public Tensor TokensToResidualDirections(int token) =>
        TokensToResidualDirections(tensor(new long[] { token })).squeeze(0);
}
