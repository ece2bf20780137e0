namespace SharpLens.Loading.Hub;

/// <summary>A Hugging Face Hub download failed (network, server or cache problem). Subclasses name the specific cause.</summary>
public class HubException : SharpLensException
{
    /// <summary>Creates the exception with a user-facing message.</summary>
    public HubException(string message) : base(message) { }

    /// <summary>Creates the exception with a user-facing message and the low-level cause.</summary>
    public HubException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The Hub refused access (401/403): a gated or private repository, or a missing or invalid token.</summary>
public sealed class HubAuthException(string message) : HubException(message)
{
}

/// <summary>What a <see cref="HubNotFoundException"/> could not find.</summary>
public enum HubNotFoundKind
{
    /// <summary>The server did not say (a plain 404).</summary>
    Unknown,
    /// <summary>The repository does not exist (or is private and no valid token was sent).</summary>
    Repository,
    /// <summary>The branch, tag or commit does not exist in the repository.</summary>
    Revision,
    /// <summary>The file does not exist at that revision.</summary>
    File,
}

/// <summary>The Hub answered 404 for a repository, revision or file (from its <c>X-Error-Code</c> header).</summary>
public sealed class HubNotFoundException(string message, HubNotFoundKind kind) : HubException(message)
{
    /// <summary>Whether the repository, the revision or the file is missing.</summary>
    public HubNotFoundKind Kind { get; } = kind;
}

/// <summary>Downloaded bytes did not match the size or sha256 the Hub announced; they were deleted and nothing was installed.</summary>
public sealed class HubIntegrityException(string message) : HubException(message)
{
}

/// <summary>Offline mode (<c>HF_HUB_OFFLINE=1</c>) and a needed file is not in the cache.</summary>
public sealed class HubOfflineException(string message, string missingFile) : HubException(message)
{
    /// <summary>The repository-relative name of the missing file.</summary>
    public string MissingFile { get; } = missingFile;
}
