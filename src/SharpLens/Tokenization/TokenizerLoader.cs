namespace SharpLens.Tokenization;

/// <summary>
/// Finds the tokenizer of a model folder, a tokenizer file or a model name. A folder is searched in the order
/// Hugging Face uses: <c>tokenizer.json</c>; then <c>tokenizer.model</c> (SentencePiece protobuf or tiktoken ranks,
/// told apart by content); then <c>vocab.json</c> + <c>merges.txt</c>. <c>tokenizer_config.json</c> and
/// <c>special_tokens_map.json</c> beside the files name BOS/EOS/PAD and added tokens.
/// </summary>
public static class TokenizerLoader
{
    /// <summary>Official model names whose tokenizer is GPT-2's (served by <see cref="Gpt2Tokenizer.Default"/>).</summary>
    public static IReadOnlyList<string> Gpt2ModelNames { get; } = ["gpt2", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"];

    /// <summary>What a folder is searched for, in order.</summary>
    public static IReadOnlyList<string> SearchedFiles { get; } = ["tokenizer.json", "tokenizer.model", "vocab.json + merges.txt"];

    /// <summary>
    /// The tokenizer of a model folder (see <see cref="TokenizerLoader"/> for the search order); null when the folder
    /// has no tokenizer file. Throws when the folder does not exist or the files are unusable.
    /// </summary>
    public static ITokenizer? FromFolder(string folder)
    {
        if (!Directory.Exists(folder)) throw new SharpLensException($"model folder not found: {folder}");
        string json = Path.Combine(folder, "tokenizer.json");
        if (File.Exists(json)) return BpeTokenizerFile.FromTokenizerJson(json);
        string model = Path.Combine(folder, "tokenizer.model");
        if (File.Exists(model)) return FromModelFile(model);
        string vocab = Path.Combine(folder, "vocab.json"), merges = Path.Combine(folder, "merges.txt");
        if (File.Exists(vocab) && File.Exists(merges)) return BpeTokenizerFile.FromVocabAndMerges(vocab, merges);
        return null;
    }

    /// <summary>
    /// The tokenizer a model loaded from <paramref name="folder"/> with config <paramref name="cfg"/> uses: GPT-2's
    /// built-in BPE (fast, offline) for GPT-2-vocabulary models (tokenizer "gpt2", 50257 tokens), whatever files the
    /// folder has; for every other model the folder's tokenizer files (<see cref="FromFolder"/>), null when it has none.
    /// Checked against the model's vocabulary size.
    /// </summary>
    public static ITokenizer? ForModelFolder(string folder, Model.HookedTransformerConfig cfg)
    {
        ArgumentNullException.ThrowIfNull(cfg);
        var tokenizer = cfg.TokenizerName == "gpt2" && cfg.DVocab == Gpt2Tokenizer.Default.VocabSize ? Gpt2Tokenizer.Default : FromFolder(folder);
        if (tokenizer is not null) CheckFitsModel(tokenizer, cfg.DVocab, cfg.ModelName);
        return tokenizer;
    }

    /// <summary>
    /// A tokenizer from a folder laid out like a model repository (which must hold one), or from one tokenizer file:
    /// <c>*.json</c> (a Hugging Face tokenizer.json, or a vocab.json with merges.txt beside it) or a
    /// SentencePiece / tiktoken <c>*.model</c> file of any name.
    /// </summary>
    public static ITokenizer FromPath(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            return FromFolder(path) ?? throw new SharpLensException(
                $"folder '{path}' has no tokenizer file: looked for {string.Join(", then ", SearchedFiles)} (found: {Listing(path)}).");
        if (!File.Exists(path))
            throw new SharpLensException($"tokenizer path not found: '{path}' is neither a folder nor a file.");
        string name = Path.GetFileName(path);
        if (name.Equals("vocab.json", StringComparison.OrdinalIgnoreCase))
        {
            string merges = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "merges.txt");
            if (!File.Exists(merges)) throw new SharpLensException($"{path}: a vocab.json needs merges.txt beside it, and there is none.");
            return BpeTokenizerFile.FromVocabAndMerges(path, merges);
        }
        if (name.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) return BpeTokenizerFile.FromTokenizerJson(path);
        return FromModelFile(path);
    }

    /// <summary>A <c>tokenizer.model</c>: tiktoken ranks (text) or a SentencePiece model (protobuf), by content.</summary>
    public static ITokenizer FromModelFile(string path)
    {
        var head = new byte[256];
        int n;
        using (var f = File.OpenRead(path)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (n == 0) throw new SharpLensException($"{path}: the file is empty; expected a SentencePiece model or tiktoken ranks.");
        // tiktoken lines are "<base64> <rank>"; a SentencePiece ModelProto starts with field 1 (a piece): byte 0x0A.
        if (TiktokenTokenizerFile.LooksLikeTiktoken(head.AsSpan(0, n))) return TiktokenTokenizerFile.FromFile(path);
        if (head[0] == 0x0A) return SentencePieceBpeTokenizer.FromFile(path);
        throw new SharpLensException($"{path}: neither a SentencePiece model (protobuf) nor tiktoken ranks (\"<base64> <rank>\" lines).");
    }

    /// <summary>
    /// A tokenizer from an existing folder or file (see <see cref="FromPath"/>) or an official GPT-2 model name
    /// (case-insensitive, see <see cref="Gpt2ModelNames"/>). Fails with the closest names otherwise.
    /// </summary>
    public static ITokenizer ForModel(string nameOrFolder)
    {
        if (Directory.Exists(nameOrFolder) || File.Exists(nameOrFolder)) return FromPath(nameOrFolder);
        if (Gpt2ModelNames.Contains(nameOrFolder, StringComparer.OrdinalIgnoreCase)) return Gpt2Tokenizer.Default;
        throw new SharpLensException(
            $"unknown model '{nameOrFolder}': not a folder, and not one of {string.Join(", ", Gpt2ModelNames)}."
            + NameSuggestions.DidYouMean(nameOrFolder, Gpt2ModelNames));
    }

    /// <summary>
    /// Checks that every id of <paramref name="tokenizer"/> is a row of the model's embedding: a tokenizer with more
    /// ids than <paramref name="dVocab"/> could produce ids the model cannot look up.
    /// </summary>
    public static void CheckFitsModel(ITokenizer tokenizer, int dVocab, string modelName)
    {
        if (tokenizer.VocabSize > dVocab)
            throw new SharpLensException(
                $"the tokenizer {tokenizer.Name} has {tokenizer.VocabSize} ids but model '{modelName}' has d_vocab = {dVocab}: " +
                $"ids {dVocab}..{tokenizer.VocabSize - 1} would be outside the embedding. Use the tokenizer files that belong to this model.");
    }

    private static string Listing(string folder)
    {
        var names = Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).Take(10).ToList();
        return names.Count == 0 ? "nothing" : string.Join(", ", names);
    }
}
