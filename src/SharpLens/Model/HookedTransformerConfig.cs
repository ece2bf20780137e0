using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>
/// Architecture of a <see cref="HookedTransformer"/>, with TransformerLens's <c>HookedTransformerConfig</c> field
/// names (PascalCase) and meaning. Validated on construction: an inconsistent config fails with a message that
/// names the field, its value and what is allowed.
/// </summary>
public sealed class HookedTransformerConfig
{
    /// <summary>Activation functions SharpLens implements (TransformerLens names).</summary>
    public static readonly IReadOnlyList<string> SupportedActFns = ["gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", "relu", "silu"];
    /// <summary>Normalization types (TransformerLens names); null means no normalization.</summary>
    public static readonly IReadOnlyList<string> SupportedNormalizationTypes = ["LN", "LNPre", "RMS", "RMSPre"];
    /// <summary>Positional schemes (TransformerLens names): learned absolute positions or rotary embeddings.</summary>
    public static readonly IReadOnlyList<string> SupportedPositionalEmbeddingTypes = ["standard", "rotary"];
    /// <summary>Per-layer attention types of <see cref="AttnTypes"/>.</summary>
    public static readonly IReadOnlyList<string> SupportedAttnTypes = ["global", "local"];

    /// <summary>Creates and validates a config. Arguments mirror TransformerLens's constructor.</summary>
    public HookedTransformerConfig(
        int nLayers, int dModel, int nCtx, int dHead, int nHeads, int dVocab,
        int? dMlp = null, int? dVocabOut = null, string actFn = "gelu_new", string? normalizationType = "LN",
        double eps = 1e-5, string positionalEmbeddingType = "standard", string originalArchitecture = "GPT2LMHeadModel",
        bool defaultPrependBos = true, string? tokenizerName = null, string modelName = "custom",
        bool attnOnly = false, bool useAttnScale = true, double? attnScale = null,
        bool scaleAttnByInverseLayerIdx = false, double initializerRange = 0.02,
        int? bosTokenId = null, int? eosTokenId = null, int? padTokenId = null,
        int? nKeyValueHeads = null, int? rotaryDim = null, double rotaryBase = 10000, double? rotaryBaseLocal = null,
        bool rotaryAdjacentPairs = false, bool useNTKByPartsRope = false, double nTKByPartsFactor = 8,
        double nTKByPartsLowFreqFactor = 1, double nTKByPartsHighFreqFactor = 4, int nTKOriginalCtxLen = 8192,
        bool gatedMlp = false, bool parallelAttnMlp = false, bool useLocalAttn = false, int? windowSize = null,
        IReadOnlyList<string>? attnTypes = null, double? attnScoresSoftCap = null, double? outputLogitsSoftCap = null,
        bool useNormalizationBeforeAndAfter = false, bool useQkNorm = false, bool useQkNormOverProjection = false,
        bool usePostNormBlock = false, bool tieWordEmbeddings = false, ScalarType dtype = ScalarType.Float32)
    {
        NLayers = nLayers; DModel = dModel; NCtx = nCtx; DHead = dHead; NHeads = nHeads; DVocab = dVocab;
        DMlp = dMlp ?? 4 * dModel; DVocabOut = dVocabOut ?? dVocab; ActFn = actFn; NormalizationType = normalizationType;
        Eps = eps; PositionalEmbeddingType = positionalEmbeddingType; OriginalArchitecture = originalArchitecture;
        DefaultPrependBos = defaultPrependBos; TokenizerName = tokenizerName; ModelName = modelName; AttnOnly = attnOnly;
        UseAttnScale = useAttnScale; AttnScale = attnScale ?? Math.Sqrt(dHead);
        ScaleAttnByInverseLayerIdx = scaleAttnByInverseLayerIdx; InitializerRange = initializerRange;
        BosTokenId = bosTokenId; EosTokenId = eosTokenId; PadTokenId = padTokenId;
        NKeyValueHeads = nKeyValueHeads; RotaryDim = positionalEmbeddingType == "rotary" ? rotaryDim ?? dHead : rotaryDim;
        RotaryBase = rotaryBase; RotaryBaseLocal = rotaryBaseLocal; RotaryAdjacentPairs = rotaryAdjacentPairs;
        UseNTKByPartsRope = useNTKByPartsRope; NTKByPartsFactor = nTKByPartsFactor; NTKByPartsLowFreqFactor = nTKByPartsLowFreqFactor;
        NTKByPartsHighFreqFactor = nTKByPartsHighFreqFactor; NTKOriginalCtxLen = nTKOriginalCtxLen;
        GatedMlp = gatedMlp; ParallelAttnMlp = parallelAttnMlp; UseLocalAttn = useLocalAttn; WindowSize = windowSize;
        AttnTypes = attnTypes?.ToArray(); AttnScoresSoftCap = attnScoresSoftCap; OutputLogitsSoftCap = outputLogitsSoftCap;
        UseNormalizationBeforeAndAfter = useNormalizationBeforeAndAfter; UseQkNorm = useQkNorm;
        UseQkNormOverProjection = useQkNormOverProjection; UsePostNormBlock = usePostNormBlock;
        TieWordEmbeddings = tieWordEmbeddings; Dtype = dtype;
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
    /// <summary>Normalization epsilon (<c>eps</c>), shared by every norm of the model.</summary>
    public double Eps { get; }
    /// <summary><c>standard</c> (learned absolute positions, <c>pos_embed.W_pos</c>) or <c>rotary</c> (<c>positional_embedding_type</c>).</summary>
    public string PositionalEmbeddingType { get; }
    /// <summary>Key/value heads of grouped-query attention (<c>n_key_value_heads</c>); null = one per query head.
    /// When set, the key/value parameters are <c>attn._W_K</c>/<c>_W_V</c>/<c>_b_K</c>/<c>_b_V</c> with this many heads.</summary>
    public int? NKeyValueHeads { get; }
    /// <summary>Features of each head that rotate (<c>rotary_dim</c>); d_head by default for rotary models.</summary>
    public int? RotaryDim { get; }
    /// <summary>Rotary base θ (<c>rotary_base</c>, HF <c>rope_theta</c>).</summary>
    public double RotaryBase { get; }
    /// <summary>Rotary base of local-attention layers (<c>rotary_base_local</c>, Gemma 3); null = <see cref="RotaryBase"/>.</summary>
    public double? RotaryBaseLocal { get; }
    /// <summary>Rotate feature pairs (2i, 2i+1) (GPT-J) instead of (i, i + rotary_dim/2) (<c>rotary_adjacent_pairs</c>).</summary>
    public bool RotaryAdjacentPairs { get; }
    /// <summary>Llama-3.1 NTK-by-parts frequency scaling (<c>use_NTK_by_parts_rope</c>, HF <c>rope_scaling.rope_type = llama3</c>).</summary>
    public bool UseNTKByPartsRope { get; }
    /// <summary>NTK-by-parts <c>factor</c> (<c>NTK_by_parts_factor</c>).</summary>
    public double NTKByPartsFactor { get; }
    /// <summary>NTK-by-parts <c>low_freq_factor</c> (<c>NTK_by_parts_low_freq_factor</c>).</summary>
    public double NTKByPartsLowFreqFactor { get; }
    /// <summary>NTK-by-parts <c>high_freq_factor</c> (<c>NTK_by_parts_high_freq_factor</c>).</summary>
    public double NTKByPartsHighFreqFactor { get; }
    /// <summary>NTK-by-parts <c>original_max_position_embeddings</c> (<c>NTK_original_ctx_len</c>).</summary>
    public int NTKOriginalCtxLen { get; }
    /// <summary>Gated MLP: <c>act(x·W_gate) * (x·W_in)</c> (<c>gated_mlp</c>; SwiGLU / GeGLU).</summary>
    public bool GatedMlp { get; }
    /// <summary>Attention and MLP both read resid_pre and add to it (<c>parallel_attn_mlp</c>; GPT-NeoX, GPT-J).</summary>
    public bool ParallelAttnMlp { get; }
    /// <summary>Some layers attend only to a window of recent keys (<c>use_local_attn</c>).</summary>
    public bool UseLocalAttn { get; }
    /// <summary>Keys a local layer's query sees, itself included (<c>window_size</c>).</summary>
    public int? WindowSize { get; }
    /// <summary>Per layer <c>global</c> or <c>local</c> (<c>attn_types</c>); null = every layer local when <see cref="UseLocalAttn"/>.</summary>
    public IReadOnlyList<string>? AttnTypes { get; }
    /// <summary>Attention scores become <c>cap·tanh(scores/cap)</c> before masking (<c>attn_scores_soft_cap</c>); null = off.</summary>
    public double? AttnScoresSoftCap { get; }
    /// <summary>Returned logits become <c>cap·tanh(logits/cap)</c> (<c>output_logits_soft_cap</c>); null = off.</summary>
    public double? OutputLogitsSoftCap { get; }
    /// <summary>Sandwich norms: <c>ln1_post</c>/<c>ln2_post</c> after attention and MLP (<c>use_normalization_before_and_after</c>; Gemma 2/3).</summary>
    public bool UseNormalizationBeforeAndAfter { get; }
    /// <summary>Per-head RMSNorm of q and k over d_head after <c>hook_q</c>/<c>hook_k</c> (<c>use_qk_norm</c>; Qwen3, Gemma 3).</summary>
    public bool UseQkNorm { get; }
    /// <summary>RMSNorm of q and k over the whole projection (n_heads·d_head), OLMo-2 style; TransformerLens has no flag for it.</summary>
    public bool UseQkNormOverProjection { get; }
    /// <summary>Post-norm block (OLMo-2): attention and MLP read the residual directly and ln1/ln2 normalize their outputs;
    /// TransformerLens selects this by architecture, not by a flag.</summary>
    public bool UsePostNormBlock { get; }

    /// <summary>The checkpoint ties its unembedding to the token embedding (<c>tie_word_embeddings</c>); W_U starts as W_Eᵀ.</summary>
    public bool TieWordEmbeddings { get; }

    /// <summary>
    /// Type of the parameters and of the activations (<c>dtype</c>): float32 (default), bfloat16 or float16. Weight
    /// processing runs in float32 whatever this is; a few computations stay float32 (see README, Precision).
    /// </summary>
    public ScalarType Dtype { get; private set; }

    /// <summary>Number of key/value heads actually used (n_key_value_heads, or n_heads).</summary>
    public int KvHeads => NKeyValueHeads ?? NHeads;
    /// <summary>Whether the key/value parameters use TransformerLens's grouped-query names (<c>_W_K</c> ...).</summary>
    public bool UsesGroupedQueryNames => NKeyValueHeads is not null;
    /// <summary>Whether layer <paramref name="layer"/> uses local (windowed) attention.</summary>
    public bool IsLocalLayer(int layer) => UseLocalAttn && (AttnTypes is null || AttnTypes[layer] == "local");
    /// <summary>Whether the normalization is an RMSNorm (RMS or RMSPre).</summary>
    public bool IsRmsNorm => NormalizationType is "RMS" or "RMSPre";
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

    /// <summary>
    /// TransformerLens's <c>n_params</c>: attention and MLP weight matrices only (no embeddings, biases or norms). Like
    /// TransformerLens it counts keys and values with n_heads even under grouped-query attention, and a gated MLP's
    /// three matrices.
    /// </summary>
    public long NParams => (long)NLayers * (4L * DModel * NHeads * DHead + (AttnOnly ? 0 : (GatedMlp ? 3L : 2L) * DModel * DMlp));

    /// <summary>A copy with another normalization type (used when LayerNorm weights are folded).</summary>
    internal HookedTransformerConfig WithNormalization(string? normalizationType)
    {
        var c = (HookedTransformerConfig)MemberwiseClone();
        c.NormalizationType = normalizationType;
        c.Validate();
        return c;
    }

    /// <summary>A copy with another <see cref="Dtype"/> (float32, bfloat16 or float16).</summary>
    public HookedTransformerConfig WithDtype(ScalarType dtype)
    {
        var c = (HookedTransformerConfig)MemberwiseClone();
        c.Dtype = dtype;
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
            throw new SharpLensException($"Invalid model config: normalization_type '{NormalizationType}' is not supported. Supported: LN, LNPre, RMS, RMSPre or none." +
                NameSuggestions.DidYouMean(NormalizationType, SupportedNormalizationTypes, 1));
        if (!SupportedPositionalEmbeddingTypes.Contains(PositionalEmbeddingType))
            throw new SharpLensException($"Invalid model config: positional_embedding_type '{PositionalEmbeddingType}' is not supported. Supported: standard (learned absolute positions), rotary." +
                NameSuggestions.DidYouMean(PositionalEmbeddingType, SupportedPositionalEmbeddingTypes, 1));
        ValidateArchitecture();
        ModelDtype.Check(Dtype, "model config: dtype");
        if (!(Eps > 0)) throw new SharpLensException($"Invalid model config: eps must be > 0, got {Eps}.");
        if (!(AttnScale > 0)) throw new SharpLensException($"Invalid model config: attn_scale must be > 0, got {AttnScale}.");
        foreach (var (name, id) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId) })
            if (id is { } v && (v < 0 || v >= DVocab))
                throw new SharpLensException($"Invalid model config: {name} {v} is outside the vocabulary [0, {DVocab}).");
    }

    private void ValidateArchitecture()
    {
        static SharpLensException Bad(string message) => new($"Invalid model config: {message}");
        if (NKeyValueHeads is { } kv)
        {
            if (kv <= 0) throw Bad($"n_key_value_heads must be a positive integer, got {kv}.");
            if (NHeads % kv != 0)
                throw Bad($"n_heads {NHeads} is not divisible by n_key_value_heads {kv}; each key/value head must serve the same number of query heads.");
        }
        if (PositionalEmbeddingType == "rotary")
        {
            int rd = RotaryDim!.Value;
            if (rd <= 0 || rd % 2 != 0 || rd > DHead)
                throw Bad($"rotary_dim must be an even number in 2..d_head ({DHead}), got {rd}.");
            if (!(RotaryBase > 0)) throw Bad($"rotary_base must be > 0, got {RotaryBase}.");
            if (RotaryBaseLocal is { } rbl && !(rbl > 0)) throw Bad($"rotary_base_local must be > 0, got {rbl}.");
            if (UseNTKByPartsRope)
            {
                if (!(NTKByPartsFactor > 0)) throw Bad($"NTK_by_parts_factor must be > 0, got {NTKByPartsFactor}.");
                if (!(NTKByPartsHighFreqFactor > NTKByPartsLowFreqFactor) || !(NTKByPartsLowFreqFactor > 0))
                    throw Bad($"NTK_by_parts_high_freq_factor ({NTKByPartsHighFreqFactor}) must be greater than NTK_by_parts_low_freq_factor ({NTKByPartsLowFreqFactor}) > 0.");
                if (NTKOriginalCtxLen <= 0) throw Bad($"NTK_original_ctx_len must be a positive integer, got {NTKOriginalCtxLen}.");
            }
        }
        else if (RotaryDim is not null || UseNTKByPartsRope || RotaryBaseLocal is not null)
            throw Bad($"rotary_dim / rotary_base_local / use_NTK_by_parts_rope need positional_embedding_type 'rotary', got '{PositionalEmbeddingType}'.");
        if (AttnTypes is { } types)
        {
            if (types.Count != NLayers) throw Bad($"attn_types has {types.Count} entries, expected one per layer (n_layers = {NLayers}).");
            foreach (var t in types)
                if (!SupportedAttnTypes.Contains(t))
                    throw Bad($"attn_types entry '{t}' is not valid; allowed: global, local." + NameSuggestions.DidYouMean(t, SupportedAttnTypes, 1));
        }
        if (UseLocalAttn && Enumerable.Range(0, NLayers).Any(IsLocalLayer) && WindowSize is not > 0)
            throw Bad($"use_local_attn has local layers but window_size is {(WindowSize?.ToString() ?? "missing")}; local layers need a positive window_size.");
        if (AttnScoresSoftCap is { } a && !(a > 0)) throw Bad($"attn_scores_soft_cap must be > 0 (or unset), got {a}.");
        if (OutputLogitsSoftCap is { } o && !(o > 0)) throw Bad($"output_logits_soft_cap must be > 0 (or unset), got {o}.");
        if (UseQkNorm && UseQkNormOverProjection)
            throw Bad("use_qk_norm (per head) and q/k norm over the whole projection are exclusive; choose one.");
        if ((UseNormalizationBeforeAndAfter || UsePostNormBlock || UseQkNorm || UseQkNormOverProjection) && NormalizationType is null)
            throw Bad("sandwich norms, post-norm blocks and q/k norms need a normalization_type (LN, LNPre, RMS or RMSPre).");
        int layouts = (ParallelAttnMlp ? 1 : 0) + (UseNormalizationBeforeAndAfter ? 1 : 0) + (UsePostNormBlock ? 1 : 0);
        if (layouts > 1)
            throw Bad("parallel_attn_mlp, use_normalization_before_and_after and the post-norm block are different block layouts; choose one.");
        if (GatedMlp && AttnOnly) throw Bad("gated_mlp needs an MLP, but attn_only is set.");
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
        ["n_key_value_heads"] = NKeyValueHeads, ["rotary_dim"] = RotaryDim, ["rotary_base"] = RotaryBase,
        ["rotary_base_local"] = RotaryBaseLocal, ["rotary_adjacent_pairs"] = RotaryAdjacentPairs,
        ["use_NTK_by_parts_rope"] = UseNTKByPartsRope, ["NTK_by_parts_factor"] = NTKByPartsFactor,
        ["NTK_by_parts_low_freq_factor"] = NTKByPartsLowFreqFactor, ["NTK_by_parts_high_freq_factor"] = NTKByPartsHighFreqFactor,
        ["NTK_original_ctx_len"] = NTKOriginalCtxLen, ["gated_mlp"] = GatedMlp, ["parallel_attn_mlp"] = ParallelAttnMlp,
        ["use_local_attn"] = UseLocalAttn, ["window_size"] = WindowSize,
        ["attn_types"] = AttnTypes is null ? null : new JsonArray(AttnTypes.Select(t => (JsonNode?)t).ToArray()),
        ["attn_scores_soft_cap"] = AttnScoresSoftCap ?? -1.0, ["output_logits_soft_cap"] = OutputLogitsSoftCap ?? -1.0,
        ["use_normalization_before_and_after"] = UseNormalizationBeforeAndAfter, ["use_qk_norm"] = UseQkNorm,
        ["use_qk_norm_over_projection"] = UseQkNormOverProjection, ["use_post_norm_block"] = UsePostNormBlock, ["tie_word_embeddings"] = TieWordEmbeddings,
        ["scale_attn_by_inverse_layer_idx"] = ScaleAttnByInverseLayerIdx, ["dtype"] = ModelDtype.Name(Dtype),
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
