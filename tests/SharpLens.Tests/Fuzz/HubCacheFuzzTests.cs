using SharpLens.Loading.Hub;
using SharpLens.Tests.Hub;

namespace SharpLens.Tests.Fuzz;

/// <summary>Damaged Hub cache refs/ (the commit a branch points to): the cache is used or a SharpLensException names the ref file.</summary>
public sealed class HubCacheFuzzTests : IDisposable
{
    private readonly string _cache = Directory.CreateTempSubdirectory("sharplens-fuzz-hub-").FullName;
    public void Dispose() => Directory.Delete(_cache, true);

    [Fact]
    public void DamagedRefs()
    {
        const string repo = "test-org/tiny-gpt2";
        string repoDir = HubCache.RepoFolder(_cache, repo);
        string snapshot = Path.Combine(repoDir, "snapshots", FakeHub.Commit);
        Directory.CreateDirectory(snapshot);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(Golden.Dir, f), Path.Combine(snapshot, f));
        string refFile = Path.Combine(repoDir, "refs", "main");
        Directory.CreateDirectory(Path.GetDirectoryName(refFile)!);
        var valid = System.Text.Encoding.ASCII.GetBytes(FakeHub.Commit);
        Fuzzer.Run("refs/main", seed: 31, iterations: 3000, m =>
        {
            // Byte damage, or a path that would leave snapshots/ if it were used as a folder name.
            var bytes = m.Rng.Next(5) == 0 ? "../../../../etc"u8.ToArray() : m.Bytes(valid, out _);
            File.WriteAllBytes(refFile, bytes);
            return ($"{bytes.Length} bytes", refFile);
        }, () =>
        {
            HubCache.IsCached(_cache, repo);
            HubCache.TryGetCachedFile(_cache, repo, "config.json");
        });
    }
}
