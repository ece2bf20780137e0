using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>Options of <see cref="HookedTransformer.Generate(Tensor, GenerateOptions?)"/> (TransformerLens's <c>generate</c> arguments).</summary>
public sealed record GenerateOptions
{
    /// <summary>Number of tokens to append.</summary>
    public int MaxNewTokens { get; init; } = 10;
    /// <summary>Sample from the distribution; false = greedy argmax.</summary>
    public bool DoSample { get; init; } = true;
    /// <summary>Softmax temperature (&gt; 0) when sampling.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens when sampling.</summary>
    public int? TopK { get; init; }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p.</summary>
    public double? TopP { get; init; }
    /// <summary>Subtract this times each token's count so far from its logit.</summary>
    public double FreqPenalty { get; init; }
    /// <summary>Random seed for reproducible sampling; null uses a fresh seed.</summary>
    public long? Seed { get; init; }
    /// <summary>Stop a sequence at the EOS token (then pad it with EOS/PAD); needs <see cref="EosTokenId"/> or the config's.</summary>
    public bool StopAtEos { get; init; } = true;
    /// <summary>EOS token id; null uses the model config's.</summary>
    public int? EosTokenId { get; init; }
    /// <summary>Reuse keys and values of earlier positions (same tokens as without, much faster).</summary>
    public bool UseKvCache { get; init; } = true;
}

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Appends up to <see cref="GenerateOptions.MaxNewTokens"/> tokens to each prompt of <paramref name="tokens"/>
    /// [batch, pos] and returns prompt + new tokens. Hooks attached to the model apply at every step. With the
    /// key/value cache the result equals the run without it (unlike TransformerLens v3's KV path for models
    /// without a tokenizer, which shifts positions).
    /// </summary>
    public Tensor Generate(Tensor tokens, GenerateOptions? options = null)
    {
        var o = options ?? new GenerateOptions();
        if (o.MaxNewTokens < 0) throw new SharpLensException($"MaxNewTokens must be ≥ 0, got {o.MaxNewTokens}.");
        if (o.DoSample && !(o.Temperature > 0)) throw new SharpLensException($"Temperature must be > 0 when sampling, got {o.Temperature}.");
        if (o.TopK is { } k && (k < 1 || k > Config.DVocabOut)) throw new SharpLensException($"TopK must be in 1..{Config.DVocabOut}, got {k}.");
        if (o.TopP is { } p && !(p > 0 && p <= 1)) throw new SharpLensException($"TopP must be in (0, 1], got {p}.");
        int? eos = o.EosTokenId ?? Config.EosTokenId;
        if (o.StopAtEos && eos is null)
            throw new SharpLensException("StopAtEos needs an EOS token id: set GenerateOptions.EosTokenId or StopAtEos = false.");
        if (tokens.dim() == 1) tokens = tokens.unsqueeze(0);
        if (tokens.shape[1] + o.MaxNewTokens > Config.NCtx)
            throw new SharpLensException($"Prompt of {tokens.shape[1]} tokens + {o.MaxNewTokens} new tokens exceeds n_ctx = {Config.NCtx}.");

        using var scope = NewDisposeScope();
        var gen = new Generator(o.Seed is { } s ? (ulong)s : (ulong)Random.Shared.NextInt64());
        var output = tokens.to_type(ScalarType.Int64);
        var finished = zeros(output.shape[0], dtype: ScalarType.Bool);
        using var kv = o.UseKvCache ? new KeyValueCache(Config.NLayers) : null;
        for (int step = 0; step < o.MaxNewTokens; step++)
        {
            using var stepScope = NewDisposeScope();
            Tensor logits = kv is null ? Forward(output)
                : Forward(step == 0 ? output : output.narrow(1, output.shape[1] - 1, 1), kv);
            var next = SampleNext(logits.select(1, -1), output, o, gen);
            if (o.StopAtEos)
            {
                next = where(finished, full_like(next, (long)eos!.Value), next);
                finished = finished.logical_or(next.eq(eos.Value));
            }
            output = cat([output, next.unsqueeze(1)], 1).MoveToOuterDisposeScope();
            finished = finished.MoveToOuterDisposeScope();
            if (o.StopAtEos && finished.all().item<bool>()) break;
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>TransformerLens's <c>sample_logits</c>: greedy, or temperature / frequency penalty / top-k / top-p sampling.</summary>
    internal static Tensor SampleNext(Tensor finalLogits, Tensor tokensSoFar, GenerateOptions o, Generator gen)
    {
        if (!o.DoSample) return finalLogits.argmax(-1);
        var logits = finalLogits / o.Temperature;
        if (o.FreqPenalty != 0)
        {
            var counts = zeros_like(logits).scatter_add(1, tokensSoFar, ones_like(tokensSoFar, dtype: logits.dtype));
            logits = logits - o.FreqPenalty * counts;
        }
        if (o.TopK is { } k)
        {
            var kth = logits.topk(k, -1).values.select(-1, k - 1).unsqueeze(-1);
            logits = logits.masked_fill(logits.lt(kth), float.NegativeInfinity);
        }
        if (o.TopP is { } p)
        {
            var (sorted, idx) = logits.sort(-1, descending: true);
            var cum = sorted.softmax(-1).cumsum(-1);
            var remove = cum.gt(p);
            // Keep the first token that crosses p: shift the mask right by one.
            remove = cat([zeros_like(remove.narrow(-1, 0, 1)), remove.narrow(-1, 0, remove.shape[^1] - 1)], -1);
            logits = logits.masked_fill(zeros_like(remove).scatter(-1, idx, remove), float.NegativeInfinity);
        }
        return multinomial(logits.softmax(-1), 1, generator: gen).squeeze(-1);
    }
}
