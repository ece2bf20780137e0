using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Cluster;

/// <summary>
/// A content hash of a checkpoint folder, so a worker that would compute with a different model (other weights, other
/// config, other processing) refuses a job instead of merging numbers that cannot be reproduced exactly.
/// </summary>
public static partial class ModelIdentity
{
    /// <summary>
    /// SHA-256 over every file's name and content hash (config, tokenizer and weight files) plus the processing flag and
    /// the dtype (the same files in bfloat16 give other numbers).
    /// Files in the Hugging Face cache are symlinks to blobs named by their SHA-256 (LFS) or git sha1, which is used as is
    /// instead of reading gigabytes again.
    /// </summary>
    public static string Hash(string folder, bool noProcessing, ScalarType dtype = ScalarType.Float32)
    {
        var lines = new StringBuilder($"processing={!noProcessing}\ndtype={ModelDtype.Name(dtype)}\n");
        foreach (var path in Directory.EnumerateFiles(folder).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(path);
            string? blob = info.LinkTarget is { } target ? Path.GetFileName(target) : null;
            string contentHash = blob is not null && BlobName().IsMatch(blob) ? blob : FileHash(path);
            lines.Append(Path.GetFileName(path)).Append('=').Append(contentHash).Append('\n');
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(lines.ToString())));
    }

    /// <summary>The hash of an SAE location: the content of a local folder or file; a Hub location as written.</summary>
    public static string HashSae(string location) =>
        Directory.Exists(location) ? Hash(location, noProcessing: true)
        : File.Exists(location) ? FileHash(location)
        : "hub:" + location;

    /// <summary>One hash for a model and what is spliced into it.</summary>
    public static string Combine(string modelHash, string saeHash) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(modelHash + "+" + saeHash)));

    private static string FileHash(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }

    [GeneratedRegex("^([0-9a-f]{40}|[0-9a-f]{64})$")]
    private static partial Regex BlobName();
}
