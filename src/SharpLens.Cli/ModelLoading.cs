using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Model;

namespace SharpLens.Cli;

/// <summary>Loads a model for a command: downloads with a progress display when needed, then reports the load time.</summary>
internal static class ModelLoading
{
    /// <summary><c>--revision R</c> for commands that load a model.</summary>
    public static System.CommandLine.Option<string> RevisionOption() =>
        Opt.Value("revision", "R", "Hub branch, tag or commit of the model (default main; e.g. Pythia's training checkpoint step143000)");

    /// <summary>The <c>--revision</c> option (Hub branch, tag or commit, e.g. Pythia's <c>step143000</c>), <c>main</c> when absent.</summary>
    public static string Revision(CliArgs args) => args.Option("revision") ?? "main";

    public static HookedTransformer Load(string nameOrPath, TextWriter stderr, bool process = true, string revision = "main") =>
        LoadWithFolder(nameOrPath, stderr, process, revision).Model;

    /// <summary>Loads the model and also returns the checkpoint folder it came from (a local folder or a Hub snapshot).</summary>
    public static (HookedTransformer Model, string Folder) LoadWithFolder(string nameOrPath, TextWriter stderr, bool process = true,
        string revision = "main")
    {
        string folder = nameOrPath, name = Path.GetFileName(Path.TrimEndingDirectorySeparator(nameOrPath));
        if (Directory.Exists(nameOrPath))
        {
            if (revision != "main")
                throw new CliUsageException($"--revision {revision} selects a Hub revision, but '{nameOrPath}' is a local folder.");
        }
        else
        {
            folder = DownloadDisplay.RunAsync(stderr, p => Task.Run(() => PretrainedSource.ResolveFolder(nameOrPath,
                new LoadOptions { Progress = p, Revision = revision }))).GetAwaiter().GetResult();
            name = revision == "main" ? nameOrPath : $"{nameOrPath}@{revision}";
        }
        var sw = Stopwatch.StartNew();
        var model = HookedTransformer.FromFolder(folder, process ? ProcessingOptions.Default : ProcessingOptions.None, name);
        stderr.WriteLine($"[sharplens] loaded {model.Config.ModelName} ({model.Config.NLayers} layers, d_model {model.Config.DModel}, " +
            $"{model.Config.NHeads} heads) in {sw.Elapsed.TotalSeconds:F2} s");
        foreach (var w in model.LoadWarnings) stderr.WriteLine($"[sharplens] warning: {w}");
        return (model, folder);
    }
}
