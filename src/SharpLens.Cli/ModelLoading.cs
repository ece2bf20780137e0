using System.Diagnostics;
using SharpLens.Model;

namespace SharpLens.Cli;

/// <summary>Loads a model for a command, with progress on stderr.</summary>
internal static class ModelLoading
{
    public static HookedTransformer Load(string nameOrPath, TextWriter stderr, bool process = true)
    {
        var sw = Stopwatch.StartNew();
        var model = process ? HookedTransformer.FromPretrained(nameOrPath) : HookedTransformer.FromPretrainedNoProcessing(nameOrPath);
        stderr.WriteLine($"[sharplens] loaded {model.Config.ModelName} ({model.Config.NLayers} layers, d_model {model.Config.DModel}, " +
            $"{model.Config.NHeads} heads) in {sw.Elapsed.TotalSeconds:F2} s");
        return model;
    }
}
