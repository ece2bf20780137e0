using System.Text.Json.Nodes;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// One model family's bridge from Hugging Face to TransformerLens: its config.json → <see cref="HookedTransformerConfig"/>
/// and its weight names → TransformerLens's. One small implementation per family; <see cref="ModelFamilies"/> lists them.
/// </summary>
public interface IModelFamily
{
    /// <summary>Hugging Face <c>architectures</c> / <c>model_type</c> values this family handles.</summary>
    IReadOnlyList<string> Architectures { get; }

    /// <summary>The TransformerLens config for a Hugging Face <c>config.json</c>.</summary>
    HookedTransformerConfig CreateConfig(JsonObject hfConfig, string modelName);

    /// <summary>Hugging Face weights → TransformerLens state dict (unprocessed).</summary>
    Dictionary<string, Tensor> ConvertWeights(IReadOnlyDictionary<string, Tensor> hfWeights, HookedTransformerConfig config);

    /// <summary>Checkpoint entries the conversion never uses (buffers such as causal masks), so loading can skip them.</summary>
    bool IsUnused(string checkpointName) => false;
}

/// <summary>Registry of supported model families, looked up by a config.json's architecture.</summary>
public static class ModelFamilies
{
    private static readonly List<IModelFamily> Families =
        [new Gpt2Family(), new LlamaFamily(), new GemmaFamily(), new Phi3Family(), new Olmo2Family(),
         new GptNeoXFamily(), new GptJFamily(), new GptNeoFamily(), new OptFamily()];

    /// <summary>Every registered family.</summary>
    public static IReadOnlyList<IModelFamily> All => Families;

    /// <summary>Adds a family (later registrations win for the same architecture).</summary>
    public static void Register(IModelFamily family) => Families.Insert(0, family);

    /// <summary>The family for a config.json: by <c>architectures[0]</c>, else <c>model_type</c>.</summary>
    public static IModelFamily ForConfig(JsonObject hfConfig, string where)
    {
        var names = new List<string>();
        if (hfConfig["architectures"] is JsonArray arr)
            names.AddRange(arr.Select(a => a is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.String ? v.GetValue<string>()
                : throw new SharpLensException($"{where}: 'architectures' must be a list of strings, got {JsonInput.Describe(a)} in it.")));
        else if (hfConfig["architectures"] is { } other)
            throw new SharpLensException($"{where}: 'architectures' must be a list of strings, got {JsonInput.Describe(other)}.");
        if (JsonInput.OptionalString(hfConfig, "model_type", where) is { } mt) names.Add(mt);
        foreach (var n in names)
            foreach (var f in Families)
                if (f.Architectures.Contains(n)) return f;
        var supported = Families.SelectMany(f => f.Architectures).ToList();
        throw new SharpLensException($"{where}: architecture {(names.Count == 0 ? "(none given)" : string.Join(" / ", names))} is not supported. " +
            $"Supported: {string.Join(", ", supported)}.");
    }
}
