using System.CommandLine;
using SharpLens.Loading;
using SharpLens.Loading.Hub;
using Spectre.Console;
using SharpLens.Tokenization;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens models</c>: the official model names, their repositories, sizes and whether each is cached.</summary>
internal sealed class ModelsCommand(Func<HubOptions>? options = null) : CliCommand
{
    public override string Name => "models";
    public override string Summary => "List the supported model names, their sizes and whether they are cached.";
    public override string Details => """
        Lists the official names with their Hugging Face repository, parameter counts (total, and TransformerLens's
        n_params of the attention and MLP weights) and whether the model is in the cache (HF_HUB_CACHE / HF_HOME).
        """;
    public override IReadOnlyList<Symbol> Symbols { get; } = [];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        args.RejectUnknown();
        if (args.Positionals.Count > 0) throw new CliUsageException($"'models' takes no arguments, got {TextEncoding.Excerpt(args.Positionals[0])}.");
        string cacheDir = (options ?? HubOptions.FromEnvironment)().CacheDir;
        var console = CliConsole.Create(stdout);

        var table = new Table().AddColumns("Name", "Repository", "Parameters", "n_params (TL)", "Cached");
        foreach (var m in ModelRegistry.All)
        {
            bool cached = HubCache.IsCached(cacheDir, m.RepoId);
            table.AddRow(
                Markup.Escape(m.Aliases.Count == 0 ? m.Name : $"{m.Name} ({string.Join(", ", m.Aliases)})"),
                Markup.Escape(m.RepoId),
                Markup.Escape(m.Parameters),
                m.NonEmbeddingParameters is long n ? $"{n:N0}" : "?",
                cached ? "[green]yes[/]" : "no");
        }
        console.Write(table);
        stdout.WriteLine($"Cache: {cacheDir}. Any Hugging Face repo id (org/name) is accepted too.");
        return Task.FromResult(0);
    }
}
