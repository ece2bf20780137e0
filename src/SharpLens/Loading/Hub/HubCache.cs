using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpLens.Loading.Hub;

/// <summary>
/// Paths and look-ups in huggingface_hub's cache layout, shared with Python:
/// <c>models--{org}--{name}/blobs/&lt;etag&gt;</c>, <c>snapshots/&lt;commit&gt;/&lt;file&gt;</c> (relative symlinks to
/// the blobs), <c>refs/&lt;revision&gt;</c> (the commit hash) and <c>.no_exist/&lt;commit&gt;/&lt;file&gt;</c> (files
/// known to be absent). Look-ups never touch the network.
/// </summary>
public static partial class HubCache
{
    /// <summary>The repository's cache folder, <c>{cacheDir}/models--{org}--{name}</c>.</summary>
    public static string RepoFolder(string cacheDir, string repoId) => Path.Combine(cacheDir, RepoFolderName(repoId));

    /// <summary>The repository's folder name, <c>models--{org}--{name}</c> (also used under <c>.locks/</c>).</summary>
    public static string RepoFolderName(string repoId) => "models--" + HubNames.ValidRepoId(repoId).Replace("/", "--");

    /// <summary>True for a full 40-character lowercase hex commit hash.</summary>
    public static bool IsCommitHash(string revision) => CommitRegex().IsMatch(revision);

    /// <summary>The commit a revision points to in the cache (<c>refs/&lt;revision&gt;</c>, or the revision itself when it is a commit hash), or null.</summary>
    public static string? ResolveCommit(string cacheDir, string repoId, string revision)
    {
        string refFile = Path.Combine(RepoFolder(cacheDir, repoId), "refs", HubNames.ValidRevision(revision));
        if (File.Exists(refFile))
        {
            string commit = Encoding.UTF8.GetString(JsonInput.ReadFile(refFile)).Trim(); // Python writes no newline; tolerate one written by hand
            // The ref becomes a folder name under snapshots/: anything but a commit hash is damage (or a path escape).
            if (commit.Length > 0 && !IsCommitHash(commit))
                throw new SharpLensException($"{refFile}: holds {Quote(commit)}, not a 40-character commit hash; the Hub cache entry is damaged. " +
                    "Delete that file (it is re-created on the next download).");
            if (commit.Length > 0) return commit;
        }
        return IsCommitHash(revision) ? revision : null;
    }

    /// <summary>The snapshot folder of a revision when the cache has one, else null.</summary>
    public static string? TryGetCachedSnapshot(string cacheDir, string repoId, string revision = "main")
    {
        string? commit = ResolveCommit(cacheDir, repoId, revision);
        if (commit is null) return null;
        string dir = Path.Combine(RepoFolder(cacheDir, repoId), "snapshots", commit);
        return Directory.Exists(dir) ? dir : null;
    }

    /// <summary>The cached path of one file at a revision (a complete blob behind it), else null.</summary>
    public static string? TryGetCachedFile(string cacheDir, string repoId, string filename, string revision = "main")
    {
        string? snapshot = TryGetCachedSnapshot(cacheDir, repoId, revision);
        if (snapshot is null) return null;
        string path = Path.Combine(snapshot, HubNames.ValidFilename(filename));
        return IsPresent(path) ? path : null;
    }

    /// <summary>
    /// Whether <paramref name="path"/> is a file that can be read: a snapshot entry is a symbolic link into blobs/, and
    /// .NET's File.Exists is true for a dangling link (it falls back to lstat), so the link is followed to its end.
    /// A link loop, a link to a folder or a missing blob is not present.
    /// </summary>
    internal static bool IsPresent(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is null) return info.Exists;
            return info.ResolveLinkTarget(returnFinalTarget: true) is FileInfo { Exists: true };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; } // a loop, no permission
    }

    /// <summary>True when the cache records (<c>.no_exist</c>) that the file is absent from the repository at this revision.</summary>
    public static bool IsKnownMissing(string cacheDir, string repoId, string filename, string revision = "main")
    {
        string? commit = ResolveCommit(cacheDir, repoId, revision);
        return commit is not null && File.Exists(NoExistPath(cacheDir, repoId, commit, HubNames.ValidFilename(filename)));
    }

    /// <summary>True when the revision's snapshot holds <c>config.json</c> and complete weights, i.e. loads offline.</summary>
    public static bool IsCached(string cacheDir, string repoId, string revision = "main") =>
        CheckModel(cacheDir, repoId, revision, requireAllKnown: false).Snapshot is not null;

    internal enum FileState { Present, KnownMissing, Unknown }

    internal static FileState State(string cacheDir, string repoId, string commit, string filename)
    {
        if (IsPresent(Path.Combine(RepoFolder(cacheDir, repoId), "snapshots", commit, filename))) return FileState.Present;
        return File.Exists(NoExistPath(cacheDir, repoId, commit, filename)) ? FileState.KnownMissing : FileState.Unknown;
    }

    /// <summary>
    /// Whether a model (config, weights by preference, tokenizer files) is usable from the cache. With
    /// <paramref name="requireAllKnown"/> every preferred weight file and every tokenizer file must be present or known
    /// missing (so an online call would fetch nothing new); without it, what is present is enough (offline mode).
    /// Returns the snapshot folder, or the first missing file.
    /// </summary>
    internal static (string? Snapshot, string Missing) CheckModel(string cacheDir, string repoId, string revision, bool requireAllKnown)
    {
        string? commit = ResolveCommit(cacheDir, repoId, revision);
        if (commit is null || !Directory.Exists(Path.Combine(RepoFolder(cacheDir, repoId), "snapshots", commit)))
            return (null, ModelFiles.Config);
        if (State(cacheDir, repoId, commit, ModelFiles.Config) != FileState.Present) return (null, ModelFiles.Config);

        string snapshot = Path.Combine(RepoFolder(cacheDir, repoId), "snapshots", commit);
        bool haveWeights = false;
        foreach (string w in ModelFiles.Weights)
        {
            var st = State(cacheDir, repoId, commit, w);
            if (st == FileState.KnownMissing) continue;
            if (st == FileState.Unknown)
            {
                if (requireAllKnown) return (null, w);
                continue;
            }
            if (w == ModelFiles.SafetensorsIndex)
                foreach (string shard in ModelFiles.Shards(Path.Combine(snapshot, w)))
                    if (State(cacheDir, repoId, commit, shard) != FileState.Present) return (null, shard);
            haveWeights = true;
            break;
        }
        if (!haveWeights) return (null, ModelFiles.Weights[0]);
        if (requireAllKnown)
            foreach (string t in ModelFiles.Tokenizer)
                if (State(cacheDir, repoId, commit, t) == FileState.Unknown) return (null, t);
        return (snapshot, "");
    }

    internal static string NoExistPath(string cacheDir, string repoId, string commit, string filename) =>
        Path.Combine(RepoFolder(cacheDir, repoId), ".no_exist", commit, filename);

    internal static string LockPath(string cacheDir, string repoId, string etag) =>
        Path.Combine(cacheDir, ".locks", RepoFolderName(repoId), etag + ".lock");

    private static string Quote(string s) => s.Length <= 60 && s.All(c => !char.IsControl(c)) ? $"'{s}'" : $"{s.Length} characters that are not a hash";

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitRegex();
}

/// <summary>The files that make up a model repository, in preference order.</summary>
internal static class ModelFiles
{
    public const string Config = "config.json";
    public const string SafetensorsIndex = "model.safetensors.index.json";
    public static readonly string[] Weights = ["model.safetensors", SafetensorsIndex, "pytorch_model.bin"];
    public static readonly string[] Tokenizer = ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"];

    /// <summary>The shard files a <c>model.safetensors.index.json</c> names in its <c>weight_map</c>, in first-use order.</summary>
    public static IReadOnlyList<string> Shards(string indexPath)
    {
        var map = (JsonInput.ParseFileNode(indexPath) as JsonObject)?["weight_map"] as JsonObject
            ?? throw new SharpLensException($"{indexPath} has no \"weight_map\" object.");
        var shards = map.Select(kv => JsonInput.OptionalString(map, kv.Key, $"{indexPath}: weight_map")
            ?? throw new SharpLensException($"{indexPath}: weight '{kv.Key}' maps to null.")).Distinct().ToList();
        foreach (var s in shards)
        {
            try { HubNames.ValidFilename(s); }
            catch (SharpLensException e) { throw new SharpLensException($"{indexPath}: {e.Message}", e); }
        }
        return shards;
    }
}

/// <summary>Validation of repo ids, file names and revisions before they become paths or URLs.</summary>
internal static partial class HubNames
{
    public static string ValidRepoId(string repoId)
    {
        if (repoId is null || !RepoIdRegex().IsMatch(repoId) || repoId.Contains("--") || repoId.Contains(".."))
            throw new SharpLensException($"'{repoId}' is not a valid Hugging Face repo id: expected 'name' or 'org/name' made of " +
                "letters, digits, '-', '_' and '.', at most 96 characters each, starting and ending with a letter or digit, without '--' or '..'.");
        return repoId;
    }

    public static string ValidFilename(string filename)
    {
        if (string.IsNullOrEmpty(filename) || filename.Contains('\\') || filename.Split('/').Any(s => s is "" or "." or ".."))
            throw new SharpLensException($"'{filename}' is not a valid repository file name: use a relative path with '/' separators and no '.', '..' or empty parts.");
        return filename;
    }

    public static string ValidRevision(string revision)
    {
        if (string.IsNullOrWhiteSpace(revision) || revision.Contains('\\') || revision.Split('/').Any(s => s is "" or "." or ".."))
            throw new SharpLensException($"'{revision}' is not a valid revision: give a branch, tag or commit hash (e.g. 'main', 'v1.0', 'refs/pr/1').");
        return revision;
    }

    [GeneratedRegex(@"^[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?(?:/[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?)?$")]
    private static partial Regex RepoIdRegex();
}
