using SharpLens.Loading.Hub;

namespace SharpLens.Loading;

/// <summary>A model SharpLens knows by name, or a Hugging Face repository given by id.</summary>
/// <param name="Name">Official name (<c>gpt2</c>), or the repo id itself for repositories outside the registry.</param>
/// <param name="RepoId">Hugging Face repository id, <c>org/name</c>.</param>
/// <param name="Aliases">Other accepted names (matched case-insensitively, like <see cref="Name"/>).</param>
/// <param name="Parameters">Human size such as <c>124M</c>, or <c>?</c> when unknown.</param>
/// <param name="TotalParameters">Every parameter of the Hugging Face checkpoint (embeddings, biases, LayerNorms), when known.</param>
/// <param name="NonEmbeddingParameters">TransformerLens's <c>n_params</c>: attention and MLP weight matrices only, when known.</param>
public sealed record ModelInfo(string Name, string RepoId, IReadOnlyList<string> Aliases, string Parameters,
    long? TotalParameters, long? NonEmbeddingParameters)
{
    /// <summary>True for rows of <see cref="ModelRegistry.All"/>; false for a repo id resolved as is.</summary>
    public bool IsOfficial { get; init; } = true;

    /// <summary>The Hugging Face repository is gated: downloading needs an accepted licence and a token (<c>HF_TOKEN</c>).</summary>
    public bool Gated { get; init; }
}

/// <summary>
/// Official model names → Hugging Face repositories, one row per model. Other model families add rows with
/// <see cref="Register"/>; any <c>org/name</c> repo id is accepted as is.
/// </summary>
public static class ModelRegistry
{
    private static readonly List<ModelInfo> Rows =
    [
        Gpt2("gpt2", "openai-community/gpt2", "124M", layers: 12, dModel: 768, aliases: ["gpt2-small"]),
        Gpt2("gpt2-medium", "openai-community/gpt2-medium", "355M", layers: 24, dModel: 1024),
        Gpt2("gpt2-large", "openai-community/gpt2-large", "774M", layers: 36, dModel: 1280),
        Gpt2("gpt2-xl", "openai-community/gpt2-xl", "1.5B", layers: 48, dModel: 1600),
        Gpt2("distilgpt2", "distilbert/distilgpt2", "82M", layers: 6, dModel: 768),
        .. LlamaFamily.RegistryRows,
        // Gemma (gated), Phi-3, OLMo-2: totals are the checkpoints' parameter counts; n_params as TransformerLens counts it.
        new("gemma-2b", "google/gemma-2b", [], "2.5B", 2_506_172_416, 2_113_929_216) { Gated = true },
        new("gemma-7b", "google/gemma-7b", [], "8.5B", 8_537_680_896, 7_751_073_792) { Gated = true },
        new("gemma-2-2b", "google/gemma-2-2b", [], "2.6B", 2_614_341_888, 2_146_959_360) { Gated = true },
        new("gemma-2-2b-it", "google/gemma-2-2b-it", [], "2.6B", 2_614_341_888, 2_146_959_360) { Gated = true },
        new("gemma-2-9b", "google/gemma-2-9b", [], "9.2B", 9_241_705_984, 8_940_158_976) { Gated = true },
        new("gemma-2-9b-it", "google/gemma-2-9b-it", [], "9.2B", 9_241_705_984, 8_940_158_976) { Gated = true },
        new("gemma-2-27b", "google/gemma-2-27b", [], "27.2B", 27_227_128_320, 26_914_848_768) { Gated = true },
        new("gemma-2-27b-it", "google/gemma-2-27b-it", [], "27.2B", 27_227_128_320, 26_914_848_768) { Gated = true },
        new("gemma-3-270m", "google/gemma-3-270m", [], "270M", 268_098_176, 117_964_800) { Gated = true },
        new("gemma-3-1b-pt", "google/gemma-3-1b-pt", [], "1.0B", 999_885_952, 743_768_064) { Gated = true },
        new("gemma-3-1b-it", "google/gemma-3-1b-it", [], "1.0B", 999_885_952, 743_768_064) { Gated = true },
        new("Phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct", ["phi-3"], "3.8B", 3_821_079_552, 3_623_878_656),
        new("OLMo-2-0425-1B", "allenai/OLMo-2-0425-1B", ["olmo-2-1b"], "1.5B", 1_484_916_736, 1_073_741_824),
        new("OLMo-2-1124-7B", "allenai/OLMo-2-1124-7B", ["olmo-2-7b"], "7.3B", 7_298_617_344, 6_476_005_376),
        .. GptNeoXFamily.RegistryRows, .. GptJFamily.RegistryRows, .. GptNeoFamily.RegistryRows, .. OptFamily.RegistryRows,
    ];

    /// <summary>Every registered model, in registration order.</summary>
    public static IReadOnlyList<ModelInfo> All
    {
        get { lock (Rows) return [.. Rows]; }
    }

    /// <summary>Adds a row (a new model family's checkpoints). Its name and aliases must not be taken already.</summary>
    public static void Register(ModelInfo info)
    {
        HubNames.ValidRepoId(info.RepoId);
        lock (Rows)
        {
            var taken = Rows.SelectMany(Names).ToHashSet(StringComparer.OrdinalIgnoreCase);
            foreach (var n in Names(info))
                if (taken.Contains(n)) throw new SharpLensException($"model name '{n}' is already registered.");
            Rows.Add(info);
        }
    }

    /// <summary>
    /// An official name or alias (case-insensitive), or a repo id: the registry row when it is one of ours, else the
    /// id as is. Anything else is an error listing the closest supported names (all of them would be ~150 lines' worth).
    /// </summary>
    public static ModelInfo Resolve(string nameOrRepo)
    {
        var rows = All;
        var byName = rows.FirstOrDefault(r => Names(r).Contains(nameOrRepo, StringComparer.OrdinalIgnoreCase));
        if (byName is not null) return byName;
        if (nameOrRepo.Contains('/'))
        {
            HubNames.ValidRepoId(nameOrRepo);
            return rows.FirstOrDefault(r => r.RepoId.Equals(nameOrRepo, StringComparison.OrdinalIgnoreCase))
                ?? new ModelInfo(nameOrRepo, nameOrRepo, [], "?", null, null) { IsOfficial = false };
        }
        var names = rows.SelectMany(Names).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        const int shown = 8;
        throw new SharpLensException($"unknown model '{nameOrRepo}'. Supported: " +
            string.Join(", ", NameSuggestions.Closest(nameOrRepo, names, shown)) +
            $" (the {shown} closest of {names.Count} names and aliases; 'sharplens models' / ModelRegistry.All list every model), " +
            "or a Hugging Face repo id such as 'openai-community/gpt2'.");
    }

    private static IEnumerable<string> Names(ModelInfo r) => r.Aliases.Prepend(r.Name);

    /// <summary>A GPT-2-shaped row: vocabulary 50257, context 1024, MLP width 4·d_model; counts derived from the shape.</summary>
    internal static ModelInfo Gpt2(string name, string repo, string parameters, int layers, int dModel, string[]? aliases = null)
    {
        const long vocab = 50257, context = 1024;
        long d = dModel;
        long perLayer = 12 * d * d + 13 * d; // qkv + out (4d²+4d), MLP (8d²+5d), two LayerNorms (4d)
        long total = vocab * d + context * d + layers * perLayer + 2 * d;
        long nonEmbedding = layers * 12 * d * d; // TransformerLens n_params: W_Q,K,V,O and W_in,W_out
        return new ModelInfo(name, repo, aliases ?? [], parameters, total, nonEmbedding);
    }
}
