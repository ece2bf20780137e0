using System.Text.Json.Nodes;
using SharpLens.Loading;
using static TorchSharp.torch;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Loads a pretrained model and processes its weights like TransformerLens's <c>from_pretrained</c>
    /// (fold LayerNorm, centre writing weights, centre unembed, fold value biases — each switchable in
    /// <paramref name="options"/>). <paramref name="nameOrPath"/> is a local folder holding <c>config.json</c> and
    /// weights, an official name (<c>gpt2</c>, <c>gpt2-small</c>, ...) or a Hugging Face repo id. Processing is
    /// computed in float32; the result is stored in <paramref name="dtype"/> (float32, bfloat16 or float16).
    /// </summary>
    public static HookedTransformer FromPretrained(string nameOrPath, ProcessingOptions? options = null, LoadOptions? load = null,
        ScalarType dtype = ScalarType.Float32)
    {
        ModelDtype.Check(dtype);
        load ??= new LoadOptions();
        string folder = PretrainedSource.ResolveFolder(nameOrPath, load);
        return FromFolder(folder, options ?? ProcessingOptions.Default, Path.GetFileName(Path.TrimEndingDirectorySeparator(nameOrPath)), dtype,
            load.UseWeightsCache);
    }

    /// <summary>Loads a pretrained model without any weight processing (TransformerLens's <c>from_pretrained_no_processing</c>), in <paramref name="dtype"/>.</summary>
    public static HookedTransformer FromPretrainedNoProcessing(string nameOrPath, LoadOptions? load = null, ScalarType dtype = ScalarType.Float32) =>
        FromPretrained(nameOrPath, ProcessingOptions.None, load, dtype);

    /// <summary>
    /// Loads from a folder with a Hugging Face <c>config.json</c> and weights; parameters are stored in
    /// <paramref name="dtype"/> (float32, bfloat16 or float16) after processing in float32. When nothing needs
    /// converting (no processing, weights stored in <paramref name="dtype"/>, safetensors) the parameters are views of
    /// the memory-mapped files. Otherwise, with <paramref name="useWeightsCache"/> (and unless
    /// <c>SHARPLENS_WEIGHTS_CACHE=0</c>), the converted parameters come from, or are written to, the processed-weights
    /// cache (<see cref="WeightsCache"/>). <paramref name="options"/> defaults to TransformerLens's processing
    /// (<see cref="ProcessingOptions.Default"/>), as for <see cref="FromPretrained"/>.
    /// </summary>
    public static HookedTransformer FromFolder(string folder, ProcessingOptions? options = null, string? modelName = null, ScalarType dtype = ScalarType.Float32,
        bool useWeightsCache = true) =>
        LoadFolder(folder, options ?? ProcessingOptions.Default, modelName, dtype, useWeightsCache ? WeightsCache.FromEnvironment() : null);

    /// <summary><see cref="FromFolder"/> with an explicit weights cache (null = none).</summary>
    internal static HookedTransformer LoadFolder(string folder, ProcessingOptions options, string? modelName, ScalarType dtype, WeightsCache? cache)
    {
        ModelDtype.Check(dtype);
        if (!Directory.Exists(folder))
            throw new SharpLensException($"Model folder '{folder}' does not exist.");
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath))
            throw new SharpLensException($"Model folder '{folder}' has no config.json (found: {Listing(folder)}). " +
                "A model folder needs config.json plus model.safetensors, model.safetensors.index.json or pytorch_model.bin.");
        var hf = JsonInput.ParseFileNode(configPath) as JsonObject
            ?? throw new SharpLensException($"{configPath}: must hold a JSON object of model settings.");
        var family = ModelFamilies.ForConfig(hf, configPath);
        HookedTransformerConfig cfg;
        try { cfg = family.CreateConfig(hf, modelName ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(folder))); }
        catch (SharpLensException e) when (!e.Message.Contains(configPath, StringComparison.Ordinal))
        {
            throw new SharpLensException($"{configPath}: {e.Message}", e);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException or ArgumentException or KeyNotFoundException)
        {
            // A family reading a field with the wrong JSON type (e.g. GetValue<int> on a string): still the file's fault.
            throw new SharpLensException($"{configPath}: a setting has the wrong type or value ({e.Message}).", e);
        }
        cfg = cfg.WithDtype(dtype);
        (options, var warnings) = options.For(cfg);

        // A load that has to convert weights (process them, change their dtype, read a .bin) goes through the
        // processed-weights cache: a hit maps a file holding exactly the parameters this load would compute.
        bool process = options.Any;
        // The weights' stored types, read from the safetensors headers at most once per load (not at all on a
        // processed load's cache hit).
        var stored = new Lazy<HashSet<ScalarType>?>(() => StoredFloatTypes(folder, family));
        bool convert = NeedsConversion(folder, process, dtype, stored);
        var key = cache is not null && convert ? WeightsCacheKey.For(folder, cfg, options, dtype) : null;
        var cacheUse = WeightsCacheUse.NotUsed;
        var notes = new List<string>(warnings);
        HookedTransformer? model = null;
        if (key is not null)
        {
            using var file = cache!.TryOpen(key, out string? problem);
            if (problem is not null) notes.Add($"weights cache: deleted an invalid cache file and rebuilt it ({problem})");
            if (file is not null)
            {
                try
                {
                    using var scope = NewDisposeScope();
                    var processed = WeightProcessing.ProcessedConfig(cfg, options);
                    model = new HookedTransformer(processed, FromCacheLayout(processed, file), keepViews: true);
                    cacheUse = WeightsCacheUse.Hit;
                }
                catch (SharpLensException e)
                {
                    cache.Remove(key);
                    notes.Add($"weights cache: deleted a cache file that does not fit this model and rebuilt it ({e.Message})");
                }
            }
        }
        if (model is null)
        {
            model = LoadCheckpoint(folder, family, cfg, options, process, stored.Value, mapped: !convert);
            if (key is not null)
            {
                cacheUse = WeightsCacheUse.NotWritten;
                try
                {
                    using var layoutScope = NewDisposeScope();
                    if (cache!.Store(key, model.CacheLayout())) cacheUse = WeightsCacheUse.Written;
                    else notes.Add($"weights cache: not written: the model is larger than the cache's size bound of {cache.MaxBytes >> 20} MB (SHARPLENS_WEIGHTS_CACHE_MAX_GB)");
                }
                catch (SharpLensException e) { notes.Add($"weights cache: not written ({e.Message})"); }
            }
        }
        model.WeightsCacheUse = cacheUse;
        warnings = notes;
        model.LoadWarnings = warnings;
        // GPT-2-vocabulary models use the built-in (fast, offline) GPT-2 BPE; others the files shipped with the checkpoint.
        try
        {
            model.Tokenizer = Tokenization.TokenizerLoader.ForModelFolder(folder, cfg);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>
    /// Reads the checkpoint, converts it to TransformerLens names and processes it (the path without a cache hit).
    /// <paramref name="mapped"/>: the parameters stay views of the mapped safetensors (nothing to convert), so the model
    /// multiplies with them where they lie (<see cref="Components.QkvProjection"/>) rather than fusing q/k/v into a copy.
    /// </summary>
    private static HookedTransformer LoadCheckpoint(string folder, IModelFamily family, HookedTransformerConfig cfg, ProcessingOptions options, bool process,
        HashSet<ScalarType>? storedTypes, bool mapped)
    {
        HookedTransformer model;
        using (var scope = NewDisposeScope())
        {
            // Processing float32 weights reads them into fresh memory and updates them in place (about one checkpoint of
            // memory). Weights stored in another type stay mapped: converting them to float32 makes the fresh copies.
            // Without processing the weights stay mapped, and are used as they are when their dtype is the model's.
            bool f32 = storedTypes is { } types && types.All(t => t == ScalarType.Float32);
            var raw = Checkpoint.LoadStateDict(folder, writable: process && f32, skip: family.IsUnused);
            Dictionary<string, Tensor> sd;
            try { sd = family.ConvertWeights(raw, cfg); }
            catch (System.Runtime.InteropServices.ExternalException e)
            {
                // A native error while reshaping the weights the config describes (fuzzing found a Scalar conversion
                // overflow in Gemma's): the config and the weights do not go together.
                throw new SharpLensException($"{Path.Combine(folder, "config.json")}: the checkpoint's weights cannot be converted with this config " +
                    $"({e.Message.Split('\n')[0].Trim()}). Is config.json the one that belongs to these weights?", e);
            }
            var kept = sd.Values.ToHashSet(ReferenceEqualityComparer.Instance);
            foreach (var t in raw.Values.Where(t => !kept.Contains(t))) t.Dispose(); // handles the state dict no longer needs
            if (process)
            {
                // Process in float32 like TransformerLens, whatever the checkpoint stores (e.g. bf16).
                foreach (var (name, t) in sd.Where(kv => kv.Value.is_floating_point() && kv.Value.dtype != ScalarType.Float32).ToList())
                    sd[name] = t.to_type(ScalarType.Float32);
                (sd, cfg) = WeightProcessing.Process(sd, cfg, options, inputsAreScratch: true);
                // Store in the model's dtype one parameter at a time, freeing each float32 result as soon as it is converted
                // (peak: the float32 model plus one parameter, not plus the whole converted model).
                var converted = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
                foreach (var (name, t) in sd.Where(kv => kv.Value.is_floating_point() && kv.Value.dtype != cfg.Dtype).ToList())
                {
                    if (!converted.TryGetValue(t, out var c))
                    {
                        converted[t] = c = t.to_type(cfg.Dtype);
                        t.Dispose(); // the same tensor under another name finds its conversion above without touching it
                    }
                    sd[name] = c;
                }
            }
            model = new HookedTransformer(cfg, sd, keepViews: mapped); // stores cfg.Dtype; detaches what it keeps; the scope frees the intermediates
        }
        NativeMemory.Trim(); // hand the processing temporaries back to the OS
        return model;
    }

    /// <summary>
    /// Whether loading must compute new parameter tensors: processing, a floating-point weight stored in another dtype,
    /// or a <c>pytorch_model.bin</c> (read into memory). Otherwise the parameters are views of the mapped safetensors.
    /// </summary>
    private static bool NeedsConversion(string folder, bool process, ScalarType dtype, Lazy<HashSet<ScalarType>?> storedTypes)
    {
        if (Checkpoint.FindWeights(folder) is null) return false; // loading reports the missing weights
        return process || storedTypes.Value is not { } types || types.Any(t => t != dtype);
    }

    /// <summary>
    /// The floating-point types of the weights the model uses, from the safetensors headers (no data read); null for
    /// <c>pytorch_model.bin</c> checkpoints, which are read into memory whatever they hold.
    /// </summary>
    private static HashSet<ScalarType>? StoredFloatTypes(string folder, IModelFamily family)
    {
        string? weights = Checkpoint.FindWeights(folder);
        if (weights is null) return null;
        IEnumerable<string> files = [weights];
        if (weights.EndsWith("model.safetensors.index.json", StringComparison.Ordinal))
            files = Checkpoint.ReadWeightMap(weights).Values.Distinct().Select(s => Path.Combine(folder, s));
        else if (!weights.EndsWith(".safetensors", StringComparison.Ordinal)) return null;
        var types = new HashSet<ScalarType>();
        foreach (var path in files)
        {
            if (!File.Exists(path)) return null; // loading reports the missing shard
            using var f = SafetensorsFile.Open(path);
            foreach (var name in f.Names.Where(n => !family.IsUnused(n)))
                if (SafetensorsDtypes.TryGet(f.Info(name).Dtype, out var type, out _)
                    && type is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64)
                    types.Add(type);
        }
        return types;
    }

    /// <summary>How this model's load used the processed-weights cache (<see cref="Loading.WeightsCache"/>).</summary>
    public WeightsCacheUse WeightsCacheUse { get; private set; }

    /// <summary>
    /// Processing steps that loading skipped because they would change what this architecture computes (TransformerLens
    /// warns about the same ones): e.g. <c>center_unembed</c> with soft-capped logits. Empty when every requested step ran.
    /// </summary>
    public IReadOnlyList<string> LoadWarnings { get; private set; } = [];

    private static string Listing(string folder)
    {
        var names = Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Take(10).ToList();
        return names.Count == 0 ? "nothing" : string.Join(", ", names);
    }
}
