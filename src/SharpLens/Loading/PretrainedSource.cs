namespace SharpLens.Loading;

/// <summary>Where and how <c>FromPretrained</c> finds a model.</summary>
public sealed record LoadOptions
{
    /// <summary>Branch, tag or commit on the Hugging Face Hub (default <c>main</c>).</summary>
    public string Revision { get; init; } = "main";
}

/// <summary>Resolves a model name or folder to a local folder.</summary>
internal static class PretrainedSource
{
    public static string ResolveFolder(string nameOrPath, LoadOptions options)
    {
        if (Directory.Exists(nameOrPath)) return nameOrPath;
        throw new SharpLensException($"unknown model '{nameOrPath}'");
    }
}
