using System.Diagnostics;
using SharpLens.Loading;
using SharpLens.Sae;

namespace SharpLens.Cli;

/// <summary>Loads the SAEs of <c>--sae</c> (folders or Hub locations) with their <c>--sae-hook</c> overrides.</summary>
internal static class SaeLoading
{
    /// <summary>
    /// One SAE per location. <paramref name="hooks"/> is empty, one hook for a single SAE, or one hook per SAE in
    /// order. The caller disposes the SAEs.
    /// </summary>
    public static List<SparseAutoencoder> Load(IReadOnlyList<string> locations, IReadOnlyList<string> hooks, TextWriter stderr)
    {
        if (hooks.Count > 0 && hooks.Count != locations.Count)
            throw new CliUsageException($"give --sae-hook once per --sae (in the same order): got {locations.Count} --sae and {hooks.Count} --sae-hook.");
        var saes = new List<SparseAutoencoder>();
        try
        {
            for (int i = 0; i < locations.Count; i++)
            {
                var sw = Stopwatch.StartNew();
                string location = locations[i];
                string? hook = hooks.Count > 0 ? hooks[i] : null;
                SparseAutoencoder? sae = null;
                if (Directory.Exists(location) || File.Exists(location)) sae = SparseAutoencoder.FromFolder(location, hook);
                else
                    DownloadDisplay.RunAsync(stderr, p => Task.Run(() =>
                    {
                        sae = SparseAutoencoder.Load(location, hook, new LoadOptions { Progress = p });
                        return location;
                    })).GetAwaiter().GetResult();
                saes.Add(sae!);
                stderr.WriteLine($"[sharplens] loaded {sae} from {location} in {sw.Elapsed.TotalSeconds:F2} s");
            }
        }
        catch
        {
            foreach (var s in saes) s.Dispose();
            throw;
        }
        return saes;
    }
}
