using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// GPT-J (<c>GPTJForCausalLM</c>): parallel blocks reading one <c>ln_1</c>, rotary embeddings on the first
/// <c>rotary_dim</c> features with adjacent pairs (2i, 2i+1), an untied <c>lm_head</c> with a bias. Config as
/// TransformerLens's, except that SharpLens reads <c>layer_norm_epsilon</c> and <c>n_inner</c> (TL: always 1e-5 and
/// 4·d_model), as the real model does.
/// </summary>
public sealed class GptJFamily : IModelFamily
{
    /// <inheritdoc/>
    public IReadOnlyList<string> Architectures { get; } = ["GPTJForCausalLM", "GPTJModel", "gptj"];

    /// <summary>GPT-J-6B: 28 layers, d_model 4096, vocabulary 50400, d_mlp 16384; counts from that shape.</summary>
    internal static IReadOnlyList<ModelInfo> RegistryRows { get; } =
    [
        new("gpt-j-6b", "EleutherAI/gpt-j-6B", ["gpt-j", "gptj"], "6B",
            TotalParameters: 2L * 50400 * 4096 + 50400 + 28 * (2L * 4096 + 4L * 4096 * 4096 + 2L * 4096 * 16384 + 16384 + 4096) + 2 * 4096,
            NonEmbeddingParameters: 28 * (4L * 4096 * 4096 + 2L * 4096 * 16384)),
    ];

    /// <inheritdoc/>
    public HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName)
    {
        var r = new HfConfig(hfConfig, modelName);
        int d = r.Int("n_embd"), heads = r.Int("n_head");
        int dHead = r.HeadDim("n_embd", "n_head");
        // HF's class default is 64; an explicit null rotates every feature of the head.
        int rotaryDim = hfConfig.ContainsKey("rotary_dim") ? r.OptInt("rotary_dim") ?? dHead : 64;
        return new HookedTransformerConfig(
            nLayers: r.Int("n_layer"), dModel: d, nCtx: r.Int("n_positions"), dHead: dHead, nHeads: heads,
            dVocab: r.Int("vocab_size"), dMlp: r.OptInt("n_inner") ?? 4 * d, actFn: r.OptString("activation_function") ?? "gelu_new",
            eps: r.OptDouble("layer_norm_epsilon") ?? 1e-5, positionalEmbeddingType: "rotary", originalArchitecture: "GPTJForCausalLM",
            modelName: modelName, rotaryDim: rotaryDim, rotaryAdjacentPairs: true, parallelAttnMlp: true,
            bosTokenId: r.OptInt("bos_token_id"), eosTokenId: r.OptInt("eos_token_id"), padTokenId: r.OptInt("pad_token_id"));
    }

    /// <inheritdoc/>
    public bool IsUnused(string checkpointName) => IsBuffer(checkpointName);

    /// <summary>Buffers real GPT-J checkpoints may hold (causal mask, sinusoidal positions): not parameters.</summary>
    public static bool IsBuffer(string name) =>
        name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal) ||
        name.EndsWith(".attn.embed_positions", StringComparison.Ordinal);

    /// <summary>
    /// Weights → TransformerLens names and layouts (TransformerLens's <c>convert_gptj_weights</c>): <c>ln_1</c> becomes
    /// both <c>ln1</c> and <c>ln2</c>, the bias-free q/k/v/out projections get zero biases, <c>lm_head.bias</c> becomes
    /// <c>unembed.b_U</c>.
    /// </summary>
    public Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hf, HookedTransformerConfig cfg)
    {
        var ck = new CheckpointTensors(hf, "GPT-J");
        string p = hf.ContainsKey("transformer.wte.weight") ? "transformer." : ""; // causal-LM checkpoints prefix the base model's weights
        Tensor Get(string name, params long[] shape) => ck.Get(p + name, shape);
        long d = cfg.DModel, h = cfg.NHeads, dh = cfg.DHead, m = cfg.DMlp;
        var sd = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var wte = Get("wte.weight", [cfg.DVocab, d]);
        sd["embed.W_E"] = wte;
        for (int l = 0; l < cfg.NLayers; l++)
        {
            string hp = $"h.{l}.", tp = $"blocks.{l}.";
            var lnW = Get(hp + "ln_1.weight", [d]);
            var lnB = Get(hp + "ln_1.bias", [d]);
            // The same tensors feed both norms; weight processing only reads norm weights, so sharing is safe.
            (sd[tp + "ln1.w"], sd[tp + "ln1.b"], sd[tp + "ln2.w"], sd[tp + "ln2.b"]) = (lnW, lnB, lnW, lnB);
            foreach (var (x, name) in new[] { ("Q", "q_proj"), ("K", "k_proj"), ("V", "v_proj") })
            {
                sd[tp + "attn.W_" + x] = CheckpointTensors.HeadsIn(Get(hp + $"attn.{name}.weight", [h * dh, d]), h, dh);
                sd[tp + "attn.b_" + x] = zeros(h, dh, dtype: wte.dtype);
            }
            sd[tp + "attn.W_O"] = CheckpointTensors.HeadsOut(Get(hp + "attn.out_proj.weight", [d, h * dh]), h, dh);
            sd[tp + "attn.b_O"] = zeros(d, dtype: wte.dtype);
            sd[tp + "mlp.W_in"] = Get(hp + "mlp.fc_in.weight", [m, d]).t();
            sd[tp + "mlp.b_in"] = Get(hp + "mlp.fc_in.bias", [m]);
            sd[tp + "mlp.W_out"] = Get(hp + "mlp.fc_out.weight", [d, m]).t();
            sd[tp + "mlp.b_out"] = Get(hp + "mlp.fc_out.bias", [d]);
        }
        sd["ln_final.w"] = Get("ln_f.weight", [d]);
        sd["ln_final.b"] = Get("ln_f.bias", [d]);
        sd["unembed.W_U"] = ck.Get("lm_head.weight", cfg.DVocabOut, d).t();
        sd["unembed.b_U"] = ck.Get("lm_head.bias", cfg.DVocabOut);
        ck.ThrowOnUnused($"a {cfg.NLayers}-layer model", IsBuffer);
        return sd;
    }
}
