using SharpLens.Loading.Hub;

namespace SharpLens.Loading;

/// <summary>Where and how <c>FromPretrained</c> finds a model.</summary>
public sealed record LoadOptions
{
    /// <summary>Branch, tag or commit on the Hugging Face Hub (default <c>main</c>).</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Hub endpoint, cache folder, token, offline mode; null = from the environment (<see cref="HubOptions.FromEnvironment()"/>).</summary>
    public HubOptions? Hub { get; init; }

    /// <summary>
    /// Use the processed-weights cache (default true; see <see cref="WeightsCache"/>). False loads and processes the
    /// checkpoint every time and writes nothing. <c>SHARPLENS_WEIGHTS_CACHE=0</c> turns the cache off for every load.
    /// </summary>
    public bool UseWeightsCache { get; init; } = true;

    /// <summary>Receives download progress when files have to be fetched.</summary>
    public IProgress<DownloadProgress>? Progress { get; init; }
}

/// <summary>Resolves a model name or folder to a local folder (what <c>FromPretrained</c> does before loading).</summary>
public static class PretrainedSource
{
    /// <summary>An existing folder as is; otherwise a registry name or repo id, fetched into the Hugging Face cache if needed.</summary>
    public static string ResolveFolder(string nameOrPath, LoadOptions options)
    {
        if (Directory.Exists(nameOrPath)) return nameOrPath;
        var info = ModelRegistry.Resolve(nameOrPath);
        var hub = options.Hub ?? HubOptions.FromEnvironment();
        if (info.Gated && hub.Token is null && !hub.Offline)
        {
            // Without a token a gated repository answers 401/403; a copy already in the cache still works.
            using var cacheOnly = new HubClient(hub with { Offline = true });
            try
            {
                return cacheOnly.DownloadModelAsync(info.RepoId, options.Revision, null).GetAwaiter().GetResult();
            }
            catch (HubOfflineException)
            {
                throw new HubAuthException($"'{info.Name}' ({info.RepoId}) is a gated repository: accept its licence at " +
                    $"{hub.Endpoint}/{info.RepoId} with your Hugging Face account, then set HF_TOKEN to a token with access " +
                    "(or save it in $HF_HOME/token, e.g. with `huggingface-cli login`).");
            }
        }
        using var client = new HubClient(hub);
        // FromPretrained is synchronous; the client uses ConfigureAwait(false) throughout, so blocking here is safe.
        return client.DownloadModelAsync(info.RepoId, options.Revision, options.Progress).GetAwaiter().GetResult();
    }
}
