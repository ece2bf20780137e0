using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Tests.Hub;

/// <summary>Pythia training checkpoints are Hub revisions (<c>step143000</c>): the name resolves through the registry and the revision reaches the Hub client.</summary>
public sealed class HubRevisionLoadTests : HubTestBase
{
    [Fact]
    public void PythiaTrainingCheckpointLoadsThroughTheHubClient()
    {
        string fixture = Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-neox");
        Hub.Repos["EleutherAI/pythia-70m"] = new()
        {
            ["config.json"] = new(File.ReadAllBytes(Path.Combine(fixture, "config.json")), Lfs: false),
            ["model.safetensors"] = new(File.ReadAllBytes(Path.Combine(fixture, "model.safetensors")), Lfs: true),
        };
        using var model = HookedTransformer.FromPretrainedNoProcessing("pythia-70m", new LoadOptions { Revision = "step143000", Hub = Options() });
        Assert.Equal("GPTNeoXForCausalLM", model.Config.OriginalArchitecture);
        Assert.Contains(Hub.Log, r => r.Target == "/EleutherAI/pythia-70m/resolve/step143000/config.json");
        Assert.DoesNotContain(Hub.Log, r => r.Target.Contains("/resolve/main/"));
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(Cache, "models--EleutherAI--pythia-70m", "refs", "step143000")));

        using var scope = NewDisposeScope();
        using var f = SafetensorsFile.Open(Path.Combine(fixture, "expected", "logits.safetensors"));
        using var inputs = SafetensorsFile.Open(Path.Combine(fixture, "expected", "inputs.safetensors"));
        Golden.AssertClose(f.Read("logits_none"), model.Forward(inputs.Read("tokens")), "pythia-70m@step143000 logits");
    }
}
