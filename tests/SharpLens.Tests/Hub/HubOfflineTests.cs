using SharpLens.Loading;
using SharpLens.Loading.Hub;
using SharpLens.Model;

namespace SharpLens.Tests.Hub;

public sealed class HubOfflineTests : HubTestBase
{
    [Fact]
    public async Task OfflineHitServesTheCacheWithoutAnyRequest()
    {
        using (var online = new HubClient(Options()))
            await online.DownloadModelAsync(Repo);
        int requests = Hub.Log.Count;
        using var offline = new HubClient(Options() with { Offline = true, CheckForUpdates = true });
        Assert.Equal(Snapshot, await offline.DownloadModelAsync(Repo));
        Assert.Equal(Path.Combine(Snapshot, "model.safetensors"), await offline.DownloadFileAsync(Repo, "model.safetensors"));
        Assert.Equal(Path.Combine(Snapshot, "config.json"), await offline.DownloadFileAsync(Repo, "config.json", FakeHub.Commit));
        Assert.Equal(requests, Hub.Log.Count);
    }

    [Fact]
    public async Task OfflineMissNamesTheMissingFileAndHowToFetchIt()
    {
        using var offline = new HubClient(Options() with { Offline = true });
        var e = await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadModelAsync(Repo));
        Assert.Equal("config.json", e.MissingFile);
        Assert.Contains("'config.json' of 'test-org/tiny-gpt2'", e.Message);
        Assert.Contains("sharplens download test-org/tiny-gpt2", e.Message);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);

        var f = await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadFileAsync(Repo, "model.safetensors", "v1.0"));
        Assert.Equal("model.safetensors", f.MissingFile);
        Assert.Contains("sharplens download test-org/tiny-gpt2 --revision v1.0", f.Message);

        // With the config cached but no weights, the weights are named.
        using (var online = new HubClient(Options()))
            await online.DownloadFileAsync(Repo, "config.json");
        var w = await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadModelAsync(Repo));
        Assert.Equal("model.safetensors", w.MissingFile);
        Assert.Contains("no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin)", w.Message);
        Assert.Equal(0, Hub.Log.Count(r => r.Target.Contains("model")));
    }

    /// <summary>Exactly what huggingface_hub leaves after hf_hub_download of config.json and model.safetensors.</summary>
    private void LayOutLikePython(string repoFolderName)
    {
        string repoDir = Path.Combine(Cache, repoFolderName);
        var config = Hub.File(Repo, "config.json");
        Directory.CreateDirectory(Path.Combine(repoDir, "blobs"));
        File.WriteAllBytes(Path.Combine(repoDir, "blobs", config.GitSha1), config.Bytes);
        File.WriteAllBytes(Path.Combine(repoDir, "blobs", Sha), Weights);
        Directory.CreateDirectory(Path.Combine(repoDir, "refs"));
        File.WriteAllText(Path.Combine(repoDir, "refs", "main"), FakeHub.Commit);
        string snap = Path.Combine(repoDir, "snapshots", FakeHub.Commit);
        Directory.CreateDirectory(snap);
        File.CreateSymbolicLink(Path.Combine(snap, "config.json"), "../../blobs/" + config.GitSha1);
        File.CreateSymbolicLink(Path.Combine(snap, "model.safetensors"), "../../blobs/" + Sha);
        Directory.CreateDirectory(Path.Combine(repoDir, ".no_exist", FakeHub.Commit));
        File.WriteAllBytes(Path.Combine(repoDir, ".no_exist", FakeHub.Commit, "tokenizer.json"), []);
        Directory.CreateDirectory(Path.Combine(Cache, ".locks", repoFolderName));
        File.WriteAllBytes(Path.Combine(Cache, ".locks", repoFolderName, Sha + ".lock"), []);
    }

    [Fact]
    public async Task CacheLaidOutByHuggingFaceHubLoadsOffline()
    {
        LayOutLikePython("models--test-org--tiny-gpt2");
        using var offline = new HubClient(Options() with { Offline = true });
        Assert.Equal(Snapshot, await offline.DownloadModelAsync(Repo));
        Assert.True(HubCache.IsCached(Cache, Repo));
        Assert.True(HubCache.IsKnownMissing(Cache, Repo, "tokenizer.json"));
        Assert.Equal(Path.Combine(Snapshot, "model.safetensors"), HubCache.TryGetCachedFile(Cache, Repo, "model.safetensors"));
        Assert.Null(HubCache.TryGetCachedFile(Cache, Repo, "pytorch_model.bin"));
        Assert.Equal(Snapshot, HubCache.TryGetCachedSnapshot(Cache, Repo, FakeHub.Commit));
        Assert.Null(HubCache.TryGetCachedSnapshot(Cache, Repo, "v1.0"));

        using var model = HookedTransformer.FromPretrainedNoProcessing(Repo, new LoadOptions { Hub = Options() with { Offline = true } });
        Assert.Equal(2, model.Config.NLayers);
        Assert.Empty(Hub.Log);
    }

    [Fact]
    public async Task OnlineClientCompletesAPythonCacheWithoutRefetchingItsBlobs()
    {
        LayOutLikePython("models--test-org--tiny-gpt2");
        using var client = new HubClient(Options());
        Assert.Equal(Snapshot, await client.DownloadModelAsync(Repo));
        Assert.Equal(0, Hub.CdnGets);
        Assert.Equal(0, Hub.Count(r => r.Method == "GET"));
        Assert.Equal(0, Hub.Count(r => r.Target.EndsWith("/tokenizer.json"))); // .no_exist said so
        Assert.True(File.Exists(Path.Combine(RepoDir, ".no_exist", FakeHub.Commit, "vocab.json")));
    }

    [Fact]
    public void OfflineRegistryNameResolvesToItsRepository()
    {
        Hub.Repos["openai-community/gpt2"] = Hub.Repos[Repo];
        LayOutLikePython("models--openai-community--gpt2");
        Assert.True(HubCache.IsCached(Cache, ModelRegistry.Resolve("gpt2-small").RepoId));
        using var model = HookedTransformer.FromPretrainedNoProcessing("gpt2", new LoadOptions { Hub = Options() with { Offline = true } });
        Assert.Equal(64, model.Config.DModel);
    }
}
