using System.CommandLine;
using System.Text.Json;
using System.Text.RegularExpressions;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Commands;

/// <summary>
/// <c>sharplens run</c>: runs a model with every hook cached and writes logits, tokens and activations under their
/// TransformerLens names to one safetensors file — the bridge to Python tools.
/// </summary>
internal sealed class RunCommand : CliCommand
{
    public override string Name => "run";
    public override string Summary => "Run a model and export logits + every cached activation to safetensors.";
    public override IReadOnlyList<Symbol> Symbols { get; } =
    [
        Opt.Value("model", "<name|dir>", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        Opt.Value("tokens-file", "tokens.json", "JSON array of arrays of token ids (all the same length)"),
        Opt.Many("prompt", "TEXT", "text prompt (repeatable; padded on the right when lengths differ)"),
        Opt.Value("out", "acts.safetensors", "the safetensors file to write", required: true),
        Opt.Flag("no-processing", "load without TransformerLens's weight processing"),
        Opt.Value("names", "REGEX", "only cache hook names matching this regular expression"),
        Opt.Flag("no-bos", "do not prepend the BOS token to --prompt texts"),
        Opt.Many("sae", "DIR|org/repo/path", "splice this SAE in at its hook (repeatable; SAELens folder, Gemma Scope params.npz, or on the Hub)"),
        Opt.Many("sae-hook", "NAME", "the hook of each --sae, in order (overrides its config; needed for Gemma Scope outside its repo layout)"),
        Opt.Flag("sae-error-term", "add each SAE's reconstruction error so the output is unchanged (SAELens's use_error_term)"),
    ];

    public override string? Details => """
        With --sae the model runs as SAELens's HookedSAETransformer with the SAEs spliced in: each SAE's hook is
        replaced by <hook>.hook_sae_input, hook_sae_acts_pre, hook_sae_acts_post, hook_sae_recons, [hook_sae_error,]
        hook_sae_output, and blocks.L.mlp.hook_in is cached too.
        """;

    protected override Task<int> ExecuteAsync(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string modelName = args.Required("model");
        string outPath = args.Required("out");
        string? tokensFile = args.Option("tokens-file");
        var prompts = args.Options("prompt");
        bool noProcessing = args.Flag("no-processing");
        bool noBos = args.Flag("no-bos");
        string? namesPattern = args.Option("names");
        var saeLocations = args.Options("sae");
        var saeHooks = args.Options("sae-hook");
        bool errorTerm = args.Flag("sae-error-term");
        args.RejectUnknown();
        if (saeLocations.Count == 0 && (saeHooks.Count > 0 || errorTerm))
            throw new CliUsageException("--sae-hook and --sae-error-term need --sae.");
        if ((tokensFile is null) == (prompts.Count == 0))
            throw new CliUsageException("give exactly one of --tokens-file or --prompt.");
        Regex? names = null;
        if (namesPattern is not null)
        {
            try { names = new Regex(namesPattern, RegexOptions.CultureInvariant); }
            catch (ArgumentException e) { throw new CliUsageException($"--names is not a valid regular expression: {e.Message}"); }
        }
        long[][]? ids = tokensFile is null ? null : ReadTokensFile(tokensFile);

        using var model = ModelLoading.Load(modelName, stderr, process: !noProcessing, ModelLoading.Revision(args));
        var saes = SaeLoading.Load(saeLocations, saeHooks, stderr);
        try
        {
            foreach (var sae in saes) model.AddSae(sae, errorTerm);
            Export(model, modelName, outPath, ids, prompts, noBos, noProcessing, names, namesPattern, saes, errorTerm, stdout);
        }
        finally
        {
            model.ResetSaes();
            foreach (var s in saes) s.Dispose();
        }
        return Task.FromResult(0);
    }

    private static void Export(HookedTransformer model, string modelName, string outPath, long[][]? ids, IReadOnlyList<string> prompts, bool noBos,
        bool noProcessing, Regex? names, string? namesPattern, List<SparseAutoencoder> saes, bool errorTerm, TextWriter stdout)
    {
        using var scope = NewDisposeScope();
        Tensor tokens; Tensor? mask = null;
        if (ids is not null)
        {
            tokens = tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length], ScalarType.Int64);
        }
        else
        {
            var batch = model.ToTokens(prompts, prependBos: !noBos);
            tokens = batch.Tokens; mask = batch.AttentionMask;
        }
        var (logits, cache) = model.RunWithCache(tokens, names is null ? null : names.IsMatch, attentionMask: mask);
        using (cache)
        {
            if (names is not null && cache.Count == 0)
                throw new SharpLensException($"--names '{namesPattern}' matches no hook point. Hook names look like 'blocks.0.attn.hook_pattern'.");
            var tensors = new List<KeyValuePair<string, Tensor>> { new("logits", logits), new("tokens", tokens) };
            tensors.AddRange(cache);
            var metadata = new Dictionary<string, string>
            {
                ["model"] = modelName, ["processing"] = noProcessing ? "none" : "fold_ln,center_writing_weights,center_unembed,fold_value_biases",
                ["producer"] = "SharpLens",
            };
            if (saes.Count > 0)
            {
                metadata["saes"] = string.Join(",", saes.Select(s => s.HookName));
                metadata["sae_error_term"] = errorTerm ? "true" : "false";
            }
            SafetensorsWriter.Write(outPath, tensors, metadata);
            stdout.WriteLine($"wrote {tensors.Count} tensors ({cache.Count} activations, logits [{string.Join(", ", logits.shape)}]) to {outPath}");
        }
    }

    /// <summary>Reads a JSON array of equally long arrays of token ids.</summary>
    internal static long[][] ReadTokensFile(string path)
    {
        if (!File.Exists(path)) throw new SharpLensException($"Tokens file '{path}' does not exist.");
        long[][] ids;
        using (var doc = JsonInput.ParseFile(path))
        {
            const string expected = "expected a JSON array of arrays of token ids, e.g. [[50256, 15496, 11]]";
            if (doc.RootElement.ValueKind != JsonValueKind.Array) throw new SharpLensException($"{path}: {expected}; got a {doc.RootElement.ValueKind}.");
            ids = doc.RootElement.EnumerateArray().Select((seq, i) => seq.ValueKind != JsonValueKind.Array
                ? throw new SharpLensException($"{path}: sequence {i} is a {seq.ValueKind}; {expected}.")
                : seq.EnumerateArray().Select((t, j) => t.ValueKind == JsonValueKind.Number && t.TryGetInt64(out long id) ? id
                    : throw new SharpLensException($"{path}: sequence {i}, position {j}: {Shorten(t.GetRawText())} is not an integer token id.")).ToArray()).ToArray();
        }
        if (ids.Length == 0) throw new SharpLensException($"{path}: holds no sequences; expected e.g. [[50256, 15496, 11]].");
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] is null || ids[i].Length == 0) throw new SharpLensException($"{path}: sequence {i} is empty.");
            if (ids[i].Length != ids[0].Length)
                throw new SharpLensException($"{path}: sequence {i} has {ids[i].Length} tokens but sequence 0 has {ids[0].Length}; all sequences must have the same length.");
        }
        return ids;
    }

    private static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
