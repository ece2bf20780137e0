using System.CommandLine;
using SharpLens.Model;
using SharpLens.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Commands;

/// <summary><c>sharplens generate</c>: continues a prompt (greedy or sampled), with the key/value cache by default.</summary>
internal sealed class GenerateCommand : CliCommand
{
    public override string Name => "generate";
    public override string Summary => "Continue a prompt with greedy decoding or sampling.";
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("prompt", "TEXT", "the text to continue (or --tokens)"),
        Opt.Value("tokens", "1,2,3", "comma-separated token ids to continue (or --prompt)"),
        Opt.Value("max-new-tokens", "N", "tokens to generate (default 20)"),
        Opt.Flag("greedy", "always take the most likely token instead of sampling"),
        Opt.Value("temperature", "T", "sampling temperature (default 1.0)"),
        Opt.Value("top-k", "K", "sample only from the K most likely tokens"),
        Opt.Value("top-p", "P", "sample only from the smallest set of tokens with probability ≥ P"),
        Opt.Value("freq-penalty", "F", "subtract F × (count so far) from each token's logit (default 0)"),
        Opt.Value("seed", "S", "random seed for reproducible sampling"),
        Opt.Flag("stop-at-eos", "stop at the end-of-text token"),
        Opt.Flag("no-kv-cache", "recompute every position each step instead of caching keys and values"),
    ];

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
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
        var dtype = ModelLoading.Dtype(args);
        args.RejectUnknown();
        if ((prompt is null) == (ids is null)) throw new CliUsageException("give exactly one of --prompt or --tokens.");
        // Parsed before the model loads, so a mistake costs nothing and its error is the only output.
        long[]? parsed = null;
        if (ids is not null)
        {
            try { parsed = ids.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray(); }
            catch (Exception e) when (e is FormatException or OverflowException)
            {
                throw new CliUsageException($"--tokens must be comma-separated integers, got {TextEncoding.Excerpt(ids)}.");
            }
        }

        using var model = ModelLoading.Load(modelName, stderr, revision: ModelLoading.Revision(args), dtype: dtype,
            useWeightsCache: ModelLoading.UseWeightsCache(args));
        using var scope = NewDisposeScope();
        Tensor input;
        input = prompt is not null ? model.ToTokens(prompt).Tokens : tensor(parsed!, [1, parsed!.Length]);
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
            ? v : throw new CliUsageException($"option --{name} must be a number, got {TextEncoding.Excerpt(s)}.");
    }
}
