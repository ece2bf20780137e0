using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>
/// Rotary position embedding of the first <c>rotary_dim</c> features of each head (TransformerLens's
/// <c>apply_rotary</c>): <c>x·cos + rotate(x)·sin</c> with angle <c>pos / base^(2i/rotary_dim)</c>. Pairs are
/// (i, i + rotary_dim/2) (rotate-half, GPT-NeoX/Llama) or (2i, 2i+1) (GPT-J). With Llama-3.1's NTK-by-parts scaling the
/// inverse frequencies are rescaled as in Hugging Face's <c>_compute_llama3_parameters</c>.
/// Angles are computed for the positions in use, in float32 like TransformerLens's tables; the rotation itself runs in
/// float32 too and the result is rounded once to the model's dtype.
/// </summary>
internal sealed class Rotary : IDisposable
{
    private readonly Tensor _freq; // [rotary_dim]: the frequency of each feature, already repeated for its pair
    private readonly int _rotaryDim;
    private readonly bool _adjacentPairs;

    public Rotary(HookedTransformerConfig cfg, double rotaryBase)
    {
        _rotaryDim = cfg.RotaryDim!.Value;
        _adjacentPairs = cfg.RotaryAdjacentPairs;
        using var scope = NewDisposeScope();
        int half = _rotaryDim / 2;
        Tensor freq;
        if (cfg.UseNTKByPartsRope)
        {
            var invFreq = 1.0f / pow(tensor((float)rotaryBase), arange(0, _rotaryDim, 2, dtype: ScalarType.Int64).to_type(ScalarType.Float32) / _rotaryDim);
            double factor = cfg.NTKByPartsFactor, low = cfg.NTKByPartsLowFreqFactor, high = cfg.NTKByPartsHighFreqFactor;
            double orig = cfg.NTKOriginalCtxLen;
            var wavelen = 2 * Math.PI / invFreq;
            // Long wavelengths are slowed by the factor, short ones kept, the band in between interpolated.
            var scaled = where(wavelen > orig / low, invFreq / factor, invFreq);
            var smooth = (orig / wavelen - low) / (high - low);
            var smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
            var medium = (wavelen < orig / high).logical_not().logical_and((wavelen > orig / low).logical_not());
            freq = 1.0f / where(medium, smoothed, scaled);
        }
        else
        {
            freq = pow(tensor((float)rotaryBase), arange(half, dtype: ScalarType.Float32) / (float)half);
        }
        freq = _adjacentPairs ? freq.repeat_interleave(2L) : cat([freq, freq]);
        _freq = freq.DetachFromDisposeScope();
    }

    /// <summary>
    /// Rotates <paramref name="x"/> [batch, pos, heads, d_head]. Positions are <paramref name="offset"/>.. when
    /// <paramref name="positions"/> is null, else that [batch, pos] tensor (left padding).
    /// </summary>
    public Tensor Apply(Tensor x, long offset, Tensor? positions)
    {
        var dtype = x.dtype;
        x = Ops.Up(x);
        long pos = x.shape[1];
        var p = positions is null ? arange(offset, offset + pos, dtype: ScalarType.Float32).unsqueeze(0) : positions.to_type(ScalarType.Float32);
        var angles = (p.unsqueeze(-1) / _freq).unsqueeze(2);              // [1 or batch, pos, 1, rotary_dim]
        var rot = _rotaryDim == x.shape[3] ? x : x.narrow(-1, 0, _rotaryDim);
        var rotated = rot * angles.cos() + Rotate(rot) * angles.sin();
        var result = _rotaryDim == x.shape[3] ? rotated : cat([rotated, x.narrow(-1, _rotaryDim, x.shape[3] - _rotaryDim)], -1);
        return result.dtype == dtype ? result : result.to_type(dtype);
    }

    /// <summary>(a, b) → (−b, a) for each rotating pair.</summary>
    private Tensor Rotate(Tensor x)
    {
        if (_adjacentPairs)
        {
            var pairs = x.unflatten(x.dim() - 1, [_rotaryDim / 2, 2]); // TorchSharp's unflatten rejects negative dims
            return stack([-pairs.select(-1, 1), pairs.select(-1, 0)], -1).flatten(-2);
        }
        int half = _rotaryDim / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    public void Dispose() => _freq.Dispose();
}
