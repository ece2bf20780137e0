namespace SharpLens.Loading;

/// <summary>How a load used the processed-weights cache (<see cref="WeightsCache"/>).</summary>
public enum WeightsCacheUse
{
    /// <summary>Not consulted: nothing needed converting (parameters map the checkpoint), the cache is off, or the model was built from a state dict.</summary>
    NotUsed,
    /// <summary>The parameters map a cache file; the checkpoint's weights were not read.</summary>
    Hit,
    /// <summary>No valid file: the checkpoint was converted and the result written to the cache.</summary>
    Written,
    /// <summary>No valid file, and the result could not be written (too large for the bound, disk full, ...); see <c>LoadWarnings</c>.</summary>
    NotWritten,
}
