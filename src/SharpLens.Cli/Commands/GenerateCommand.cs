using SharpLens.Model;
using SharpLens.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens generate</c>: continues a prompt (greedy or sampled), with the key/value cache by default.</summary>
internal sealed class GenerateCommand : ICliCommand
{
    public string Name => "generate";
    public string Summary => "Continue a prompt with greedy decoding or sampling.";
    public string Usage => """
        usage: sharplens generate --model M (--prompt TEXT | --tokens 1,2,3) [--max-new-tokens 20] [--greedy]
                                  [--temperature 1.0] [--top-k K] [--top-p P] [--freq-penalty F] [--seed S]
                                  [--stop-at-eos] [--no-kv-cache]
        """;
    public IReadOnlySet<string> Flags { get; } = new HashSet<string> { "greedy", "stop-at-eos", "no-kv-cache" };

    public Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelName = args.Required("model");
        string? prompt = args.Option("prompt");
        string? ids = args.Option("tokens");
        var o = new GenerateOptions
        {
            MaxNewTokens = args.Int("max-new-tokens", 20, min: 0),
            DoSample = !args.Flag("greedy"),
            Temperature = Double(args, "temperature", 1.0),
            TopK = args.Option("top-k") is null ? null : args.Int("top-k", 0, min: 1),
            TopP = args.Option("top-p") is null ? null : Double(args, "top-p", 1.0),
            FreqPenalty = Double(args, "freq-penalty", 0),
            Seed = args.Option("seed") is null ? null : args.Int("seed", 0),
            StopAtEos = args.Flag("stop-at-eos"),
            UseKvCache = !args.Flag("no-kv-cache"),
        };
        args.RejectUnknown();
        if ((prompt is null) == (ids is null)) throw new CliUsageException("give exactly one of --prompt or --tokens.");

        using var model = ModelLoading.Load(modelName, stderr);
        using var scope = NewDisposeScope();
        Tensor input;
        if (prompt is not null) input = model.ToTokens(prompt).Tokens;
        else
        {
            long[] parsed;
            try { parsed = ids!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray(); }
            catch (FormatException) { throw new CliUsageException($"--tokens must be comma-separated integers, got '{ids}'."); }
            input = tensor(parsed, [1, parsed.Length]);
        }
        var output = model.Generate(input, o);
        var all = output[0].data<long>().ToArray();
        if (model.Tokenizer is { } tk)
        {
            stdout.WriteLine(TextEncoding.TokensToString(tk, all.Select(x => (int)x)));
            stderr.WriteLine($"[sharplens] new tokens: {string.Join(", ", all.Skip((int)input.shape[1]))}");
        }
        else stdout.WriteLine(string.Join(", ", all));
        return Task.FromResult(0);
    }

    private static double Double(CliArgs args, string name, double dflt)
    {
        var s = args.Option(name);
        if (s is null) return dflt;
        return double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v)
            ? v : throw new CliUsageException($"option --{name} must be a number, got '{s}'.");
    }
}
