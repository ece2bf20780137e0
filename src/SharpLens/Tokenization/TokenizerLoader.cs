namespace SharpLens.Tokenization;

/// <summary>Finds the tokenizer for a model name or a local model folder.</summary>
public static class TokenizerLoader
{
    /// <summary>Official model names whose tokenizer is GPT-2's (served by <see cref="Gpt2Tokenizer.Default"/>).</summary>
    public static IReadOnlyList<string> Gpt2ModelNames { get; } = ["gpt2", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"];

    /// <summary>
    /// The tokenizer files of a model folder: <c>tokenizer.json</c> if present, else <c>vocab.json</c> + <c>merges.txt</c>;
    /// null when the folder has neither. Throws when the folder does not exist or the files are unusable.
    /// </summary>
    public static ITokenizer? FromFolder(string folder)
    {
        if (!Directory.Exists(folder)) throw new SharpLensException($"model folder not found: {folder}");
        string json = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(json)) return BpeTokenizerFile.FromTokenizerJson(json);
        string vocab = Path.Combine(folder, "vocab.json"), merges = Path.Combine(folder, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges)) return BpeTokenizerFile.FromVocabAndMerges(vocab, merges);
        return null;
    }

    /// <summary>
    /// A tokenizer from an existing folder (see <see cref="FromFolder"/>) or an official GPT-2 model name
    /// (case-insensitive, see <see cref="Gpt2ModelNames"/>). Fails with the closest names otherwise.
    /// </summary>
    public static ITokenizer ForModel(string nameOrFolder)
    {
        if (Directory.Exists(nameOrFolder))
            return FromFolder(nameOrFolder) ?? throw new SharpLensException(
                $"folder '{nameOrFolder}' has no tokenizer files: expected tokenizer.json, or vocab.json + merges.txt.");
        if (Gpt2ModelNames.Contains(nameOrFolder, StringComparer.OrdinalIgnoreCase)) return Gpt2Tokenizer.Default;
        throw new SharpLensException(
            $"unknown model '{nameOrFolder}': not a folder, and not one of {string.Join(", ", Gpt2ModelNames)}."
            + NameSuggestions.DidYouMean(nameOrFolder, Gpt2ModelNames));
    }
}
