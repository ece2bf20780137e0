using SharpLens.Loading.Hub;

namespace SharpLens.Tests.Hub;

public sealed class HubFaultTests : HubTestBase
{
    [Fact]
    public async Task CutConnectionLeavesOnlyAnIncompleteBlobAndTheNextRunResumesWithRange()
    {
        Hub.CutCdnAfterBytes = 100_000;
        Hub.CutCount = 1;
        using (var client = new HubClient(Options(retries: 0)))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadModelAsync(Repo));
            Assert.Contains("failed after 1 try", e.Message);
            Assert.Contains("100000", e.Message);
        }
        Assert.Equal(100_000, new FileInfo(Path.Combine(RepoDir, "blobs", Sha + ".incomplete")).Length);
        Assert.False(File.Exists(Path.Combine(RepoDir, "blobs", Sha)));
        Assert.False(File.Exists(Path.Combine(Snapshot, "model.safetensors")));
        Assert.False(new FileInfo(Path.Combine(Snapshot, "model.safetensors")).Exists || new FileInfo(Path.Combine(Snapshot, "model.safetensors")).LinkTarget is not null);

        using (var client = new HubClient(Options(retries: 0)))
            Assert.Equal(Snapshot, await client.DownloadModelAsync(Repo));
        AssertWeightsInstalled();
        var resumed = Assert.Single(Hub.Log, r => r.Range is not null && r.Target.StartsWith("/cdn/"));
        Assert.Equal("bytes=100000-", resumed.Range);
        Assert.Equal(206, resumed.Status);
    }

    [Fact]
    public async Task CutConnectionIsResumedWithinTheRetries()
    {
        Hub.CutCdnAfterBytes = 200_000;
        Hub.CutCount = 2;
        var progress = new ListProgress();
        using var client = new HubClient(Options(retries: 3));
        await client.DownloadFileAsync(Repo, "model.safetensors", progress: progress);
        AssertWeightsInstalled();
        Assert.Equal(["bytes=200000-", "bytes=400000-"], Hub.Log.Where(r => r.Range is not null && r.Target.StartsWith("/cdn/")).Select(r => r.Range!));
        Assert.Equal(Weights.Length, progress.Reports.Last().BytesDone);
    }

    [Fact]
    public async Task ServerIgnoringRangeMakesTheDownloadRestartFromZero()
    {
        Hub.CutCdnAfterBytes = 100_000;
        Hub.CutCount = 1;
        using (var client = new HubClient(Options(retries: 0)))
            await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "model.safetensors"));
        Hub.IgnoreRange = true;
        using (var client = new HubClient(Options(retries: 0)))
            await client.DownloadFileAsync(Repo, "model.safetensors");
        AssertWeightsInstalled(); // appending the full body to the partial file would have made it too long
        var asked = Assert.Single(Hub.Log, r => r.Range is not null && r.Target.StartsWith("/cdn/"));
        Assert.Equal(200, asked.Status);
    }

    [Fact]
    public async Task ServerErrorIsRetriedThenSucceeds()
    {
        Hub.Fail500Count = 1;
        using var client = new HubClient(Options(retries: 2));
        await client.DownloadModelAsync(Repo);
        AssertWeightsInstalled();
        Assert.Equal(500, Hub.Log.First().Status);
    }

    [Fact]
    public async Task UnreachableHubSaysWhatWorksOffline()
    {
        // A port nobody listens on: connection refused, as with no network the first set-up command would see.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var client = new HubClient(Options(retries: 0) with { Endpoint = $"http://127.0.0.1:{port}" });
        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains("failed after 1 try", e.Message);
        Assert.Contains($"Check the network connection to http://127.0.0.1:{port} (HF_ENDPOINT)", e.Message);
        Assert.Contains("HF_HUB_OFFLINE=1", e.Message);
    }

    [Fact]
    public async Task PersistentServerErrorFailsAfterBoundedRetries()
    {
        Hub.Fail500Count = 1000;
        using var client = new HubClient(Options(retries: 2));
        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains("failed after 3 tries", e.Message);
        Assert.Contains("HTTP 500", e.Message);
        Assert.DoesNotContain("HF_HUB_OFFLINE", e.Message);   // the Hub answered: no network advice
        Assert.Equal(3, Hub.Log.Count);
    }

    [Fact]
    public async Task StalledTransferTimesOutAndIsRetried()
    {
        Hub.StallCount = 1;
        using var client = new HubClient(Options(retries: 1) with { Timeout = TimeSpan.FromMilliseconds(300) });
        await client.DownloadFileAsync(Repo, "model.safetensors");
        AssertWeightsInstalled();
        Assert.Equal(2, Hub.CdnGets);
    }

    [Fact]
    public async Task WrongBytesAreDetectedDeletedAndNotInstalled()
    {
        Hub.CorruptLfs = true;
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubIntegrityException>(() => client.DownloadModelAsync(Repo));
        Assert.Contains("sha256", e.Message);
        Assert.Contains(Sha, e.Message);
        Assert.Equal(1, Hub.CdnGets); // bad data is not a transient fault
        Assert.False(File.Exists(Path.Combine(RepoDir, "blobs", Sha)));
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoDir, "blobs"), "*.incomplete"));
        Assert.False(new FileInfo(Path.Combine(Snapshot, "model.safetensors")).LinkTarget is not null);
        Assert.False(HubCache.IsCached(Cache, Repo));

        Hub.CorruptLfs = false; // a later run starts clean and succeeds
        await client.DownloadModelAsync(Repo);
        AssertWeightsInstalled();
    }

    [Fact]
    public async Task Unauthorized401NamesHfTokenWithoutPrintingIt()
    {
        Hub.Always401 = true;
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubAuthException>(() => client.DownloadModelAsync(Repo));
        Assert.Contains("401", e.Message);
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.Contains("token was sent", e.Message);
        Assert.DoesNotContain(Token, e.ToString());
        Assert.Single(Hub.Log); // 4xx is never retried

        using var anonymous = new HubClient(Options() with { Token = null });
        var e2 = await Assert.ThrowsAsync<HubAuthException>(() => anonymous.DownloadModelAsync(Repo));
        Assert.Contains("No token was sent", e2.Message);
        Assert.False(Hub.Log.Last().HasAuth);
    }

    [Fact]
    public async Task NotFoundSaysWhetherRepositoryRevisionOrFile()
    {
        using var client = new HubClient(Options());
        var repo = await Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadModelAsync("test-org/no-such-model"));
        Assert.Equal(HubNotFoundKind.Repository, repo.Kind);
        Assert.Contains("Repository 'test-org/no-such-model' was not found", repo.Message);

        var rev = await Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadModelAsync(Repo, "no-such-branch"));
        Assert.Equal(HubNotFoundKind.Revision, rev.Kind);
        Assert.Contains("Revision 'no-such-branch' was not found", rev.Message);

        var file = await Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadFileAsync(Repo, "missing.json"));
        Assert.Equal(HubNotFoundKind.File, file.Kind);
        Assert.Contains("File 'missing.json' was not found in 'test-org/tiny-gpt2' at revision 'main'", file.Message);
        Assert.True(File.Exists(Path.Combine(RepoDir, ".no_exist", FakeHub.Commit, "missing.json")));
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "main")));

        // Neither repo nor revision errors leave anything in the cache.
        Assert.False(Directory.Exists(Path.Combine(Cache, "models--test-org--no-such-model")));
    }

    [Fact]
    public async Task ASmallFileNotMatchingItsGitBlobIdOrAnEtagThatIsNoHashIsNotInstalledAndTheRefStays()
    {
        using var client = new HubClient(Options(retries: 0));
        Hub.Tamper = (method, _, _, body) => method == "GET" ? body.Select((x, i) => i == 3 ? (byte)(x ^ 1) : x).ToArray() : body;
        var e = await Assert.ThrowsAsync<HubIntegrityException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains($"'config.json' from '{Repo}' has git blob id", e.Message);
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoDir, "blobs")));
        Assert.False(Directory.Exists(Path.Combine(RepoDir, "refs"))); // a failed download does not move the branch

        Hub.Tamper = (_, _, headers, body) => { headers["ETag"] = "\"not-a-hash\""; return body; };
        var etag = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains("the ETag 'not-a-hash', which is neither a sha256 nor a git blob id", etag.Message);
        Assert.False(Directory.Exists(Path.Combine(RepoDir, "refs")));

        Hub.Tamper = null;
        Assert.Equal(Bytes(Path.Combine(Golden.Dir, "config.json")), Bytes(await client.DownloadFileAsync(Repo, "config.json")));
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "main")));
    }

    [Fact]
    public async Task RepoWithoutAnyWeightsIsAnError()
    {
        Hub.Repos["test-org/config-only"] = new() { ["config.json"] = Hub.File(Repo, "config.json") };
        using var client = new HubClient(Options());
        var e = await Assert.ThrowsAsync<HubNotFoundException>(() => client.DownloadModelAsync("test-org/config-only"));
        Assert.Contains("has no weights", e.Message);
        Assert.Contains("pytorch_model.bin", e.Message);
    }

    [Fact]
    public async Task UnreachableServerIsRetriedThenReported()
    {
        var options = Options(retries: 1);
        Hub.Dispose(); // nothing listens there now
        using var client = new HubClient(options);
        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains("failed after 2 tries", e.Message);
        Assert.Contains($"Connection refused ({new Uri(options.Endpoint).Authority})", e.Message);
    }
}
