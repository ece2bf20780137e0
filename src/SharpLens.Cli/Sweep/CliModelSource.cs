using SharpLens.Cluster;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Cli.Sweep;

/// <summary>Loads sweep models as the other commands do (names, folders, the Hub), once per model + processing + dtype.</summary>
internal sealed class CliModelSource(TextWriter log) : ISweepModelSource
{
    private readonly Dictionary<(string, bool, ScalarType), (HookedTransformer, string)> _loaded = [];

    /// <summary>Loads (or returns the already loaded) model with its content hash.</summary>
    public (HookedTransformer Model, string Hash) Load(string model, bool noProcessing, ScalarType dtype)
    {
        lock (_loaded)
        {
            if (_loaded.TryGetValue((model, noProcessing, dtype), out var hit)) return hit;
            var (m, folder) = ModelLoading.LoadWithFolder(model, log, process: !noProcessing, dtype: dtype);
            var entry = (m, ModelIdentity.Hash(folder, noProcessing, dtype));
            _loaded[(model, noProcessing, dtype)] = entry;
            return entry;
        }
    }
}
