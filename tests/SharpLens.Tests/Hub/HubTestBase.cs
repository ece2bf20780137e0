using System.Collections.Concurrent;
using SharpLens.Loading.Hub;

namespace SharpLens.Tests.Hub;

/// <summary>A fresh cache folder and fake Hub per test.</summary>
public abstract class HubTestBase : IDisposable
{
    internal const string Repo = "test-org/tiny-gpt2";
    internal const string Token = "hf_TestSecretToken123";
    internal readonly FakeHub Hub = FakeHub.WithTinyGpt2();
    internal readonly string Cache = Directory.CreateTempSubdirectory("sharplens-hub-").FullName;

    internal HubOptions Options(int retries = 2) => new()
    {
        Endpoint = Hub.Endpoint,
        CacheDir = Cache,
        Token = Token,
        MaxRetries = retries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        Timeout = TimeSpan.FromSeconds(5),
        LockTimeout = TimeSpan.FromSeconds(20),
    };

    internal string RepoDir => Path.Combine(Cache, "models--test-org--tiny-gpt2");
    internal string Sha => Hub.File(Repo, "model.safetensors").Sha256;
    internal string Snapshot => Path.Combine(RepoDir, "snapshots", FakeHub.Commit);
    internal byte[] Weights => Hub.File(Repo, "model.safetensors").Bytes;

    internal static byte[] Bytes(string path) => File.ReadAllBytes(path);

    /// <summary>Asserts the LFS blob is complete and correct, and nothing is left half-done.</summary>
    internal void AssertWeightsInstalled()
    {
        Assert.Equal(Weights, Bytes(Path.Combine(RepoDir, "blobs", Sha)));
        Assert.Equal(Weights, Bytes(Path.Combine(Snapshot, "model.safetensors")));
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoDir, "blobs"), "*.incomplete"));
    }

    public void Dispose()
    {
        Hub.Dispose();
        try { Directory.Delete(Cache, recursive: true); } catch (IOException) { }
    }

    /// <summary>Collects reports synchronously (Progress&lt;T&gt; would post them later to the thread pool).</summary>
    internal sealed class ListProgress : IProgress<DownloadProgress>
    {
        public readonly ConcurrentQueue<DownloadProgress> Reports = new();
        public void Report(DownloadProgress value) => Reports.Enqueue(value);
    }
}
