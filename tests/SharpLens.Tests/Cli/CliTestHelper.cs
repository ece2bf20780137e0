using SharpLens.Cli;

namespace SharpLens.Tests.Cli;

internal static class CliTestHelper
{
    /// <summary>Runs the CLI in-process; returns exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = CliApp.RunAsync(args, o, e).GetAwaiter().GetResult();
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>A dla/patch prompts file of token entries: [{"tokens", "correct_id", "incorrect_id"}] from [batch, pos] and [batch, 2].</summary>
    public static string TokenPromptFile(string dir, string name, TorchSharp.torch.Tensor tokens, TorchSharp.torch.Tensor answers)
    {
        var entries = Enumerable.Range(0, (int)tokens.shape[0]).Select(b => new
        {
            tokens = tokens[b].data<long>().ToArray(), correct_id = answers[b, 0].item<long>(), incorrect_id = answers[b, 1].item<long>(),
        });
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(entries));
        return path;
    }
}
