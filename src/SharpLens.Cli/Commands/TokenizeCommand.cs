using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using SharpLens.Tokenization;
using Spectre.Console;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens tokenize</c>: shows how a model's tokenizer splits text (TransformerLens to_tokens / to_str_tokens).</summary>
internal sealed class TokenizeCommand : CliCommand
{
    public override string Name => "tokenize";
    public override string Summary => "Show the token ids and string tokens of texts.";
    public override string Details => "Every token is shown (no n_ctx truncation).";
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Args("TEXT", "the texts to tokenize"),
        Opt.Value("model", "M", "gpt2 (default), gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, or a folder with tokenizer.json or vocab.json + merges.txt"),
        Opt.Flag("no-bos", "do not prepend the BOS token (TransformerLens prepend_bos=False)"),
        Opt.Flag("json", "print [{\"text\", \"ids\", \"str_tokens\"}] instead of tables"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string model = args.Option("model") ?? "gpt2";
        bool bos = !args.Flag("no-bos");
        bool json = args.Flag("json");
        args.RejectUnknown();
        if (args.Positionals.Count == 0) throw new CliUsageException("give at least one TEXT to tokenize.");

        var tokenizer = TokenizerLoader.ForModel(model);
        var results = args.Positionals
            .Select(text =>
            {
                var ids = TextEncoding.ToTokenIds(tokenizer, text, bos);
                return (text, ids, strs: TextEncoding.ToStrTokens(tokenizer, ids));
            })
            .ToList();

        if (json) WriteJson(stdout, results);
        else WriteTables(stdout, tokenizer, results);
        return Task.FromResult(0);
    }

    private static void WriteJson(TextWriter stdout, List<(string text, IReadOnlyList<int> ids, IReadOnlyList<string> strs)> results)
    {
        // One prompt per line keeps long id lists compact; relaxed escaping keeps non-ASCII tokens readable (still valid JSON).
        var options = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var lines = results.Select(r => "  " + JsonSerializer.Serialize(new { text = r.text, ids = r.ids, str_tokens = r.strs }, options));
        stdout.WriteLine("[\n" + string.Join(",\n", lines) + "\n]");
    }

    private static void WriteTables(TextWriter stdout, ITokenizer tokenizer, List<(string text, IReadOnlyList<int> ids, IReadOnlyList<string> strs)> results)
    {
        var console = CliConsole.Create(stdout);
        foreach (var (text, ids, strs) in results)
        {
            var table = new Table()
                .Title(Markup.Escape(TextEncoding.Quote(text)))
                .Caption(Markup.Escape($"{ids.Count} tokens, tokenizer {tokenizer.Name}"))
                .AddColumn(new TableColumn("pos").RightAligned())
                .AddColumn(new TableColumn("id").RightAligned())
                .AddColumn("token");
            for (int i = 0; i < ids.Count; i++)
                // Tokens are quoted so leading spaces and newlines are visible; escaped because '[' starts markup.
                table.AddRow(i.ToString(), ids[i].ToString(), Markup.Escape(TextEncoding.Quote(strs[i])));
            console.Write(table);
        }
    }
}
