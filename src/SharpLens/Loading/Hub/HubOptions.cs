namespace SharpLens.Loading.Hub;

/// <summary>
/// Where and how <see cref="HubClient"/> talks to the Hugging Face Hub and where it keeps files. The cache layout
/// is huggingface_hub's, so Python and SharpLens share one cache. The token never appears in
/// <see cref="ToString"/>, exceptions or logs.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The public Hub, used when <c>HF_ENDPOINT</c> is not set.</summary>
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>Base URL of the Hub (<c>HF_ENDPOINT</c>), without a trailing slash.</summary>
    public string Endpoint { get; init; } = DefaultEndpoint;

    /// <summary>Cache root holding <c>models--org--name</c> folders (<c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>).</summary>
    public string CacheDir { get; init; } = DefaultCacheDir(Environment.GetEnvironmentVariable, UserHome());

    /// <summary>Access token sent as <c>Authorization: Bearer</c> to the Hub (never to other hosts); null for anonymous.</summary>
    public string? Token { get; init; }

    /// <summary>No HTTP at all: files come from the cache or the call fails (<c>HF_HUB_OFFLINE=1</c>).</summary>
    public bool Offline { get; init; }

    /// <summary>
    /// When false (default) a revision whose files are all in the cache is served without any request. When true, a
    /// branch or tag is re-resolved with the Hub (one HEAD per file) like huggingface_hub does, picking up new commits.
    /// Commit hashes are immutable and never re-checked.
    /// </summary>
    public bool CheckForUpdates { get; init; }

    /// <summary>Limit for connecting, for response headers and for each read of a response body (a stalled transfer).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How many times a timed-out, cut or 5xx/429 request is retried (4xx never are). Downloads resume where they stopped.</summary>
    public int MaxRetries { get; init; } = 3;

    /// <summary>Wait before the first retry; doubled for each further one (capped at 30 s).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long to wait for another process that is downloading the same file.</summary>
    public TimeSpan LockTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>
    /// Custom HTTP handler (tests, proxies). It must not follow redirects itself: <see cref="HubClient"/> follows them
    /// to drop the token when a redirect leaves the Hub's host. Not disposed by the client.
    /// </summary>
    public HttpMessageHandler? HttpMessageHandler { get; init; }

    /// <summary>Options from the environment, like huggingface_hub: <c>HF_HUB_CACHE</c>, <c>HF_HOME</c>,
    /// <c>HF_ENDPOINT</c>, <c>HF_HUB_OFFLINE</c>, <c>HF_TOKEN</c> (else the token file <c>HF_HOME/token</c>).</summary>
    public static HubOptions FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable, UserHome());

    internal static HubOptions FromEnvironment(Func<string, string?> env, string home)
    {
        string? token = NonEmpty(env("HF_TOKEN")) ?? NonEmpty(env("HUGGING_FACE_HUB_TOKEN"));
        if (token is null)
        {
            string tokenPath = Expand(NonEmpty(env("HF_TOKEN_PATH")) ?? Path.Combine(HfHome(env, home), "token"), home);
            try { token = File.Exists(tokenPath) ? NonEmpty(File.ReadAllText(tokenPath)) : null; }
            catch (IOException) { } // unreadable token file = anonymous, like huggingface_hub
            catch (UnauthorizedAccessException) { }
        }
        return new HubOptions
        {
            Endpoint = (NonEmpty(env("HF_ENDPOINT")) ?? DefaultEndpoint).TrimEnd('/'),
            CacheDir = DefaultCacheDir(env, home),
            Token = token,
            Offline = IsTrue(env("HF_HUB_OFFLINE")) || IsTrue(env("TRANSFORMERS_OFFLINE")),
        };
    }

    /// <summary>Lists the settings; the token is shown only as present or absent.</summary>
    public override string ToString() =>
        $"HubOptions {{ Endpoint = {Endpoint}, CacheDir = {CacheDir}, Token = {(Token is null ? "none" : "set")}, Offline = {Offline}, " +
        $"CheckForUpdates = {CheckForUpdates}, Timeout = {Timeout}, MaxRetries = {MaxRetries}, RetryDelay = {RetryDelay}, LockTimeout = {LockTimeout} }}";

    private static string DefaultCacheDir(Func<string, string?> env, string home) =>
        Expand(NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(HfHome(env, home), "hub"), home);

    private static string HfHome(Func<string, string?> env, string home) =>
        Expand(NonEmpty(env("HF_HOME")) ?? Path.Combine(NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache"), "huggingface"), home);

    private static string UserHome() => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    private static string Expand(string path, string home) =>
        path == "~" ? home : path.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(home, path[2..]) : path;

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();

    // huggingface_hub's _is_true
    private static bool IsTrue(string? s) => s?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";
}
