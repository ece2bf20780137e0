using System.Text.Json;
using SharpLens.Cli;

namespace SharpLens.Tests.Tokenization;

/// <summary><c>sharplens tokenize --tokenizer PATH / --model M / --texts-file F</c> on the family tokenizers.</summary>
public sealed class FamilyTokenizeCommandTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("sharplens-tokcli-").FullName;
    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static async Task<(int code, string stdout, string stderr)> Run(params string[] argv)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CliApp.RunAsync(argv, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static int[][] Ids(string json) =>
        JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();

    [Theory]
    [MemberData(nameof(FamilyTokenizerGoldenTests.Families), MemberType = typeof(FamilyTokenizerGoldenTests))]
    public async Task EveryGoldenTextThroughTheCliWithAndWithoutBos(string family)
    {
        var cases = FamilyTokenizerGoldenTests.Cases(family);
        string textsFile = Path.Combine(_temp, "texts.json");
        File.WriteAllText(textsFile, JsonSerializer.Serialize(cases.Select(c => c.GetProperty("text").GetString()).ToArray()));
        string source = FamilyTokenizerGoldenTests.SourceOf(family);

        var (code, stdout, stderr) = await Run("tokenize", "--tokenizer", source, "--texts-file", textsFile, "--json");
        Assert.True(code == 0, stderr);
        var withBos = Ids(stdout);
        var (code2, stdout2, stderr2) = await Run("tokenize", "--tokenizer", source, "--texts-file", textsFile, "--json", "--no-bos");
        Assert.True(code2 == 0, stderr2);
        var noBos = Ids(stdout2);
        Assert.Equal(cases.Length, withBos.Length);
        for (int i = 0; i < cases.Length; i++)
        {
            var c = cases[i];
            int[] ids = c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            // The tokenizer's own BOS: Llama 2 / Mistral / Llama 3 have ids_with_special; NeoX and Qwen2 add nothing.
            int[] special = c.TryGetProperty("ids_with_special", out var ws) ? ws.EnumerateArray().Select(x => x.GetInt32()).ToArray() : ids;
            Assert.Equal(special, withBos[i]);
            Assert.Equal(ids, noBos[i]);
        }
    }

    [Fact]
    public async Task TextsFileTakesTextsThatLookLikeOptions()
    {
        string textsFile = Path.Combine(_temp, "texts.json");
        File.WriteAllText(textsFile, """["--json", "-x\ny"]""");
        var (code, stdout, _) = await Run("tokenize", "--tokenizer", FamilyTokenizerGoldenTests.SourceOf("llama2"), "--texts-file", textsFile, "--json");
        Assert.Equal(0, code);
        var items = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal("--json", items[0].GetProperty("text").GetString());
        Assert.Equal("-x\ny", items[1].GetProperty("text").GetString());
        Assert.Equal(["<s>", "-", "x", "\n", "y"], items[1].GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task ModelFolderUsesTheModelsDefaultPrependBos()
    {
        // The tiny GPT-2 config (d_vocab 1000, GPT-2 family: default_prepend_bos True) with a small byte-level tokenizer.
        File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(_temp, "config.json"));
        File.WriteAllText(Path.Combine(_temp, "tokenizer.json"),
            """{"model": {"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2, "<|endoftext|>": 3}, "merges": ["h i"]}, "pre_tokenizer": {"type": "ByteLevel"}}""");
        var (code, stdout, stderr) = await Run("tokenize", "--model", _temp, "--json", "hi");
        Assert.True(code == 0, stderr);
        Assert.Equal([3, 2], Ids(stdout)[0]);
        // The same folder as a bare tokenizer: byte-level BPE adds no BOS itself.
        (code, stdout, _) = await Run("tokenize", "--tokenizer", _temp, "--json", "hi");
        Assert.Equal(0, code);
        Assert.Equal([2], Ids(stdout)[0]);
    }

    [Theory]
    [InlineData("""{"a": 1}""", "must hold a JSON array of strings")]
    [InlineData("""["a", 3]""", "element 1 is 3, not a string")]
    [InlineData("""["a", """, "not valid JSON")]
    public async Task BadTextsFileIsExplained(string content, string expected)
    {
        string textsFile = Path.Combine(_temp, "texts.json");
        File.WriteAllText(textsFile, content);
        var (code, _, stderr) = await Run("tokenize", "--texts-file", textsFile);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, stderr);
    }

    [Fact]
    public async Task ModelAndTokenizerTogetherAreRefused()
    {
        var (code, _, stderr) = await Run("tokenize", "--model", "gpt2", "--tokenizer", _temp, "x");
        Assert.NotEqual(0, code);
        Assert.Contains("--model or --tokenizer, not both", stderr);
    }
}
