using SharpLens.Loading;
using SharpLens.Loading.Hub;
using SharpLens.Model;

namespace SharpLens.Tests.Hub;

public sealed class HubDownloadTests : HubTestBase
{
    [Fact]
    public async Task FirstDownloadLaysOutTheCacheLikeHuggingFaceHubThenSecondLoadMakesNoRequests()
    {
        var progress = new ListProgress();
        string snapshot;
        using (var client = new HubClient(Options()))
            snapshot = await client.DownloadModelAsync(Repo, "main", progress);

        Assert.Equal(Snapshot, snapshot);
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "main"))); // no trailing newline
        var config = Hub.File(Repo, "config.json");
        Assert.Equal(Path.Combine("..", "..", "blobs", config.GitSha1), new FileInfo(Path.Combine(snapshot, "config.json")).LinkTarget);
        Assert.Equal(Path.Combine("..", "..", "blobs", Sha), new FileInfo(Path.Combine(snapshot, "model.safetensors")).LinkTarget);
        Assert.Equal(config.Bytes, Bytes(Path.Combine(snapshot, "config.json")));
        AssertWeightsInstalled();
        // Absent optional files are recorded the way Python records them.
        foreach (var t in new[] { "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json" })
            Assert.True(File.Exists(Path.Combine(RepoDir, ".no_exist", FakeHub.Commit, t)), t);
        Assert.False(File.Exists(Path.Combine(snapshot, "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(Cache, ".locks", "models--test-org--tiny-gpt2", Sha + ".lock")));

        // The token goes to the Hub, never to the CDN host the 302 points to.
        Assert.All(Hub.Log.Where(r => r.Target.Contains("/resolve/")), r => Assert.True(r.HasAuth, r.Target));
        Assert.All(Hub.Log.Where(r => r.Target.StartsWith("/cdn/")), r => Assert.False(r.HasAuth, r.Target));
        Assert.Equal(1, Hub.CdnGets);

        var last = progress.Reports.Last(p => p.File == "model.safetensors");
        Assert.Equal(Weights.Length, last.BytesDone);
        Assert.Equal(Weights.Length, last.TotalBytes);

        int requests = Hub.Log.Count;
        using (var again = new HubClient(Options()))
        {
            Assert.Equal(snapshot, await again.DownloadModelAsync(Repo));
            Assert.Equal(Path.Combine(snapshot, "config.json"), await again.DownloadFileAsync(Repo, "config.json"));
        }
        Assert.Equal(requests, Hub.Log.Count);
        Assert.True(HubCache.IsCached(Cache, Repo));
    }

    [Fact]
    public void DownloadedModelLoadsThroughFromPretrainedByRepoId()
    {
        using var model = HookedTransformer.FromPretrainedNoProcessing(Repo, new LoadOptions { Hub = Options() });
        Assert.Equal(2, model.Config.NLayers);
        Assert.Equal(64, model.Config.DModel);
        AssertWeightsInstalled();
    }

    [Fact]
    public async Task FileInASubfolderGetsADeeperRelativeSymlink()
    {
        using var client = new HubClient(Options());
        string path = await client.DownloadFileAsync(Repo, "sub/dir/notes.txt");
        Assert.Equal(Path.Combine(Snapshot, "sub", "dir", "notes.txt"), path);
        Assert.Equal("nested file\n", File.ReadAllText(path));
        string blob = Hub.File(Repo, "sub/dir/notes.txt").GitSha1;
        Assert.Equal(Path.Combine("..", "..", "..", "..", "blobs", blob), new FileInfo(path).LinkTarget);
    }

    [Fact]
    public async Task RevisionWithSlashIsUrlEncodedAndGetsANestedRef()
    {
        using var client = new HubClient(Options());
        string path = await client.DownloadFileAsync(Repo, "config.json", "refs/pr/1");
        Assert.Equal(Path.Combine(Snapshot, "config.json"), path);
        Assert.Contains(Hub.Log, r => r.Target == $"/{Repo}/resolve/refs%2Fpr%2F1/config.json");
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "refs", "pr", "1")));
    }

    [Fact]
    public async Task CommitHashRevisionWritesNoRefAndIsServedFromCacheAfterwards()
    {
        using var client = new HubClient(Options() with { CheckForUpdates = true });
        await client.DownloadFileAsync(Repo, "config.json", FakeHub.Commit);
        Assert.False(Directory.Exists(Path.Combine(RepoDir, "refs")));
        int requests = Hub.Log.Count;
        await client.DownloadFileAsync(Repo, "config.json", FakeHub.Commit); // immutable: never re-checked
        Assert.Equal(requests, Hub.Log.Count);
        await client.DownloadFileAsync(Repo, "config.json", "main"); // a branch is re-checked with CheckForUpdates
        Assert.Equal(requests + 1, Hub.Log.Count);
        Assert.Equal("HEAD", Hub.Log.Last().Method);
    }

    [Fact]
    public async Task WeightsFallBackToPytorchBinAndRecordMissingSafetensors()
    {
        Hub.Repos["test-org/bin-only"] = new()
        {
            ["config.json"] = Hub.File(Repo, "config.json"),
            ["pytorch_model.bin"] = new(Enumerable.Range(0, 50_000).Select(i => (byte)(i * 7)).ToArray(), Lfs: true),
        };
        using var client = new HubClient(Options());
        string snapshot = await client.DownloadModelAsync("test-org/bin-only");
        string repoDir = Path.Combine(Cache, "models--test-org--bin-only");
        Assert.Equal(Hub.File("test-org/bin-only", "pytorch_model.bin").Bytes, Bytes(Path.Combine(snapshot, "pytorch_model.bin")));
        Assert.True(File.Exists(Path.Combine(repoDir, ".no_exist", FakeHub.Commit, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(repoDir, ".no_exist", FakeHub.Commit, "model.safetensors.index.json")));
        Assert.False(File.Exists(Path.Combine(snapshot, "model.safetensors")));

        // Offline, .no_exist is honoured: the .bin is the weights, and the absent file is reported as absent.
        using var offline = new HubClient(Options() with { Offline = true });
        int requests = Hub.Log.Count;
        Assert.Equal(snapshot, await offline.DownloadModelAsync("test-org/bin-only"));
        var e = await Assert.ThrowsAsync<HubNotFoundException>(() => offline.DownloadFileAsync("test-org/bin-only", "model.safetensors"));
        Assert.Equal(HubNotFoundKind.File, e.Kind);
        Assert.Contains(".no_exist", e.Message);
        Assert.Equal(requests, Hub.Log.Count);
    }

    [Fact]
    public async Task ShardedSafetensorsAndPresentTokenizerFilesAreFetched()
    {
        var shard1 = new FakeHub.RepoFile(Enumerable.Repeat((byte)1, 30_000).ToArray(), Lfs: true);
        var shard2 = new FakeHub.RepoFile(Enumerable.Repeat((byte)2, 20_000).ToArray(), Lfs: true);
        string index = """{"metadata":{"total_size":50000},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}}""";
        Hub.Repos["test-org/sharded"] = new()
        {
            ["config.json"] = Hub.File(Repo, "config.json"),
            ["model.safetensors.index.json"] = new(System.Text.Encoding.UTF8.GetBytes(index), Lfs: false),
            ["model-00001-of-00002.safetensors"] = shard1,
            ["model-00002-of-00002.safetensors"] = shard2,
            ["vocab.json"] = new("{\"a\": 0}"u8.ToArray(), Lfs: false),
            ["merges.txt"] = new("#version: 0.2\n"u8.ToArray(), Lfs: false),
        };
        using var client = new HubClient(Options());
        string snapshot = await client.DownloadModelAsync("test-org/sharded");
        Assert.Equal(shard1.Bytes, Bytes(Path.Combine(snapshot, "model-00001-of-00002.safetensors")));
        Assert.Equal(shard2.Bytes, Bytes(Path.Combine(snapshot, "model-00002-of-00002.safetensors")));
        Assert.Equal("#version: 0.2\n", File.ReadAllText(Path.Combine(snapshot, "merges.txt")));
        Assert.True(File.Exists(Path.Combine(snapshot, "vocab.json")));
        Assert.True(File.Exists(Path.Combine(Cache, "models--test-org--sharded", ".no_exist", FakeHub.Commit, "tokenizer.json")));
        Assert.False(File.Exists(Path.Combine(snapshot, "pytorch_model.bin")));
        Assert.Equal(0, Hub.Count(r => r.Target.EndsWith("/pytorch_model.bin"))); // never asked once safetensors were found
        Assert.True(HubCache.IsCached(Cache, "test-org/sharded"));
    }

    [Fact]
    public async Task TwoConcurrentLoadersOfTheSameModelBothSucceedWithOneBlob()
    {
        Hub.ChunkDelayMs = 2; // keep the transfer open long enough for the two to overlap
        using var a = new HubClient(Options());
        using var b = new HubClient(Options());
        var results = await Task.WhenAll(a.DownloadModelAsync(Repo), b.DownloadModelAsync(Repo));
        Assert.Equal(Snapshot, results[0]);
        Assert.Equal(Snapshot, results[1]);
        AssertWeightsInstalled();
        Assert.Equal(2, Directory.GetFiles(Path.Combine(RepoDir, "blobs")).Length); // config + weights, nothing else
        Assert.Equal(1, Hub.CdnGets); // the second waited on the lock, then found the finished blob
    }

    [Fact]
    public async Task DownloadWaitsForTheLockHeldByAnotherProcessAndGivesUpAfterTheTimeout()
    {
        string lockPath = Path.Combine(Cache, ".locks", "models--test-org--tiny-gpt2", Sha + ".lock");
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        using var client = new HubClient(Options() with { LockTimeout = TimeSpan.FromMilliseconds(300) });
        using (new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "model.safetensors"));
            Assert.Contains("another process", e.Message);
            Assert.Equal(0, Hub.CdnGets);
            Assert.False(File.Exists(Path.Combine(Snapshot, "model.safetensors")));
        }
        await client.DownloadFileAsync(Repo, "model.safetensors");
        AssertWeightsInstalled();
    }
}
