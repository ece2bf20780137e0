using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// OPT (<c>OPTForCausalLM</c>) in its pre-LayerNorm form without embedding projections (every size except opt-350m):
/// learned positions read with an offset of 2, ReLU MLPs, <c>lm_head</c> tied to <c>embed_tokens</c>. TransformerLens
/// ignores <c>do_layer_norm_before</c> and <c>word_embed_proj_dim</c> and silently computes a different model for
/// post-LN / projected checkpoints; SharpLens rejects those with a clear error instead.
/// </summary>
public sealed class OptFamily : IModelFamily
{
    /// <summary>Rows before position 0 in OPT's learned position table.</summary>
    public const int PositionOffset = 2;

    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["OPTForCausalLM", "OPTModel", "opt"];

    /// <summary>The pre-LN OPT sizes (opt-350m is post-LN with projections and not listed), with TransformerLens's aliases.</summary>
    internal static IReadOnlyList<ModelInfo> RegistryRows { get; } =
    [
        Row("125m", layers: 12, d: 768, ["opt-small", "opt"]),
        Row("1.3b", layers: 24, d: 2048, ["opt-medium"]),
        Row("2.7b", layers: 32, d: 2560, ["opt-large"]),
        Row("6.7b", layers: 32, d: 4096, ["opt-xl"]),
        Row("13b", layers: 40, d: 5120, ["opt-xxl"]),
        Row("30b", layers: 48, d: 7168, ["opt-xxxl"]),
        Row("66b", layers: 64, d: 9216, ["opt-xxxxl"]),
    ];

    /// <summary>A row with counts from the shape: vocabulary 50272, 2048 (+2) positions, ffn_dim = 4·d_model.</summary>
    private static ModelInfo Row(string size, int layers, int d, string[] aliases)
    {
        long dm = d, m = 4L * d;
        long perLayer = 4 * dm + (4 * dm * dm + 4 * dm) + (2 * dm * m + m + dm); // two LayerNorms, q/k/v/out, fc1/fc2
        return new ModelInfo($"opt-{size}", $"facebook/opt-{size}", aliases, size.ToUpperInvariant(),
            (50272L + 2048 + PositionOffset) * dm + layers * perLayer + 2 * dm, layers * (4 * dm * dm + 2 * dm * m));
    }

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var r = new HfConfig(hfConfig, modelName);
        int d = r.Int("hidden_size"), heads = r.Int("num_attention_heads");
        if (r.OptBool("do_layer_norm_before") == false)
            throw r.Error("do_layer_norm_before is false: post-LayerNorm OPT (such as facebook/opt-350m) is not supported; " +
                "SharpLens supports pre-LayerNorm OPT (do_layer_norm_before: true), e.g. opt-125m, opt-1.3b ... opt-66b");
        if (r.OptInt("word_embed_proj_dim") is { } proj && proj != d)
            throw r.Error($"word_embed_proj_dim {proj} differs from hidden_size {d}: OPT with project_in/project_out embedding " +
                "projections (such as facebook/opt-350m) is not supported; supported: word_embed_proj_dim equal to hidden_size (or absent)");
        if (r.OptBool("_remove_final_layer_norm") == true)
            throw r.Error("_remove_final_layer_norm is true: OPT without a final LayerNorm is not supported");
        return new HookedTransformerConfig(
            nLayers: r.Int("num_hidden_layers"), dModel: d, nCtx: r.Int("max_position_embeddings"),
            dHead: r.HeadDim("hidden_size", "num_attention_heads"), nHeads: heads, dVocab: r.Int("vocab_size"),
            dMlp: r.Int("ffn_dim"), actFn: r.OptString("activation_function") ?? "relu", eps: 1e-5, // HF's nn.LayerNorm default
            originalArchitecture: "OPTForCausalLM", modelName: modelName,
            bosTokenId: r.OptInt("bos_token_id"), eosTokenId: r.OptInt("eos_token_id"), padTokenId: r.OptInt("pad_token_id"));
    }

    /// <summary>
    /// Weights → TransformerLens names and layouts (TransformerLens's <c>convert_opt_weights</c>): <c>pos_embed.W_pos</c>
    /// is the position table from row 2 on, the tied <c>lm_head</c> (usually not stored) is <c>embed_tokens</c>; zero
    /// <c>unembed.b_U</c> is added. Checkpoints
    /// saved with <c>enable_bias: false</c> (no projection / fc biases: zeros) or <c>layer_norm_elementwise_affine:
    /// false</c> (norms without weight and bias: 1 and 0) are recognised by layer 0; every layer must then agree.
    /// </summary>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new CheckpointTensors(hf, "OPT");
        string p = hf.ContainsKey("model.decoder.embed_tokens.weight") ? "model.decoder." : ""; // causal-LM checkpoints prefix the base model's weights
        Tensor Get(string name, params long[] shape) => ck.Get(p + name, shape);
        bool biases = ck.Has(p + "layers.0.self_attn.q_proj.bias"), affineNorms = ck.Has(p + "layers.0.self_attn_layer_norm.weight");
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var embed = Get("embed_tokens.weight", [cfg.DVocab, d]);
        var type = embed.dtype;
        Tensor Bias(string name, params long[] shape) => biases ? Get(name, shape) : zeros(shape, dtype: type);
        void Norm(string hfName, string tlName)
        {
            sd[tlName + ".w"] = affineNorms ? Get(hfName + ".weight", [d]) : ones(d, dtype: type);
            sd[tlName + ".b"] = affineNorms ? Get(hfName + ".bias", [d]) : zeros(d, dtype: type);
        }

        sd["embed.W_E"] = embed;
        sd["pos_embed.W_pos"] = Get("embed_positions.weight", [cfg.NCtx + PositionOffset, d])[PositionOffset..];
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"layers.{l}.", tp = $"blocks.{l}.";
            Norm(hp + "self_attn_layer_norm", tp + "ln1");
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = CheckpointTensors.HeadsIn(Get(hp + $"self_attn.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = Bias(hp + $"self_attn.{name}.bias", h * dh).view(h, dh);
            }
            sd[tp + "attn.W_O"] = CheckpointTensors.HeadsOut(Get(hp + "self_attn.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = Bias(hp + "self_attn.out_proj.bias", d);
            Norm(hp + "final_layer_norm", tp + "ln2");
            sd[tp + "mlp.W_in"] = Get(hp + "fc1.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = Bias(hp + "fc1.bias", m);
            sd[tp + "mlp.W_out"] = Get(hp + "fc2.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = Bias(hp + "fc2.bias", d);
        }
        Norm("final_layer_norm", "ln_final");
        sd["unembed.W_U"] = (ck.Has("lm_head.weight") ? ck.Get("lm_head.weight", cfg.DVocabOut, d) : embed).t();
        sd["unembed.b_U"] = zeros(cfg.DVocabOut, dtype: type);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer model");
        return sd;
    }
}
