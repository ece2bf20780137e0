using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace SharpLens.Loading.Hub;

/// <summary>Bytes received so far for one file; <see cref="TotalBytes"/> is null when the server did not say.</summary>
/// <param name="File">Repository-relative file name, e.g. <c>model.safetensors</c>.</param>
/// <param name="BytesDone">Bytes of the file on disk so far (a resumed download starts above zero).</param>
/// <param name="TotalBytes">The file's size, when known.</param>
public sealed record DownloadProgress(string File, long BytesDone, long? TotalBytes);

/// <summary>
/// Downloads files from the Hugging Face Hub into huggingface_hub's cache (readable by Python, and reads what Python
/// wrote). HEAD for metadata, GET into <c>blobs/&lt;etag&gt;.incomplete</c> with resume, size and sha256 checks,
/// atomic rename, relative symlink under <c>snapshots/</c>. A lock file per blob keeps concurrent processes apart.
/// </summary>
public sealed partial class HubClient : IDisposable
{
    private const int MaxRedirects = 10;
    private readonly HttpClient _http;
    private readonly Uri _endpoint;

    /// <summary>Creates a client; without options they come from the environment (<see cref="HubOptions.FromEnvironment()"/>).</summary>
    public HubClient(HubOptions? options = null)
    {
        Options = options ?? HubOptions.FromEnvironment();
        if (!Uri.TryCreate(Options.Endpoint.TrimEnd('/'), UriKind.Absolute, out var ep) || ep.Scheme is not ("http" or "https"))
            throw new SharpLensException($"Hub endpoint '{Options.Endpoint}' is not an http(s) URL (set HF_ENDPOINT to e.g. {HubOptions.DefaultEndpoint}).");
        if (Options.MaxRetries < 0) throw new SharpLensException($"HubOptions.MaxRetries must be ≥ 0, got {Options.MaxRetries}.");
        if (Options.Timeout <= TimeSpan.Zero) throw new SharpLensException($"HubOptions.Timeout must be positive, got {Options.Timeout}.");
        _endpoint = ep;
        var handler = Options.HttpMessageHandler ?? new SocketsHttpHandler
        {
            AllowAutoRedirect = false, // we follow redirects ourselves: see the 302 to the CDN and drop the token there
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = Options.Timeout,
        };
        _http = new HttpClient(handler, disposeHandler: Options.HttpMessageHandler is null) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd($"SharpLens/{typeof(HubClient).Assembly.GetName().Version}");
    }

    /// <summary>The options this client uses.</summary>
    public HubOptions Options { get; }

    /// <summary>Releases the HTTP connections.</summary>
    public void Dispose() => _http.Dispose();

    /// <summary>
    /// Makes one file of a repository available in the cache and returns its path under
    /// <c>snapshots/&lt;commit&gt;/</c>. Cached files cost no request (unless <see cref="HubOptions.CheckForUpdates"/>).
    /// </summary>
    /// <exception cref="HubNotFoundException">The repository, revision or file does not exist.</exception>
    /// <exception cref="HubAuthException">401/403: gated or private repository, or a bad token.</exception>
    /// <exception cref="HubOfflineException">Offline and the file is not cached.</exception>
    /// <exception cref="HubIntegrityException">The received bytes had the wrong size or sha256.</exception>
    public async Task<string> DownloadFileAsync(string repoId, string filename, string revision = "main",
        IProgress<DownloadProgress>? progress = null, CancellationToken ct = default) =>
        (await CacheErrors(() => FetchAsync(repoId, filename, revision, progress, ct)).ConfigureAwait(false)).Path;

    /// <summary>
    /// Makes a model available in the cache and returns its snapshot folder: <c>config.json</c>, the weights
    /// (<c>model.safetensors</c>, else <c>model.safetensors.index.json</c> and its shards, else
    /// <c>pytorch_model.bin</c>) and whichever tokenizer files the repository has (absent ones are recorded in
    /// <c>.no_exist</c>, as Python does). A revision already complete in the cache costs no request. Offline, the
    /// cached snapshot is used if it has a config and weights.
    /// </summary>
    public Task<string> DownloadModelAsync(string repoId, string revision = "main",
        IProgress<DownloadProgress>? progress = null, CancellationToken ct = default) =>
        CacheErrors(() => DownloadModelCoreAsync(repoId, revision, progress, ct));

    private async Task<string> DownloadModelCoreAsync(string repoId, string revision, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        HubNames.ValidRepoId(repoId);
        HubNames.ValidRevision(revision);
        string cache = Options.CacheDir;
        if (Options.Offline)
        {
            var (snap, missing) = HubCache.CheckModel(cache, repoId, revision, requireAllKnown: false);
            return snap ?? throw Offline(repoId, missing, revision);
        }
        if (HubCache.IsCommitHash(revision) || !Options.CheckForUpdates)
        {
            var (snap, _) = HubCache.CheckModel(cache, repoId, revision, requireAllKnown: true);
            if (snap is not null) return snap;
        }

        var (configPath, commit) = await FetchAsync(repoId, ModelFiles.Config, revision, progress, ct).ConfigureAwait(false);
        // Every further file comes from the same commit, even if the branch moves meanwhile.
        string? weights = null;
        foreach (string w in ModelFiles.Weights)
        {
            if (await TryFetchAsync(repoId, w, commit, progress, ct).ConfigureAwait(false) is null) continue;
            weights = w;
            break;
        }
        if (weights is null)
            throw new HubNotFoundException($"Repository '{repoId}' at revision '{revision}' has no weights: looked for " +
                string.Join(", ", ModelFiles.Weights) + ".", HubNotFoundKind.File);
        if (weights == ModelFiles.SafetensorsIndex)
            foreach (string shard in ModelFiles.Shards(Path.Combine(Path.GetDirectoryName(configPath)!, weights)))
                await FetchAsync(repoId, shard, commit, progress, ct).ConfigureAwait(false);
        foreach (string t in ModelFiles.Tokenizer)
            await TryFetchAsync(repoId, t, commit, progress, ct).ConfigureAwait(false);
        return Path.GetDirectoryName(configPath)!;
    }

    /// <summary>Fetches an optional file: null when the repository does not have it.</summary>
    private async Task<string?> TryFetchAsync(string repoId, string filename, string revision, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        try { return (await FetchAsync(repoId, filename, revision, progress, ct).ConfigureAwait(false)).Path; }
        catch (HubNotFoundException e) when (e.Kind is HubNotFoundKind.File or HubNotFoundKind.Unknown) { return null; }
    }

    private sealed record FileMetadata(string Commit, string Etag, long? Size);

    private async Task<(string Path, string Commit)> FetchAsync(string repoId, string filename, string revision,
        IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        HubNames.ValidRepoId(repoId);
        HubNames.ValidFilename(filename);
        HubNames.ValidRevision(revision);
        string cache = Options.CacheDir, repoFolder = HubCache.RepoFolder(cache, repoId);

        if (Options.Offline || HubCache.IsCommitHash(revision) || !Options.CheckForUpdates)
        {
            string? cachedCommit = HubCache.ResolveCommit(cache, repoId, revision);
            var state = cachedCommit is null ? HubCache.FileState.Unknown : HubCache.State(cache, repoId, cachedCommit, filename);
            if (state == HubCache.FileState.Present) return (Path.Combine(repoFolder, "snapshots", cachedCommit!, filename), cachedCommit!);
            if (state == HubCache.FileState.KnownMissing)
                throw new HubNotFoundException($"File '{filename}' does not exist in '{repoId}' at revision '{revision}' " +
                    "(recorded in the cache's .no_exist folder).", HubNotFoundKind.File);
            if (Options.Offline) throw Offline(repoId, filename, revision);
        }

        var meta = await HeadAsync(repoId, filename, revision, ct).ConfigureAwait(false);
        string pointer = Path.Combine(repoFolder, "snapshots", meta.Commit, filename);
        // The ref moves only once the file is in place: a failed download leaves refs/ as it was.
        if (HubCache.IsPresent(pointer)) // not File.Exists: that is true for a dangling link, which is then re-made
        {
            if (revision != meta.Commit) WriteRef(repoFolder, revision, meta.Commit);
            return (pointer, meta.Commit);
        }

        string blob = Path.Combine(repoFolder, "blobs", meta.Etag);
        using (await AcquireLockAsync(HubCache.LockPath(cache, repoId, meta.Etag), ct).ConfigureAwait(false))
        {
            // Another process may have finished this blob while we waited for the lock.
            if (!HubCache.IsPresent(blob)) await DownloadBlobAsync(repoId, filename, meta, blob, progress, ct).ConfigureAwait(false);
            CreatePointer(blob, pointer);
        }
        if (revision != meta.Commit) WriteRef(repoFolder, revision, meta.Commit);
        return (pointer, meta.Commit);
    }

    // ---- metadata ----

    private Task<FileMetadata> HeadAsync(string repoId, string filename, string revision, CancellationToken ct) =>
        RetryAsync($"Getting metadata of '{filename}' from '{repoId}'", async () =>
        {
            var url = ResolveUrl(repoId, revision, filename);
            for (int hop = 0; ; hop++)
            {
                using var req = NewRequest(HttpMethod.Head, url);
                req.Headers.AcceptEncoding.ParseAdd("identity"); // sizes must be of the raw file, not a compressed body
                using var resp = await SendAsync(req, ct).ConfigureAwait(false);
                int code = (int)resp.StatusCode;
                // Follow only relative redirects (renamed repos); an absolute one is the CDN and carries the metadata.
                if (code is >= 300 and < 400 && resp.Headers.Location is { IsAbsoluteUri: false } loc && hop < MaxRedirects)
                {
                    url = new Uri(url, loc);
                    continue;
                }
                if (code >= 400)
                {
                    var error = ErrorFor(resp, repoId, filename, revision, redirected: hop > 0);
                    // Only the Hub's own answer for this file is recorded: after a redirect the missing entry is another one.
                    if (hop == 0 && error is HubNotFoundException { Kind: HubNotFoundKind.File } && Header(resp, "X-Error-Code") == "EntryNotFound")
                        RecordMissing(repoId, filename, revision, Header(resp, "X-Repo-Commit") ?? (HubCache.IsCommitHash(revision) ? revision : null));
                    throw error;
                }
                string? commit = Header(resp, "X-Repo-Commit");
                string? etag = NormalizeEtag(Header(resp, "X-Linked-Etag") ?? resp.Headers.ETag?.Tag ?? Header(resp, "ETag"));
                string? linkedSize = Header(resp, "X-Linked-Size");
                long? size = linkedSize is null ? resp.Content.Headers.ContentLength
                    : long.TryParse(linkedSize, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long ls) ? ls : -1;
                // The commit and the etag become folder and file names in the cache: anything but a plain name is refused.
                string? problem = commit is null ? "no X-Repo-Commit header"
                    : !HubCache.IsCommitHash(commit) ? $"X-Repo-Commit {Shown(commit)}, not a 40-character lowercase commit hash"
                    : etag is null ? "no ETag or X-Linked-Etag header"
                    : !Sha256Regex().IsMatch(etag) && !GitSha1Regex().IsMatch(etag)
                        ? $"the ETag {Shown(etag)}, which is neither a sha256 nor a git blob id (the blob is named and checked by it)"
                    : size < 0 ? $"X-Linked-Size {Shown(linkedSize!)}, not a file size"
                    : null;
                if (problem is not null)
                    throw new HubException($"The server at {Options.Endpoint} sent {problem} for '{filename}' of '{repoId}' (HTTP {code}); " +
                        "nothing was downloaded. Is HF_ENDPOINT a Hugging Face Hub or a faithful mirror?");
                return new FileMetadata(commit!, etag!, size);
            }
        }, ct);

    /// <summary>A header value for a message: quoted when short and printable, else only its length.</summary>
    private static string Shown(string value) =>
        value.Length <= 80 && value.All(c => c is >= ' ' and <= '~') ? $"'{value}'" : $"of {value.Length} characters";

    private static string? NormalizeEtag(string? etag)
    {
        if (etag is null) return null;
        if (etag.StartsWith("W/", StringComparison.Ordinal)) etag = etag[2..];
        etag = etag.Trim('"');
        return etag.Length == 0 ? null : etag;
    }

    private void RecordMissing(string repoId, string filename, string revision, string? commit)
    {
        if (commit is null || !HubCache.IsCommitHash(commit)) return;
        string repoFolder = HubCache.RepoFolder(Options.CacheDir, repoId);
        try
        {
            string path = HubCache.NoExistPath(Options.CacheDir, repoId, commit, filename);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.Create(path).Dispose();
            if (revision != commit) WriteRef(repoFolder, revision, commit);
        }
        catch (IOException) { } // only an optimisation, like in huggingface_hub
        catch (UnauthorizedAccessException) { }
    }

    private static void WriteRef(string repoFolder, string revision, string commit)
    {
        string path = Path.Combine(repoFolder, "refs", revision);
        if (File.Exists(path) && File.ReadAllText(path).Trim() == commit) return;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string tmp = $"{path}.{Guid.NewGuid():N}.tmp"; // readers never see a half-written ref
        File.WriteAllText(tmp, commit);
        File.Move(tmp, path, overwrite: true);
    }

    // ---- transfer ----

    private async Task DownloadBlobAsync(string repoId, string filename, FileMetadata meta, string blob,
        IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        string incomplete = blob + ".incomplete";
        var url = ResolveUrl(repoId, meta.Commit, filename); // pinned to the commit the metadata came from
        await RetryAsync($"Downloading '{filename}' from '{repoId}'", async () =>
        {
            await DownloadAttemptAsync(url, incomplete, meta, repoId, filename, progress, ct).ConfigureAwait(false);
            return true;
        }, ct).ConfigureAwait(false);
        await VerifyAsync(incomplete, meta, repoId, filename, ct).ConfigureAwait(false);
        File.Move(incomplete, blob, overwrite: true);
    }

    private async Task DownloadAttemptAsync(Uri url, string incomplete, FileMetadata meta, string repoId, string filename,
        IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        long have = File.Exists(incomplete) ? new FileInfo(incomplete).Length : 0;
        if (meta.Size is long expected && have > expected) { File.Delete(incomplete); have = 0; } // not a prefix of this blob
        if (meta.Size is long done && have == done && have > 0) return; // finished by an earlier run; only verification left

        HttpResponseMessage? resp = null;
        bool redirected = false;
        try
        {
            for (int hop = 0; ; hop++)
            {
                using var req = NewRequest(HttpMethod.Get, url);
                if (have > 0) req.Headers.Range = new RangeHeaderValue(have, null);
                resp = await SendAsync(req, ct).ConfigureAwait(false);
                if ((int)resp.StatusCode is >= 300 and < 400 && resp.Headers.Location is { } loc && hop < MaxRedirects)
                {
                    url = new Uri(url, loc); // the CDN; NewRequest drops the token for other hosts
                    redirected = true;
                    if (url.Scheme is not ("http" or "https"))
                        throw new HubException($"Downloading '{filename}' from '{repoId}': the server redirected to a {url.Scheme}: URL; only http and https are followed.");
                    resp.Dispose();
                    continue;
                }
                break;
            }
            int code = (int)resp.StatusCode;
            if (code == 416) // our partial file does not fit what the server has: start over
            {
                File.Delete(incomplete);
                throw new TransientException("the server rejected the resume range");
            }
            if (code >= 400) throw ErrorFor(resp, repoId, filename, meta.Commit, redirected);
            bool append = code == 206;
            if (append && resp.Content.Headers.ContentRange?.From != have)
            {
                File.Delete(incomplete);
                throw new TransientException($"the server resumed at byte {resp.Content.Headers.ContentRange?.From} instead of {have}");
            }
            if (!append) have = 0; // 200 to a Range request: the server sends the whole file, so restart from 0

            await using var body = await resp.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            await using var file = new FileStream(incomplete, append ? FileMode.Append : FileMode.Create, FileAccess.Write,
                FileShare.Read, 1 << 16, useAsync: true);
            var buffer = new byte[1 << 18];
            var clock = Stopwatch.StartNew();
            progress?.Report(new DownloadProgress(filename, have, meta.Size));
            while (true)
            {
                int n;
                using (var readCts = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    readCts.CancelAfter(Options.Timeout); // HttpClient's timeout stops at the headers; a stalled body needs its own
                    try { n = await body.ReadAsync(buffer, readCts.Token).ConfigureAwait(false); }
                    catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
                    { throw new TransientException($"the transfer stalled for {Options.Timeout.TotalSeconds:0.###} s after {have} bytes", e); }
                    catch (IOException e) { throw new TransientException($"the connection broke after {have} bytes ({e.Message})", e); }
                    catch (HttpRequestException e) { throw new TransientException($"the connection broke after {have} bytes ({e.Message})", e); }
                }
                if (n == 0) break;
                await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                have += n;
                if (clock.ElapsedMilliseconds >= 100) { progress?.Report(new DownloadProgress(filename, have, meta.Size)); clock.Restart(); }
            }
            await file.FlushAsync(ct).ConfigureAwait(false);
            file.Flush(flushToDisk: true); // on disk before the rename makes it visible
            progress?.Report(new DownloadProgress(filename, have, meta.Size));
            if (meta.Size is long size && have < size)
                throw new TransientException($"the server closed the transfer after {have} of {size} bytes");
        }
        finally
        {
            resp?.Dispose();
        }
    }

    private static async Task VerifyAsync(string incomplete, FileMetadata meta, string repoId, string filename, CancellationToken ct)
    {
        long length = new FileInfo(incomplete).Length;
        if (meta.Size is long size && length != size)
        {
            File.Delete(incomplete);
            throw new HubIntegrityException($"'{filename}' from '{repoId}' arrived with {length} bytes but the Hub announced {size}; " +
                "the download was deleted and nothing was installed. Retry; if it happens again a proxy or mirror is serving wrong data.");
        }
        // The Hub names LFS files by their sha256 and other files by their git blob id (sha1 of "blob {size}\0" + content).
        bool sha256 = Sha256Regex().IsMatch(meta.Etag);
        string actual;
        await using (var f = new FileStream(incomplete, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true))
        {
            if (sha256) actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(f, ct).ConfigureAwait(false));
            else
            {
                using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
                sha1.AppendData(System.Text.Encoding.ASCII.GetBytes($"blob {length}\0"));
                var buffer = new byte[1 << 16];
                for (int n; (n = await f.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0;) sha1.AppendData(buffer, 0, n);
                actual = Convert.ToHexStringLower(sha1.GetHashAndReset());
            }
        }
        if (!actual.Equals(meta.Etag, StringComparison.OrdinalIgnoreCase))
        {
            File.Delete(incomplete);
            throw new HubIntegrityException($"'{filename}' from '{repoId}' has {(sha256 ? "sha256" : "git blob id")} {actual} but the Hub announced {meta.Etag}; " +
                "the download was deleted and nothing was installed. Retry; if it happens again a proxy or mirror is serving wrong data.");
        }
    }

    /// <summary>The snapshot entry: a relative symlink to the blob, as huggingface_hub makes it (copy where symlinks are not allowed).</summary>
    private static void CreatePointer(string blob, string pointer)
    {
        string dir = Path.GetDirectoryName(pointer)!;
        Directory.CreateDirectory(dir);
        File.Delete(pointer); // a dangling link left by a deleted blob
        try { File.CreateSymbolicLink(pointer, Path.GetRelativePath(dir, blob)); }
        catch (Exception e) when (OperatingSystem.IsWindows() && e is IOException or UnauthorizedAccessException)
        {
            File.Copy(blob, pointer);
        }
    }

    private async Task<FileStream> AcquireLockAsync(string path, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            // FileShare.None takes an exclusive flock on Unix, the same lock Python's filelock takes.
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) when (waited.Elapsed < Options.LockTimeout)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(50), ct).ConfigureAwait(false);
            }
            catch (IOException e)
            {
                throw new HubException($"Waited {Options.LockTimeout} for the lock {path}: another process is downloading the same file. " +
                    "Let it finish, or stop it and run again.", e);
            }
        }
    }

    // ---- HTTP plumbing ----

    private Uri ResolveUrl(string repoId, string revision, string filename) =>
        new($"{Options.Endpoint.TrimEnd('/')}/{repoId}/resolve/{Uri.EscapeDataString(revision)}/" +
            string.Join('/', filename.Split('/').Select(Uri.EscapeDataString)));

    private HttpRequestMessage NewRequest(HttpMethod method, Uri url)
    {
        var req = new HttpRequestMessage(method, url);
        // The token goes to the Hub only, never to the CDN or any other host a redirect points to.
        if (Options.Token is not null && Uri.Compare(url, _endpoint, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0)
            req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Options.Token);
        return req;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage req, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(Options.Timeout);
        try { return await _http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token).ConfigureAwait(false); }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        { throw new TransientException($"no response within {Options.Timeout.TotalSeconds:0.###} s", e); }
        catch (HttpRequestException e) { throw new TransientException(e.Message, e); }
    }

    private async Task<T> RetryAsync<T>(string what, Func<Task<T>> attempt, CancellationToken ct)
    {
        for (int i = 0; ; i++)
        {
            try { return await attempt().ConfigureAwait(false); }
            catch (TransientException e)
            {
                if (i >= Options.MaxRetries)
                    throw new HubException($"{what} failed after {i + 1} {(i == 0 ? "try" : "tries")}: {e.Message}." +
                        // The Hub was not reached at all (no network, DNS, refused, silent): say what works without it.
                        (e.InnerException is HttpRequestException or OperationCanceledException
                            ? $" Check the network connection to {Options.Endpoint} (HF_ENDPOINT); without one, load a local model " +
                              "folder (config.json + weights) or set HF_HUB_OFFLINE=1 to use only what the Hugging Face cache holds."
                            : ""), e);
                var delay = Options.RetryDelay * Math.Pow(2, i);
                await Task.Delay(delay < TimeSpan.FromSeconds(30) ? delay : TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The exception for an error status, from the Hub's <c>X-Error-Code</c> header where it sent one.</summary>
    /// <remarks>With <paramref name="redirected"/> the message also says where the request for the file was redirected (a bad redirect reads like a missing repository otherwise).</remarks>
    private Exception ErrorFor(HttpResponseMessage resp, string repoId, string filename, string revision, bool redirected = false)
    {
        int code = (int)resp.StatusCode;
        string? errorCode = Header(resp, "X-Error-Code");
        string? serverMessage = Header(resp, "X-Error-Message");
        string said = serverMessage is null ? "" : $" The server said: {(serverMessage.Length > 300 ? serverMessage[..300] + "…" : serverMessage)}";
        if (redirected)
            said += $" (The request for '{filename}' was redirected to {resp.RequestMessage?.RequestUri?.GetLeftPart(UriPartial.Path)}.)";
        string tokenHint = Options.Token is null
            ? "No token was sent: set HF_TOKEN (or save a token in $HF_HOME/token, e.g. with `huggingface-cli login`)."
            : "A token was sent (from HF_TOKEN or the token file) but it is invalid or lacks access to this repository.";
        if (errorCode == "RepoNotFound")
            return new HubNotFoundException($"Repository '{repoId}' was not found on {Options.Endpoint} (HTTP {code}) when getting '{filename}'. Check the name; " +
                $"if it is private or gated: {tokenHint}{said}", HubNotFoundKind.Repository);
        if (errorCode == "RevisionNotFound")
            return new HubNotFoundException($"Revision '{revision}' was not found in repository '{repoId}' (HTTP {code}) when getting '{filename}'. " +
                $"Give an existing branch, tag or commit hash.{said}", HubNotFoundKind.Revision);
        if (errorCode == "EntryNotFound")
            return new HubNotFoundException($"File '{filename}' was not found in '{repoId}' at revision '{revision}' (HTTP {code}).{said}",
                HubNotFoundKind.File);
        if (code == 403 || errorCode == "GatedRepo")
            return new HubAuthException($"Access to '{repoId}' was denied (HTTP {code}{(errorCode == "GatedRepo" ? ", gated repository" : "")}): " +
                $"the repository is gated or private. Accept its conditions at {Options.Endpoint}/{repoId} with your account, then use a token " +
                $"with access. {tokenHint}{said}");
        if (code == 401)
            return new HubAuthException($"Authentication failed for '{repoId}' (HTTP 401). {tokenHint}{said}");
        if (code == 404)
            return new HubNotFoundException($"'{filename}' of '{repoId}' at revision '{revision}' was not found (HTTP 404: the repository, " +
                $"revision or file does not exist).{said}", HubNotFoundKind.Unknown);
        if (code >= 500 || code == 429)
            return new TransientException($"the server answered HTTP {code} {resp.ReasonPhrase}");
        return new HubException($"Unexpected HTTP {code} {resp.ReasonPhrase} from {resp.RequestMessage?.RequestUri?.GetLeftPart(UriPartial.Path)} " +
            $"for '{filename}' of '{repoId}'.{said}");
    }

    private static string? Header(HttpResponseMessage resp, string name) =>
        resp.Headers.TryGetValues(name, out var v) || resp.Content.Headers.TryGetValues(name, out v) ? v.FirstOrDefault() : null;

    private HubOfflineException Offline(string repoId, string file, string revision)
    {
        string what = ModelFiles.Weights.Contains(file)
            ? $"no weights ({string.Join(", ", ModelFiles.Weights)}) of '{repoId}'"
            : $"'{file}' of '{repoId}'";
        string fetch = $"sharplens download {repoId}{(revision == "main" ? "" : " --revision " + revision)}";
        return new HubOfflineException($"Offline mode is on (HF_HUB_OFFLINE=1 or HubOptions.Offline) and {what} at revision '{revision}' " +
            $"is not in the cache {Options.CacheDir}. Fetch it first with `{fetch}` while online, or unset HF_HUB_OFFLINE.", file);
    }

    /// <summary>Disk errors in the cache become <see cref="HubException"/>s that name the cache folder.</summary>
    private async Task<T> CacheErrors<T>(Func<Task<T>> body)
    {
        try { return await body().ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HubException($"Cache folder {Options.CacheDir}: {e.Message}", e);
        }
    }

    /// <summary>A failure worth retrying: timeout, broken connection, 5xx or 429.</summary>
    private sealed class TransientException(string message, Exception? inner = null) : Exception(message, inner);

    [GeneratedRegex("^[0-9a-f]{64}$", RegexOptions.IgnoreCase)]
    private static partial Regex Sha256Regex();

    [GeneratedRegex("^[0-9a-f]{40}$", RegexOptions.IgnoreCase)]
    private static partial Regex GitSha1Regex();

}
