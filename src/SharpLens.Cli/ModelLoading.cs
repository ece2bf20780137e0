using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Model;

namespace SharpLens.Cli;

/// <summary>Loads a model for a command: downloads with a progress display when needed, then reports the load time.</summary>
internal static class ModelLoading
{
    public static HookedTransformer Load(string nameOrPath, TextWriter stderr, bool process = true) =>
        LoadWithFolder(nameOrPath, stderr, process).Model;

    /// <summary>Loads the model and also returns the checkpoint folder it came from (a local folder or a Hub snapshot).</summary>
    public static (HookedTransformer Model, string Folder) LoadWithFolder(string nameOrPath, TextWriter stderr, bool process = true)
    {
        string folder = nameOrPath, name = Path.GetFileName(Path.TrimEndingDirectorySeparator(nameOrPath));
        if (!Directory.Exists(nameOrPath))
        {
            folder = DownloadDisplay.RunAsync(stderr, p => Task.Run(() => PretrainedSource.ResolveFolder(nameOrPath, new LoadOptions { Progress = p })))
                .GetAwaiter().GetResult();
            name = nameOrPath;
        }
        var sw = Stopwatch.StartNew();
        var model = HookedTransformer.FromFolder(folder, process ? ProcessingOptions.Default : ProcessingOptions.None, name);
        stderr.WriteLine($"[sharplens] loaded {model.Config.ModelName} ({model.Config.NLayers} layers, d_model {model.Config.DModel}, " +
            $"{model.Config.NHeads} heads) in {sw.Elapsed.TotalSeconds:F2} s");
        foreach (var w in model.LoadWarnings) stderr.WriteLine($"[sharplens] warning: {w}");
        return (model, folder);
    }
}
