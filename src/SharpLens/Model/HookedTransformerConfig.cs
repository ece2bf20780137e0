using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpLens.Model;

/// <summary>
/// Architecture of a <see cref="HookedTransformer"/>, with TransformerLens's <c>HookedTransformerConfig</c> field
/// names (PascalCase) and meaning. Validated on construction: an inconsistent config fails with a message that
/// names the field, its value and what is allowed.
/// </summary>
public sealed class HookedTransformerConfig
{
    /// <summary>Activation functions SharpLens implements (TransformerLens names).</summary>
    public static readonly IReadOnlyList<string> SupportedActFns = ["gelu_new", "gelu", "gelu_fast", "relu", "silu"];
    /// <summary>Normalization types (TransformerLens names); null means no normalization.</summary>
    public static readonly IReadOnlyList<string> SupportedNormalizationTypes = ["LN", "LNPre"];

    /// <summary>Creates and validates a config. Arguments mirror TransformerLens's constructor.</summary>
    public HookedTransformerConfig(
        int nLayers, int dModel, int nCtx, int dHead, int nHeads, int dVocab,
        int? dMlp = null, int? dVocabOut = null, string actFn = "gelu_new", string? normalizationType = "LN",
        double eps = 1e-5, string positionalEmbeddingType = "standard", string originalArchitecture = "GPT2LMHeadModel",
        bool defaultPrependBos = true, string? tokenizerName = null, string modelName = "custom",
        bool attnOnly = false, bool useAttnScale = true, double? attnScale = null,
        bool scaleAttnByInverseLayerIdx = false, double initializerRange = 0.02,
        int? bosTokenId = null, int? eosTokenId = null, int? padTokenId = null)
    {
        NLayers = nLayers; DModel = dModel; NCtx = nCtx; DHead = dHead; NHeads = nHeads; DVocab = dVocab;
        DMlp = dMlp ?? 4 * dModel; DVocabOut = dVocabOut ?? dVocab; ActFn = actFn; NormalizationType = normalizationType;
        Eps = eps; PositionalEmbeddingType = positionalEmbeddingType; OriginalArchitecture = originalArchitecture;
        DefaultPrependBos = defaultPrependBos; TokenizerName = tokenizerName; ModelName = modelName; AttnOnly = attnOnly;
        UseAttnScale = useAttnScale; AttnScale = attnScale ?? Math.Sqrt(dHead);
        ScaleAttnByInverseLayerIdx = scaleAttnByInverseLayerIdx; InitializerRange = initializerRange;
        BosTokenId = bosTokenId; EosTokenId = eosTokenId; PadTokenId = padTokenId;
        Validate();
    }

    /// <summary>Number of transformer blocks (<c>n_layers</c>).</summary>
    public int NLayers { get; }
    /// <summary>Residual stream width (<c>d_model</c>).</summary>
    public int DModel { get; }
    /// <summary>Maximum context length (<c>n_ctx</c>).</summary>
    public int NCtx { get; }
    /// <summary>Width of one attention head (<c>d_head</c>).</summary>
    public int DHead { get; }
    /// <summary>Attention heads per layer (<c>n_heads</c>).</summary>
    public int NHeads { get; }
    /// <summary>MLP hidden width (<c>d_mlp</c>).</summary>
    public int DMlp { get; }
    /// <summary>Input vocabulary size (<c>d_vocab</c>).</summary>
    public int DVocab { get; }
    /// <summary>Output vocabulary size (<c>d_vocab_out</c>).</summary>
    public int DVocabOut { get; }
    /// <summary>MLP activation (<c>act_fn</c>), e.g. <c>gelu_new</c> for GPT-2.</summary>
    public string ActFn { get; }
    /// <summary><c>LN</c>, <c>LNPre</c> (LayerNorm with weights folded away) or null (<c>normalization_type</c>).</summary>
    public string? NormalizationType { get; internal set; }
    /// <summary>LayerNorm epsilon (<c>eps</c>).</summary>
    public double Eps { get; }
    /// <summary>Only <c>standard</c> (learned absolute positions) for now (<c>positional_embedding_type</c>).</summary>
    public string PositionalEmbeddingType { get; }
    /// <summary>Hugging Face architecture the weights came from (<c>original_architecture</c>).</summary>
    public string OriginalArchitecture { get; }
    /// <summary>Whether string input gets a BOS token prepended by default (<c>default_prepend_bos</c>).</summary>
    public bool DefaultPrependBos { get; }
    /// <summary>Tokenizer to load with the model, or null (<c>tokenizer_name</c>).</summary>
    public string? TokenizerName { get; }
    /// <summary>Model name (<c>model_name</c>).</summary>
    public string ModelName { get; }
    /// <summary>Attention-only model without MLPs (<c>attn_only</c>).</summary>
    public bool AttnOnly { get; }
    /// <summary>Whether attention scores are divided by <see cref="AttnScale"/> (<c>use_attn_scale</c>).</summary>
    public bool UseAttnScale { get; }
    /// <summary>Divisor of attention scores, sqrt(d_head) by default (<c>attn_scale</c>).</summary>
    public double AttnScale { get; }
    /// <summary>GPT-2 option: also divide layer l's scores by l+1 (<c>scale_attn_by_inverse_layer_idx</c>).</summary>
    public bool ScaleAttnByInverseLayerIdx { get; }
    /// <summary>Initialisation std (<c>initializer_range</c>); informational.</summary>
    public double InitializerRange { get; }
    /// <summary>BOS token id of the tokenizer, when known.</summary>
    public int? BosTokenId { get; }
    /// <summary>EOS token id of the tokenizer, when known.</summary>
    public int? EosTokenId { get; }
    /// <summary>PAD token id of the tokenizer, when known.</summary>
    public int? PadTokenId { get; }

    /// <summary>Adds <c>attn.hook_result</c> (per-head outputs) to the forward (<c>use_attn_result</c>; TL's <c>set_use_attn_result</c>).</summary>
    public bool UseAttnResult { get; set; }
    /// <summary>Adds <c>hook_q_input/hook_k_input/hook_v_input</c> with a head axis (<c>use_split_qkv_input</c>).</summary>
    public bool UseSplitQkvInput { get; set; }
    /// <summary>Adds <c>hook_attn_in</c> with a head axis (<c>use_attn_in</c>).</summary>
    public bool UseAttnIn { get; set; }
    /// <summary>Adds <c>hook_mlp_in</c> (<c>use_hook_mlp_in</c>).</summary>
    public bool UseHookMlpIn { get; set; }

    /// <summary>TransformerLens's <c>n_params</c>: attention and MLP weight matrices only (no embeddings, biases or norms).</summary>
    public long NParams => (long)NLayers * (4L * DModel * NHeads * DHead + (AttnOnly ? 0 : 2L * DModel * DMlp));

    /// <summary>A copy with another normalization type (used when LayerNorm weights are folded).</summary>
    internal HookedTransformerConfig WithNormalization(string? normalizationType)
    {
        var c = (HookedTransformerConfig)MemberwiseClone();
        c.NormalizationType = normalizationType;
        c.Validate();
        return c;
    }

    /// <summary>A copy, so switches set on one model do not leak into another.</summary>
    public HookedTransformerConfig Clone() => (HookedTransformerConfig)MemberwiseClone();

    private void Validate()
    {
        static void Positive(string field, int v)
        {
            if (v <= 0) throw new SharpLensException($"Invalid model config: {field} must be a positive integer, got {v}.");
        }
        Positive("n_layers", NLayers); Positive("d_model", DModel); Positive("n_ctx", NCtx); Positive("d_head", DHead);
        Positive("n_heads", NHeads); Positive("d_vocab", DVocab); Positive("d_vocab_out", DVocabOut);
        if (!AttnOnly) Positive("d_mlp", DMlp);
        if (!SupportedActFns.Contains(ActFn))
            throw new SharpLensException($"Invalid model config: act_fn '{ActFn}' is not supported. Supported: {string.Join(", ", SupportedActFns)}." +
                NameSuggestions.DidYouMean(ActFn, SupportedActFns, 1));
        if (NormalizationType is not null && !SupportedNormalizationTypes.Contains(NormalizationType))
            throw new SharpLensException($"Invalid model config: normalization_type '{NormalizationType}' is not supported. Supported: LN, LNPre or none.");
        if (PositionalEmbeddingType != "standard")
            throw new SharpLensException($"Invalid model config: positional_embedding_type '{PositionalEmbeddingType}' is not supported yet; only 'standard' (learned absolute positions).");
        if (!(Eps > 0)) throw new SharpLensException($"Invalid model config: eps must be > 0, got {Eps}.");
        if (!(AttnScale > 0)) throw new SharpLensException($"Invalid model config: attn_scale must be > 0, got {AttnScale}.");
        foreach (var (name, id) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId) })
            if (id is { } v && (v < 0 || v >= DVocab))
                throw new SharpLensException($"Invalid model config: {name} {v} is outside the vocabulary [0, {DVocab}).");
    }

    /// <summary>
    /// Builds the config TransformerLens derives from a Hugging Face GPT-2 <c>config.json</c>
    /// (<c>n_embd</c>, <c>n_layer</c>, <c>n_head</c>, <c>n_positions</c>, <c>vocab_size</c>, <c>n_inner</c>,
    /// <c>activation_function</c>, <c>layer_norm_epsilon</c>, ...).
    /// </summary>
    public static HookedTransformerConfig FromHuggingFaceGpt2(JsonObject hf, string modelName, string? tokenizerName)
    {
        int Int(string key)
        {
            if (hf[key] is not JsonValue v || !v.TryGetValue(out int i))
                throw new SharpLensException($"config.json of '{modelName}': field '{key}' is missing or not an integer.");
            return i;
        }
        int? OptInt(string key) => hf[key] is JsonValue v && v.TryGetValue(out int i) ? i : null;
        int dModel = Int("n_embd"), nHeads = Int("n_head");
        if (dModel % nHeads != 0)
            throw new SharpLensException($"config.json of '{modelName}': n_embd {dModel} is not divisible by n_head {nHeads}.");
        return new HookedTransformerConfig(
            nLayers: Int("n_layer"), dModel: dModel, nCtx: OptInt("n_positions") ?? Int("n_ctx"), dHead: dModel / nHeads,
            nHeads: nHeads, dVocab: Int("vocab_size"), dMlp: OptInt("n_inner") ?? 4 * dModel,
            actFn: hf["activation_function"]?.GetValue<string>() ?? "gelu_new",
            eps: hf["layer_norm_epsilon"] is JsonValue e ? e.GetValue<double>() : 1e-5,
            originalArchitecture: "GPT2LMHeadModel", modelName: modelName, tokenizerName: tokenizerName,
            scaleAttnByInverseLayerIdx: hf["scale_attn_by_inverse_layer_idx"] is JsonValue s && s.GetValue<bool>(),
            initializerRange: hf["initializer_range"] is JsonValue r ? r.GetValue<double>() : 0.02,
            bosTokenId: OptInt("bos_token_id"), eosTokenId: OptInt("eos_token_id"), padTokenId: OptInt("pad_token_id"));
    }

    /// <summary>The config as JSON with TransformerLens's snake_case field names.</summary>
    public string ToJson() => new JsonObject
    {
        ["n_layers"] = NLayers, ["d_model"] = DModel, ["n_ctx"] = NCtx, ["d_head"] = DHead, ["n_heads"] = NHeads,
        ["d_mlp"] = DMlp, ["d_vocab"] = DVocab, ["d_vocab_out"] = DVocabOut, ["act_fn"] = ActFn,
        ["normalization_type"] = NormalizationType, ["eps"] = Eps, ["positional_embedding_type"] = PositionalEmbeddingType,
        ["original_architecture"] = OriginalArchitecture, ["default_prepend_bos"] = DefaultPrependBos,
        ["tokenizer_name"] = TokenizerName, ["model_name"] = ModelName, ["attn_only"] = AttnOnly,
        ["use_attn_scale"] = UseAttnScale, ["attn_scale"] = AttnScale, ["n_params"] = NParams,
        ["use_attn_result"] = UseAttnResult, ["use_split_qkv_input"] = UseSplitQkvInput,
        ["use_attn_in"] = UseAttnIn, ["use_hook_mlp_in"] = UseHookMlpIn,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
