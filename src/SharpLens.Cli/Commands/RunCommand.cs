using System.CommandLine;
using System.Text.Json;
using System.Text.RegularExpressions;
using SharpLens.Analysis;
using SharpLens.Loading;
using SharpLens.Model;
using SharpLens.Sae;
using TorchSharp;
using static TorchSharp.torch;
using SharpLens.Tokenization;

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
        Opt.Value("model", "M", "official name, Hugging Face repo id or local folder", required: true),
        ModelLoading.RevisionOption(),
        ModelLoading.DtypeOption(),
        ModelLoading.NoWeightsCacheOption(),
        Opt.Value("tokens-file", "tokens.json", "JSON array of arrays of token ids (all the same length)"),
        Opt.Many("prompt", "TEXT", "text prompt (repeatable; padded on the right when lengths differ)"),
        Opt.Value("out", "acts.safetensors", "the safetensors file to write", required: true),
        Opt.Flag("no-processing", "load without TransformerLens's weight processing"),
        Opt.Value("names", "REGEX", "only cache hook names matching this regular expression"),
        Opt.Flag("no-bos", "do not prepend the BOS token to --prompt texts"),
        Opt.Many("sae", "DIR|org/repo/path", "splice this SAE in at its hook (repeatable; SAELens folder, Gemma Scope params.npz, or on the Hub)"),
        Opt.Many("sae-hook", "NAME", "the hook of each --sae, in order (overrides its config; needed for Gemma Scope outside its repo layout)"),
        Opt.Choice("backward", "logit-diff", "also write every activation's gradient <hook>_grad of this metric (mean logit difference at the last position)", ["logit-diff"]),
        Opt.Value("answers", "answers.json", "[[correct_id, incorrect_id], ...], one pair per prompt (for --backward)"),
        Opt.Flag("sae-error-term", "add each SAE's reconstruction error so the output is unchanged (SAELens's use_error_term)"),
        Opt.Value("stop-at-layer", "N", "run and export only blocks before N (negative counts from the end); writes 'residual' (the stream entering block N) instead of logits"),
        Opt.Value("pos-slice", "SLICE", "export only these positions of each activation: -1, a:b[:step] (e.g. -4:) or a list 0,3,-1 (TransformerLens's pos_slice)"),
        Opt.Choice("cache-dtype", "float32|bfloat16|float16", "store activations in this dtype (bfloat16/float16 halve the file)", ["float32", "bfloat16", "float16"]),
    ];

    public override string? Details => """
        With --sae the model runs as SAELens's HookedSAETransformer with the SAEs spliced in: each SAE's hook is
        replaced by <hook>.hook_sae_input, hook_sae_acts_pre, hook_sae_acts_post, hook_sae_recons, [hook_sae_error,]
        hook_sae_output, and blocks.L.mlp.hook_in is cached too.
        Activations are streamed: each is written to the file when its hook fires and then freed, so the run needs
        memory for the model and one block's activations, not the whole cache. --backward keeps the cache in memory
        (the gradient pass needs every activation anyway).
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
        string? backward = args.Option("backward"), answersFile = args.Option("answers");
        var dtype = ModelLoading.Dtype(args);
        var cacheOptions = CacheOptions.From(args);
        args.RejectUnknown();
        if (backward is not null && cacheOptions.StopAtLayer is not null)
            throw new CliUsageException("--stop-at-layer cannot go with --backward: the gradient metric needs the logits.");
        if ((backward is null) != (answersFile is null))
            throw new CliUsageException("--backward and --answers go together: --backward logit-diff --answers answers.json.");
        long[][]? answers = answersFile is null ? null : ReadTokensFile(answersFile);
        if (answers is not null && answers[0].Length != 2)
            throw new SharpLensException($"{answersFile}: each entry must be [correct_id, incorrect_id], got {answers[0].Length} ids.");
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
        AtomicFile.RequireFolders(outPath);

        using var model = ModelLoading.Load(modelName, stderr, process: !noProcessing, ModelLoading.Revision(args), dtype,
            ModelLoading.UseWeightsCache(args));
        var saes = SaeLoading.Load(saeLocations, saeHooks, stderr);
        try
        {
            foreach (var sae in saes) model.AddSae(sae, errorTerm);
            Export(model, modelName, outPath, ids, prompts, noBos, noProcessing, names, namesPattern, saes, errorTerm, answers, answersFile, tokensFile, cacheOptions, stdout);
        }
        finally
        {
            model.ResetSaes();
            foreach (var s in saes) s.Dispose();
        }
        return Task.FromResult(0);
    }

    private static void Export(HookedTransformer model, string modelName, string outPath, long[][]? ids, IReadOnlyList<string> prompts, bool noBos,
        bool noProcessing, Regex? names, string? namesPattern, List<SparseAutoencoder> saes, bool errorTerm, long[][]? answers, string? answersFile,
        string? tokensFile, CacheOptions options, TextWriter stdout)
    {
        using var scope = NewDisposeScope();
        Tensor tokens; Tensor? mask = null;
        if (ids is not null)
        {
            tokens = tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length], ScalarType.Int64);
            model.CheckTokens(tokens, source: tokensFile); // the model's own check, with the file named
        }
        else
        {
            var batch = model.ToTokens(prompts, prependBos: !noBos);
            tokens = batch.Tokens; mask = batch.AttentionMask;
        }
        Func<Tensor, Tensor>? metric = null;
        if (answers is not null)
        {
            if (answers.Length != tokens.shape[0])
                throw new SharpLensException($"--answers has {answers.Length} pairs but there are {tokens.shape[0]} prompts; give one [correct_id, incorrect_id] per prompt.");
            if (answers.SelectMany(a => a).FirstOrDefault(id => id < 0 || id >= model.Config.DVocabOut, -1) is var bad and not -1)
                throw new SharpLensException($"--answers {answersFile}: token id {bad} is outside the vocabulary [0, {model.Config.DVocabOut}).");
            var answerTensor = tensor(answers.SelectMany(a => a).ToArray(), [answers.Length, 2], ScalarType.Int64);
            var finalPositions = mask is null ? null : mask.sum(1) - 1; // right padding: each prompt's last real token
            metric = l => LogitDiff.Mean(l, answerTensor, finalPositions);
        }
        var metadata = new Dictionary<string, string>
        {
            ["model"] = modelName, ["processing"] = noProcessing ? "none" : "fold_ln,center_writing_weights,center_unembed,fold_value_biases",
            ["producer"] = "SharpLens", ["dtype"] = ModelDtype.Name(model.Dtype),
        };
        if (saes.Count > 0)
        {
            metadata["saes"] = string.Join(",", saes.Select(s => s.HookName));
            metadata["sae_error_term"] = errorTerm ? "true" : "false";
        }
        if (options.StopAtLayer is { } stop) metadata["stop_at_layer"] = stop.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (options.PosSliceText is { } sliceText) metadata["pos_slice"] = sliceText;
        if (options.CacheDtypeName is { } dtypeName) metadata["cache_dtype"] = dtypeName;
        if (metric is null)
        {
            // Streamed: memory for one block's activations at a time, however many hooks are exported.
            var written = model.RunWithCacheToFile(tokens, outPath, names is null ? null : names.IsMatch, mask, options.StopAtLayer, options.PosSlice,
                options.CacheDtype, metadata);
            stdout.WriteLine($"wrote {written.ActivationNames.Count + 2} tensors ({written.ActivationNames.Count} activations, " +
                $"{written.OutputName} [{string.Join(", ", written.OutputShape)}]) to {outPath}");
            return;
        }
        var (logits, cache) = model.RunWithCache(tokens, names is null ? null : names.IsMatch, attentionMask: mask,
            includeBackward: true, metric: metric, posSlice: options.PosSlice, cacheDtype: options.CacheDtype);
        using (cache)
        {
            if (names is not null && cache.Count == 0)
                throw new SharpLensException($"--names {TextEncoding.Excerpt(namesPattern!)} matches no hook point. Hook names look like 'blocks.0.attn.hook_pattern'.");
            var tensors = new List<KeyValuePair<string, Tensor>> { new("logits", logits), new("tokens", tokens) };
            tensors.AddRange(cache);
            metadata["backward"] = "logit-diff";
            metadata["metric"] = metric(logits).item<float>().ToString("R", System.Globalization.CultureInfo.InvariantCulture);
            SafetensorsWriter.Write(outPath, tensors, metadata);
            stdout.WriteLine($"wrote {tensors.Count} tensors ({cache.Count} activations, logits [{string.Join(", ", logits.shape)}]) to {outPath}");
        }
    }

    /// <summary>--stop-at-layer, --pos-slice and --cache-dtype, parsed.</summary>
    internal sealed record CacheOptions(int? StopAtLayer, Slice PosSlice, string? PosSliceText, ScalarType? CacheDtype, string? CacheDtypeName)
    {
        public static CacheOptions From(CliArgs args)
        {
            int? stop = null;
            if (args.Option("stop-at-layer") is { } s)
                stop = int.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out int v) ? v
                    : throw new CliUsageException($"option --stop-at-layer must be an integer layer (negative counts from the end), got {TextEncoding.Excerpt(s)}.");
            string? sliceText = args.Option("pos-slice");
            Slice slice = default;
            if (sliceText is not null)
            {
                try { slice = Slice.Parse(sliceText); }
                catch (SharpLensException e) { throw new CliUsageException($"option --pos-slice: {e.Message}"); }
            }
            string? dtypeName = args.Option("cache-dtype");
            ScalarType? dtype = dtypeName switch
            {
                null => null,
                "float32" => ScalarType.Float32,
                "bfloat16" => ScalarType.BFloat16,
                "float16" => ScalarType.Float16,
                _ => throw new CliUsageException($"option --cache-dtype must be float32, bfloat16 or float16, got {TextEncoding.Excerpt(dtypeName)}."),
            };
            return new CacheOptions(stop, slice, sliceText, dtype, dtypeName);
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
