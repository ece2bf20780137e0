using SharpLens.Cluster;
using SharpLens.Model;

namespace SharpLens.Cli.Sweep;

/// <summary>Loads sweep models as the other commands do (names, folders, the Hub), once per model + processing.</summary>
internal sealed class CliModelSource(TextWriter log) : ISweepModelSource
{
    private readonly Dictionary<(string, bool), (HookedTransformer, string)> _loaded = [];

    /// <summary>Loads (or returns the already loaded) model with its content hash.</summary>
    public (HookedTransformer Model, string Hash) Load(string model, bool noProcessing)
    {
        lock (_loaded)
        {
            if (_loaded.TryGetValue((model, noProcessing), out var hit)) return hit;
            var (m, folder) = ModelLoading.LoadWithFolder(model, log, process: !noProcessing);
            var entry = (m, ModelIdentity.Hash(folder, noProcessing));
            _loaded[(model, noProcessing)] = entry;
            return entry;
        }
    }
}
