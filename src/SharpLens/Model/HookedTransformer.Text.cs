using SharpLens.Analysis;
using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Tokenization;
using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    /// <summary>The model's tokenizer, or null (e.g. a test model with its own vocabulary). Settable.</summary>
    public ITokenizer? Tokenizer { get; set; }

    private ITokenizer RequireTokenizer() => Tokenizer ?? throw new SharpLensException(
        $"Model '{Config.ModelName}' has no tokenizer, so text input is not possible. Pass token ids, or set model.Tokenizer " +
        "(e.g. to Gpt2Tokenizer.Default, or a tokenizer loaded with TokenizerLoader.FromFolder).");

    /// <summary>
    /// TransformerLens's <c>to_tokens</c>: [batch, pos] ids with BOS prepended by default
    /// (<see cref="HookedTransformerConfig.DefaultPrependBos"/>), right padding by default, truncated to n_ctx.
    /// </summary>
    public TokenBatch ToTokens(IReadOnlyList<string> texts, bool? prependBos = null, PaddingSide paddingSide = PaddingSide.Right, bool truncate = true) =>
        TextEncoding.ToTokens(RequireTokenizer(), texts, prependBos ?? Config.DefaultPrependBos, paddingSide, Config.NCtx, truncate);

    /// <summary>TransformerLens's <c>to_tokens</c> for one text: [1, pos].</summary>
    public TokenBatch ToTokens(string text, bool? prependBos = null, bool truncate = true) => ToTokens([text], prependBos, PaddingSide.Right, truncate);

    /// <summary>TransformerLens's <c>to_str_tokens</c> for a text (BOS by default).</summary>
    public IReadOnlyList<string> ToStrTokens(string text, bool? prependBos = null) =>
        TextEncoding.ToStrTokens(RequireTokenizer(), text, prependBos ?? Config.DefaultPrependBos, Config.NCtx);

    /// <summary>TransformerLens's <c>to_str_tokens</c> for ids ([pos] or [1, pos]).</summary>
    public IReadOnlyList<string> ToStrTokens(Tensor tokens) => TextEncoding.ToStrTokens(RequireTokenizer(), tokens);

    /// <summary>TransformerLens's <c>to_single_token</c>: the id of a string that must be exactly one token.</summary>
    public int ToSingleToken(string text) => TextEncoding.ToSingleToken(RequireTokenizer(), text);

    /// <summary>TransformerLens's <c>to_string</c>: decodes ids ([pos]; use <see cref="TextEncoding.TokensToStrings"/> for a batch).</summary>
    public string ToString(Tensor tokens) => TextEncoding.TokensToString(RequireTokenizer(), tokens);

    /// <summary>TransformerLens's <c>get_token_position</c>: index of <paramref name="token"/> in <paramref name="text"/>.</summary>
    public int GetTokenPosition(string token, string text, TokenPositionMode mode = TokenPositionMode.First, bool? prependBos = null) =>
        TextEncoding.GetTokenPosition(RequireTokenizer(), token, text, mode, prependBos ?? Config.DefaultPrependBos, Config.NCtx);

    /// <summary>Logits for text input (tokenized with BOS, right-padded; padding is masked).</summary>
    public Tensor Forward(IReadOnlyList<string> texts)
    {
        using var batch = ToTokens(texts);
        return Forward(batch.Tokens, batch.AttentionMask);
    }

    /// <summary>Logits [1, pos, d_vocab] for one text.</summary>
    public Tensor Forward(string text) => Forward([text]);

    /// <summary>
    /// <see cref="RunWithCache(Tensor, Func{string, bool}?, bool, Tensor?, bool, Func{Tensor, Tensor}?, Slice, ScalarType?)"/>
    /// for text input (tokenized with BOS, right-padded; padding is masked), with the same options.
    /// </summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(IReadOnlyList<string> texts, Func<string, bool>? namesFilter = null,
        bool removeBatchDim = false, bool includeBackward = false, Func<Tensor, Tensor>? metric = null, Slice posSlice = default,
        ScalarType? cacheDtype = null)
    {
        using var batch = ToTokens(texts);
        return RunWithCache(batch.Tokens, namesFilter, removeBatchDim, batch.AttentionMask, includeBackward, metric, posSlice, cacheDtype);
    }

    /// <summary>Text-input run with cache (binary-compatible form; see the overload with <c>posSlice</c>).</summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(IReadOnlyList<string> texts, Func<string, bool>? namesFilter, bool removeBatchDim) =>
        RunWithCache(texts, namesFilter, removeBatchDim, false, null, default, null);

    /// <summary>
    /// <see cref="RunWithCache(Tensor, Func{string, bool}?, bool, Tensor?, bool, Func{Tensor, Tensor}?, Slice, ScalarType?)"/>
    /// for one text, with the same options.
    /// </summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(string text, Func<string, bool>? namesFilter = null, bool removeBatchDim = false,
        bool includeBackward = false, Func<Tensor, Tensor>? metric = null, Slice posSlice = default, ScalarType? cacheDtype = null) =>
        RunWithCache([text], namesFilter, removeBatchDim, includeBackward, metric, posSlice, cacheDtype);

    /// <summary>One-text run with cache (binary-compatible form; see the overload with <c>posSlice</c>).</summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(string text, Func<string, bool>? namesFilter, bool removeBatchDim) =>
        RunWithCache([text], namesFilter, removeBatchDim, false, null, default, null);

    /// <summary>
    /// <see cref="RunWithCache(Tensor, int, Func{string, bool}?, Slice, ScalarType?, bool, Tensor?)"/> for text input:
    /// runs and caches only blocks before <paramref name="stopAtLayer"/> and returns the residual stream entering it.
    /// </summary>
    public (Tensor Residual, ActivationCache Cache) RunWithCache(IReadOnlyList<string> texts, int stopAtLayer, Func<string, bool>? namesFilter = null,
        Slice posSlice = default, ScalarType? cacheDtype = null, bool removeBatchDim = false)
    {
        using var batch = ToTokens(texts);
        return RunWithCache(batch.Tokens, stopAtLayer, namesFilter, posSlice, cacheDtype, removeBatchDim, batch.AttentionMask);
    }

    /// <summary><see cref="RunWithCache(IReadOnlyList{string}, int, Func{string, bool}?, Slice, ScalarType?, bool)"/> for one text.</summary>
    public (Tensor Residual, ActivationCache Cache) RunWithCache(string text, int stopAtLayer, Func<string, bool>? namesFilter = null,
        Slice posSlice = default, ScalarType? cacheDtype = null, bool removeBatchDim = false) =>
        RunWithCache([text], stopAtLayer, namesFilter, posSlice, cacheDtype, removeBatchDim);

    /// <summary>
    /// <see cref="RunWithCache(Tensor, IEnumerable{string}, bool, Tensor?, bool, Func{Tensor, Tensor}?, Slice, ScalarType?)"/>
    /// for text input: caches exactly the named hook points; unknown names fail with the closest valid names.
    /// </summary>
    public (Tensor Logits, ActivationCache Cache) RunWithCache(IReadOnlyList<string> texts, IEnumerable<string> names, bool removeBatchDim = false,
        bool includeBackward = false, Func<Tensor, Tensor>? metric = null, Slice posSlice = default, ScalarType? cacheDtype = null)
    {
        using var batch = ToTokens(texts);
        return RunWithCache(batch.Tokens, names, removeBatchDim, batch.AttentionMask, includeBackward, metric, posSlice, cacheDtype);
    }

    /// <summary><see cref="RunWithHooks(Tensor, IEnumerable{Hook}, bool, Tensor?, Func{Tensor, Tensor}?)"/> for text input.</summary>
    public Tensor RunWithHooks(IReadOnlyList<string> texts, IEnumerable<Hook> hooks, bool resetHooksEnd = true)
    {
        using var batch = ToTokens(texts);
        return RunWithHooks(batch.Tokens, hooks, resetHooksEnd, batch.AttentionMask);
    }
}
