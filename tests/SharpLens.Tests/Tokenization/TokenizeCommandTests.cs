using System.Text.Json;
using SharpLens.Cli;

namespace SharpLens.Tests.Tokenization;

/// <summary><c>sharplens tokenize</c> in table and JSON mode.</summary>
public sealed class TokenizeCommandTests
{
    private static async Task<(int code, string stdout, string stderr)> Run(params string[] argv)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CliApp.RunAsync(argv, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task TablePrintsIdsAndQuotedTokens()
    {
        var (code, stdout, stderr) = await Run("tokenize", "Hello, world!");
        Assert.Equal(0, code);
        Assert.Equal("", stderr);
        var rows = stdout.Split('\n').Where(l => l.Contains('│') && !l.Contains("pos")).ToList();
        Assert.Equal(5, rows.Count);
        Assert.Matches(@"│\s+0\s+│\s+50256\s+│\s+'<\|endoftext\|>'\s+│", rows[0]);
        Assert.Matches(@"│\s+3\s+│\s+995\s+│\s+' world'\s+│", rows[3]);
        Assert.Contains("5 tokens, tokenizer gpt2", stdout);
    }

    [Fact]
    public async Task TableEscapesMarkupInTokens()
    {
        // '[' starts Spectre markup; unescaped it would throw or vanish.
        var (code, stdout, _) = await Run("tokenize", "--no-bos", "[red]x[/]");
        Assert.Equal(0, code);
        Assert.Contains("'['", stdout);
        Assert.Contains("'red'", stdout);
        Assert.DoesNotContain("50256", stdout);
    }

    [Fact]
    public async Task JsonListsTextIdsAndStrTokens()
    {
        var (code, stdout, _) = await Run("tokenize", "--json", "--no-bos", "Hello, world!", " Mary", "caf\u00e9\n");
        Assert.Equal(0, code);
        var items = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(3, items.Count);
        Assert.Equal("Hello, world!", items[0].GetProperty("text").GetString());
        Assert.Equal([15496, 11, 995, 0], items[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["Hello", ",", " world", "!"], items[0].GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal([5335], items[1].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["c", "af", "\u00e9", "\n"], items[2].GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task JsonPrependsBosByDefault()
    {
        var (_, stdout, _) = await Run("tokenize", "--json", " Mary");
        var item = JsonDocument.Parse(stdout).RootElement[0];
        Assert.Equal([50256, 5335], item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["<|endoftext|>", " Mary"], item.GetProperty("str_tokens").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task ModelFolderIsLoaded()
    {
        string folder = Gpt2GoldenTests.FixturePath("mini-bpe", "vocab-merges");
        var (code, stdout, _) = await Run("tokenize", "--model", folder, "--json", " Mary");
        Assert.Equal(0, code);
        Assert.Equal([2256, 337, 560], JsonDocument.Parse(stdout).RootElement[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public async Task ModelFolderUsesTheTokenizerTheModelUses()
    {
        // A GPT-2-vocabulary checkpoint without tokenizer files: the model runs text through the built-in GPT-2 BPE,
        // so 'tokenize --model' on that folder must too (it failed with "no tokenizer file").
        string dir = TestEnvironment.NewTempDir("tokenize-gpt2-folder-");
        File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(dir, "config.json"));
        File.WriteAllText(Path.Combine(dir, "config.json"), File.ReadAllText(Path.Combine(dir, "config.json")).Replace("\"vocab_size\": 1000", "\"vocab_size\": 50257"));
        var (code, stdout, stderr) = await Run("tokenize", "--model", dir, "--json", "Hello world");
        Assert.True(code == 0, stderr);
        Assert.Equal([50256, 15496, 995], JsonDocument.Parse(stdout).RootElement[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));

        // Another vocabulary and no tokenizer files: still an error naming what was looked for.
        (code, _, stderr) = await Run("tokenize", "--model", Golden.Dir, "x");
        Assert.Equal(1, code);
        Assert.Contains("no tokenizer file", stderr);
    }

    [Fact]
    public async Task UnknownModelAndMissingTextAreErrors()
    {
        var (code, _, stderr) = await Run("tokenize", "--model", "gpt2-smal", "x");
        Assert.Equal(1, code);
        Assert.Contains("unknown model 'gpt2-smal'. Supported: gpt2-small,", stderr);

        (code, _, stderr) = await Run("tokenize", "--json");
        Assert.Equal(2, code);
        Assert.Contains("at least one TEXT", stderr);

        (code, _, stderr) = await Run("tokenize", "--jsno", "x");
        Assert.Equal(2, code);
        Assert.Contains("--jsno", stderr);
    }
}
