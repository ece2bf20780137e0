using SharpLens.Hooks;
using static TorchSharp.torch;

namespace SharpLens.Model.Components;

/// <summary>A normalization over the last axis with TransformerLens's <c>hook_scale</c> and <c>hook_normalized</c>.</summary>
internal interface INorm
{
    Tensor Forward(Tensor x);
}

/// <summary>Builds the norm a config's <c>normalization_type</c> selects.</summary>
internal static class Norms
{
    /// <summary>
    /// LN → <see cref="LayerNorm"/> with w and b, LNPre → without; RMS → <see cref="RmsNorm"/> with w, RMSPre → without;
    /// null → no norm. <paramref name="parameter"/> reads the norm's weights by suffix (<c>w</c>, <c>b</c>).
    /// </summary>
    public static INorm? Create(string? kind, Func<string, Tensor> parameter, double eps, HookPoint scale, HookPoint normalized) => kind switch
    {
        "LN" => new LayerNorm(parameter("w"), parameter("b"), eps, scale, normalized),
        "LNPre" => new LayerNorm(null, null, eps, scale, normalized),
        "RMS" => new RmsNorm(parameter("w"), eps, scale, normalized),
        "RMSPre" => new RmsNorm(null, eps, scale, normalized),
        null => null,
        _ => throw new SharpLensException($"Normalization type '{kind}' is not implemented."),
    };

    /// <summary>The weighted kind of a norm family (LNPre → LN, RMSPre → RMS): for norms that are never folded.</summary>
    public static string? Weighted(string? kind) => kind switch { "LNPre" => "LN", "RMSPre" => "RMS", _ => kind };
}
