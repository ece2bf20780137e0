using SharpLens.Loading;
using SharpLens.Loading.Hub;

namespace SharpLens.Tests.Hub;

public sealed class HubOptionsAndRegistryTests
{
    private static HubOptions FromEnv(Dictionary<string, string> env, string home = "/home/u") =>
        HubOptions.FromEnvironment(k => env.GetValueOrDefault(k), home);

    [Fact]
    public void CacheRootFollowsHfHubCacheThenHfHomeThenTheDefault()
    {
        Assert.Equal("/c/hub-cache", FromEnv(new() { ["HF_HUB_CACHE"] = "/c/hub-cache", ["HF_HOME"] = "/h" }).CacheDir);
        Assert.Equal(Path.Combine("/h", "hub"), FromEnv(new() { ["HF_HOME"] = "/h" }).CacheDir);
        Assert.Equal(Path.Combine("/home/u", ".cache", "huggingface", "hub"), FromEnv(new()).CacheDir);
        Assert.Equal(Path.Combine("/home/u", "hf", "hub"), FromEnv(new() { ["HF_HOME"] = "~/hf" }).CacheDir);
    }

    [Fact]
    public void EndpointOfflineAndTokenComeFromTheEnvironment()
    {
        var o = FromEnv(new() { ["HF_ENDPOINT"] = "https://mirror.example/hf/", ["HF_HUB_OFFLINE"] = "1", ["HF_TOKEN"] = "hf_env" });
        Assert.Equal("https://mirror.example/hf", o.Endpoint);
        Assert.True(o.Offline);
        Assert.Equal("hf_env", o.Token);
        var d = FromEnv(new() { ["HF_HUB_OFFLINE"] = "0", ["HF_HOME"] = "/nonexistent-sharplens" });
        Assert.Equal(HubOptions.DefaultEndpoint, d.Endpoint);
        Assert.False(d.Offline);
        Assert.Null(d.Token);
    }

    [Fact]
    public void TokenFileUnderHfHomeIsUsedWhenHfTokenIsUnsetAndNeverPrinted()
    {
        var home = Directory.CreateTempSubdirectory("sharplens-hfhome-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(home, "token"), "hf_FromTheFile\n");
            var o = FromEnv(new() { ["HF_HOME"] = home });
            Assert.Equal("hf_FromTheFile", o.Token);
            Assert.Equal("hf_Wins", FromEnv(new() { ["HF_HOME"] = home, ["HF_TOKEN"] = "hf_Wins" }).Token);
            Assert.DoesNotContain("hf_FromTheFile", o.ToString());
            Assert.Contains("Token = set", o.ToString());
        }
        finally { Directory.Delete(home, true); }
    }

    [Fact]
    public void CacheHelpersUseHuggingFaceNames()
    {
        Assert.Equal(Path.Combine("/c", "models--openai-community--gpt2"), HubCache.RepoFolder("/c", "openai-community/gpt2"));
        Assert.Equal(Path.Combine("/c", "models--gpt2"), HubCache.RepoFolder("/c", "gpt2"));
        Assert.True(HubCache.IsCommitHash("607a30d783dfa663caf39e06633721c8d4cfcd7e"));
        Assert.False(HubCache.IsCommitHash("main"));
        Assert.False(HubCache.IsCached("/nonexistent-sharplens", "openai-community/gpt2"));
        foreach (var bad in new[] { "a/b/c", "../x", "a--b/c", "org/", "-x/y" })
            Assert.Throws<SharpLensException>(() => HubCache.RepoFolder("/c", bad));
    }

    [Fact]
    public async Task BadFileNamesAreRejectedBeforeAnyRequest()
    {
        using var client = new HubClient(new HubOptions { Endpoint = "http://127.0.0.1:9", CacheDir = "/nonexistent-sharplens" });
        var e = await Assert.ThrowsAsync<SharpLensException>(() => client.DownloadFileAsync("org/name", "../../etc/passwd"));
        Assert.Contains("not a valid repository file name", e.Message);
        Assert.Throws<SharpLensException>(() => new HubClient(new HubOptions { Endpoint = "ftp://x" }));
    }

    [Fact]
    public void RegistryResolvesNamesAliasesAndRepoIds()
    {
        Assert.Equal("openai-community/gpt2", ModelRegistry.Resolve("gpt2").RepoId);
        Assert.Equal("openai-community/gpt2", ModelRegistry.Resolve("GPT2-Small").RepoId);
        Assert.Equal("openai-community/gpt2-medium", ModelRegistry.Resolve("gpt2-medium").RepoId);
        Assert.Equal("openai-community/gpt2-large", ModelRegistry.Resolve("gpt2-large").RepoId);
        Assert.Equal("openai-community/gpt2-xl", ModelRegistry.Resolve("gpt2-xl").RepoId);
        Assert.Equal("distilbert/distilgpt2", ModelRegistry.Resolve("distilgpt2").RepoId);
        Assert.Equal("gpt2", ModelRegistry.Resolve("openai-community/gpt2").Name);
        var other = ModelRegistry.Resolve("some-lab/custom-model");
        Assert.Equal("some-lab/custom-model", other.RepoId);
        Assert.False(other.IsOfficial);
        Assert.Equal(5, ModelRegistry.All.Count(m => m.RepoId.Contains("gpt2")));
    }

    [Fact]
    public void UnknownNameListsSupportedNamesClosestFirst()
    {
        var e = Assert.Throws<SharpLensException>(() => ModelRegistry.Resolve("gpt2-xxl"));
        Assert.StartsWith("unknown model 'gpt2-xxl'. Supported: gpt2-xl, ", e.Message);
        // The closest few, not every alias of every family (that was a ~150-name wall of text).
        var listed = e.Message[(e.Message.IndexOf("Supported: ", StringComparison.Ordinal) + 11)..e.Message.IndexOf(" (the ", StringComparison.Ordinal)].Split(", ");
        Assert.Equal(8, listed.Length);
        Assert.Contains("gpt2", listed);
        Assert.DoesNotContain("TinyStories-Instruct-2Layers-33M", listed);
        Assert.Contains("'sharplens models' / ModelRegistry.All list every model", e.Message);
        Assert.Contains("org/name", e.Message.Replace("'openai-community/gpt2'", "org/name"));
    }

    [Fact]
    public void ParameterCountsMatchTheCheckpointsAndTransformerLens()
    {
        // Totals as Hugging Face counts them; non-embedding as TransformerLens's cfg.n_params.
        var gpt2 = ModelRegistry.Resolve("gpt2");
        Assert.Equal(124_439_808, gpt2.TotalParameters);
        Assert.Equal(84_934_656, gpt2.NonEmbeddingParameters);
        Assert.Equal("124M", gpt2.Parameters);
        Assert.Equal(354_823_168, ModelRegistry.Resolve("gpt2-medium").TotalParameters);
        Assert.Equal(774_030_080, ModelRegistry.Resolve("gpt2-large").TotalParameters);
        Assert.Equal(1_557_611_200, ModelRegistry.Resolve("gpt2-xl").TotalParameters);
        Assert.Equal(1_474_560_000, ModelRegistry.Resolve("gpt2-xl").NonEmbeddingParameters);
        Assert.Equal(81_912_576, ModelRegistry.Resolve("distilgpt2").TotalParameters);
        Assert.Equal(42_467_328, ModelRegistry.Resolve("distilgpt2").NonEmbeddingParameters);
    }
}
