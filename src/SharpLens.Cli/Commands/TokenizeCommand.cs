using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tokenization;
using Spectre.Console;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens tokenize</c>: shows how a model's tokenizer splits text (TransformerLens to_tokens / to_str_tokens).</summary>
internal sealed class TokenizeCommand : CliCommand
{
    public override string Name => "tokenize";
    public override string Summary => "Show the token ids and string tokens of texts.";
    public override string Details => """
        With --model, the ids are what TransformerLens's to_tokens gives for that model (BOS by its default_prepend_bos);
        with --tokenizer, BOS is prepended when the tokenizer itself adds one (Llama 2, Mistral, Llama 3), not otherwise.
        Every token is shown (no n_ctx truncation).
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Args("TEXT", "the texts to tokenize"),
        Opt.Value("model", "M", "gpt2 (default), gpt2-small, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, a model folder or a Hub repo id"),
        Opt.Value("tokenizer", "PATH", "a folder laid out like a model repository, or one tokenizer file (tokenizer.json, tokenizer.model, vocab.json)"),
        Opt.Value("texts-file", "F", "a JSON array of strings to tokenize instead of TEXT arguments"),
        Opt.Flag("no-bos", "never prepend the BOS token (TransformerLens prepend_bos=False)"),
        Opt.Flag("json", "print [{\"text\", \"ids\", \"str_tokens\"}] instead of tables"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string? model = args.Option("model");
        string? tokenizerPath = args.Option("tokenizer");
        string? textsFile = args.Option("texts-file");
        bool noBos = args.Flag("no-bos");
        bool json = args.Flag("json");
        args.RejectUnknown();
        if (model is not null && tokenizerPath is not null) throw new CliUsageException("give --model or --tokenizer, not both.");
        if (textsFile is not null && args.Positionals.Count > 0) throw new CliUsageException("give TEXT arguments or --texts-file, not both.");
        var texts = textsFile is not null ? ReadTexts(textsFile) : args.Positionals;
        if (texts.Count == 0) throw new CliUsageException("give at least one TEXT to tokenize (or --texts-file F).");

        var (tokenizer, defaultBos) = tokenizerPath is not null
            ? FromTokenizer(tokenizerPath)
            : FromModel(model ?? "gpt2", stderr);
        bool bos = defaultBos && !noBos;
        var results = texts
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

    private static (ITokenizer, bool) FromTokenizer(string path)
    {
        var tokenizer = TokenizerLoader.FromPath(path);
        return (tokenizer, tokenizer.PrependsBos);
    }

    // TransformerLens's to_tokens: the model's tokenizer and its default_prepend_bos (from the family's converter).
    private static (ITokenizer, bool) FromModel(string model, TextWriter stderr)
    {
        if (TokenizerLoader.Gpt2ModelNames.Contains(model, StringComparer.OrdinalIgnoreCase)) return (Gpt2Tokenizer.Default, true);
        string folder = Directory.Exists(model) ? model
            : DownloadDisplay.RunAsync(stderr, p => Task.Run(() => PretrainedSource.ResolveFolder(model, new LoadOptions { Progress = p })))
                .GetAwaiter().GetResult();
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) return (TokenizerLoader.FromPath(folder), true);   // a bare tokenizer folder: TransformerLens's default is to prepend
        var hf = JsonInput.ParseFileNode(configPath) as JsonObject
            ?? throw new SharpLensException($"{configPath} must hold a JSON object (the model's config).");
        var cfg = ModelFamilies.ForConfig(hf, configPath).CreateConfig(hf, Path.GetFileName(Path.TrimEndingDirectorySeparator(folder)));
        // The tokenizer the model itself would use (GPT-2-vocabulary folders: the built-in GPT-2 BPE, files or not).
        var tokenizer = TokenizerLoader.ForModelFolder(folder, cfg) ?? TokenizerLoader.FromPath(folder);
        return (tokenizer, cfg.DefaultPrependBos);
    }

    // A JSON array of strings, so texts starting with '-' or holding newlines need no shell quoting tricks.
    private static List<string> ReadTexts(string path)
    {
        if (!File.Exists(path)) throw new SharpLensException($"--texts-file: file not found: {path}");
        if (JsonInput.ParseFileNode(path) is not JsonArray array)
            throw new SharpLensException($"--texts-file {path} must hold a JSON array of strings, e.g. [\"Hello\", \"-x\"].");
        var texts = new List<string>(array.Count);
        for (int i = 0; i < array.Count; i++)
            texts.Add(array[i] is JsonValue v && v.TryGetValue(out string? s) ? s
                : throw new SharpLensException($"--texts-file {path}: element {i} is {array[i]?.ToJsonString() ?? "null"}, not a string."));
        // A file without texts is bad input (exit 1), not a usage mistake.
        if (texts.Count == 0) throw new SharpLensException($"--texts-file {path} holds an empty array: give at least one string, e.g. [\"Hello\"].");
        return texts;
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
