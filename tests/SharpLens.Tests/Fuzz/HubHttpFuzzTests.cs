using System.Diagnostics;
using System.Text;
using SharpLens.Loading.Hub;
using SharpLens.Tests.Hub;
using Xunit.Abstractions;

namespace SharpLens.Tests.Fuzz;

/// <summary>
/// The Hub's HTTP metadata and bodies, damaged: the fake Hub sends mutated <c>X-Repo-Commit</c>, <c>ETag</c> /
/// <c>X-Linked-Etag</c>, <c>X-Linked-Size</c> / <c>Content-Length</c> and <c>Location</c> headers (missing, empty, huge,
/// negative, non-hex, wrong length or characters, path escapes) and truncated, oversized or altered bodies. Each download
/// either returns the correct file or throws a one-line <see cref="SharpLensException"/> naming the repository and the
/// file; the cache never holds a half-written blob, a snapshot entry pointing at a missing or wrong blob, a ref moved by a
/// failed download, or anything outside its folder.
/// </summary>
public sealed class HubHttpFuzzTests(ITestOutputHelper output) : IDisposable
{
    private const string Repo = "fuzz-org/fuzz-model";
    private readonly string _root = Directory.CreateTempSubdirectory("sharplens-fuzz-http-").FullName;
    private readonly FakeHub _hub = new();

    public void Dispose()
    {
        _hub.Dispose();
        Directory.Delete(_root, true);
    }

    private static readonly string[] Headers = ["X-Repo-Commit", "ETag", "X-Linked-Etag", "X-Linked-Size", "Content-Length", "Location"];

    [Fact]
    public async Task DamagedHeadersAndBodies()
    {
        var weights = new byte[40_000];
        new Random(5).NextBytes(weights);
        _hub.Repos[Repo] = new()
        {
            ["config.json"] = new(Encoding.UTF8.GetBytes("{\"model_type\": \"gpt2\", \"n_layer\": 2}"), Lfs: false),
            ["weights.bin"] = new(weights, Lfs: true),
        };
        // Three levels below the root, so a path escape of a few '../' would still land where the test looks.
        string cache = Path.Combine(_root, "a", "b", "cache"), repoDir = HubCache.RepoFolder(cache, Repo);
        var options = new HubOptions
        {
            Endpoint = _hub.Endpoint, CacheDir = cache, MaxRetries = 1, RetryDelay = TimeSpan.FromMilliseconds(1),
            Timeout = TimeSpan.FromSeconds(3), LockTimeout = TimeSpan.FromSeconds(5),
        };
        var failures = new List<string>();
        int ok = 0, rejected = 0, tried = 0;
        var clock = Stopwatch.StartNew();
        const int seed = 20;
        for (int i = 0; i < 2000 && (i < 100 || clock.Elapsed < TimeSpan.FromSeconds(2.5)); i++, tried++)
        {
            var rng = new Random(seed * 100_000 + i);
            string file = rng.Next(2) == 0 ? "config.json" : "weights.bin";
            Reset(cache, repoDir, wipe: rng.Next(4) == 0);
            var refsBefore = Snapshot(Path.Combine(repoDir, "refs"));
            var done = new List<string>();
            _hub.Tamper = (method, target, headers, body) => Tamper(rng, method, target, headers, body, done);
            string what() => $"#{i} {file} [{string.Join("; ", done)}]";
            bool success = false;
            try
            {
                using var client = new HubClient(options);
                string path = await client.DownloadFileAsync(Repo, file);
                success = true;
                ok++;
                if (!File.ReadAllBytes(path).AsSpan().SequenceEqual(_hub.File(Repo, file).Bytes))
                    failures.Add($"{what()}: returned {path} with wrong content");
            }
            catch (SharpLensException e)
            {
                rejected++;
                if (!e.Message.Contains($"'{Repo}'", StringComparison.Ordinal) || !e.Message.Contains($"'{file}'", StringComparison.Ordinal))
                    failures.Add($"{what()}: message does not name the repository and the file: {e.Message}");
                else if (e.Message.Contains('\n'))
                    failures.Add($"{what()}: message is not one line: {e.Message}");
            }
            catch (Exception e)
            {
                failures.Add($"{what()}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
            }
            finally
            {
                _hub.Tamper = null;
            }
            foreach (var problem in CacheProblems(cache, repoDir))
                failures.Add($"{what()}: {problem}");
            if (!success && !Snapshot(Path.Combine(repoDir, "refs")).SequenceEqual(refsBefore))
                failures.Add($"{what()}: a failed download changed refs/");
        }
        output.WriteLine($"Hub HTTP: {tried} damaged downloads in {clock.ElapsedMilliseconds} ms: {ok} correct, {rejected} rejected, {failures.Count} wrong");
        Assert.True(failures.Count == 0, $"seed {seed}: {failures.Count} of {tried} damaged downloads were not handled:\n" + string.Join("\n", failures.Take(12)));
        Assert.True(rejected > tried / 10 && ok > tried / 10, $"{ok} correct and {rejected} rejected of {tried}: the mutations should do both");
    }

    /// <summary>Removes what a finished download left, keeping refs/ and partial (.incomplete) blobs so resumes meet damage too.</summary>
    private static void Reset(string cache, string repoDir, bool wipe)
    {
        if (wipe)
        {
            if (Directory.Exists(cache)) Directory.Delete(cache, true);
            return;
        }
        foreach (var dir in new[] { "snapshots", ".no_exist" })
            if (Directory.Exists(Path.Combine(repoDir, dir))) Directory.Delete(Path.Combine(repoDir, dir), true);
        if (Directory.Exists(Path.Combine(repoDir, "blobs")))
            foreach (var blob in Directory.GetFiles(Path.Combine(repoDir, "blobs")).Where(b => !b.EndsWith(".incomplete", StringComparison.Ordinal)))
                File.Delete(blob);
    }

    private static List<KeyValuePair<string, string>> Snapshot(string dir) => !Directory.Exists(dir) ? []
        : Directory.GetFiles(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => KeyValuePair.Create(f, File.ReadAllText(f))).ToList();

    /// <summary>What is wrong in the cache: a blob that is not a complete file, a snapshot entry to a missing or wrong blob, a bad ref, a stray file.</summary>
    private IEnumerable<string> CacheProblems(string cache, string repoDir)
    {
        foreach (var f in Directory.GetFileSystemEntries(_root, "*", SearchOption.AllDirectories))
            if (!(f + "/").StartsWith(cache + "/", StringComparison.Ordinal) && !cache.StartsWith(f + "/", StringComparison.Ordinal))
                yield return $"{f} was written outside the cache folder";
        if (!Directory.Exists(repoDir)) yield break;
        var files = _hub.Repos[Repo];
        string blobs = Path.Combine(repoDir, "blobs");
        if (Directory.Exists(blobs))
            foreach (var blob in Directory.GetFiles(blobs).Where(b => !b.EndsWith(".incomplete", StringComparison.Ordinal)))
            {
                var bytes = File.ReadAllBytes(blob);
                string name = Path.GetFileName(blob);
                var match = files.Values.FirstOrDefault(f => f.Bytes.AsSpan().SequenceEqual(bytes));
                if (match is null) yield return $"blob {name} ({bytes.Length} bytes) is not a complete repository file";
                else if (name.Length is 40 or 64 && name.All(Uri.IsHexDigit) && !name.Equals(name.Length == 64 ? match.Sha256 : match.GitSha1, StringComparison.OrdinalIgnoreCase))
                    yield return $"blob {name} holds a file whose hash is {(name.Length == 64 ? match.Sha256 : match.GitSha1)}";
            }
        string snapshots = Path.Combine(repoDir, "snapshots");
        if (Directory.Exists(snapshots))
            foreach (var entry in Directory.GetFiles(snapshots, "*", SearchOption.AllDirectories))
            {
                string rel = Path.GetRelativePath(snapshots, entry);
                string name = rel[(rel.IndexOf('/') + 1)..];
                if (!File.Exists(entry)) yield return $"snapshot entry {rel} points at a missing blob";
                else if (!files.TryGetValue(name, out var f) || !File.ReadAllBytes(entry).AsSpan().SequenceEqual(f.Bytes))
                    yield return $"snapshot entry {rel} has the wrong content";
            }
        string refs = Path.Combine(repoDir, "refs");
        if (Directory.Exists(refs))
            foreach (var r in Directory.GetFiles(refs, "*", SearchOption.AllDirectories))
            {
                string commit = File.ReadAllText(r);
                if (!HubCache.IsCommitHash(commit)) yield return $"ref {Path.GetFileName(r)} holds '{commit}' ({commit.Length} characters)";
            }
    }

    /// <summary>Damages about half the responses: one or two headers, sometimes the body. Records what it did in <paramref name="done"/>.</summary>
    private static byte[] Tamper(Random rng, string method, string target, Dictionary<string, string> headers, byte[] body, List<string> done)
    {
        string where = $"{method} {(target.StartsWith("/cdn/", StringComparison.Ordinal) ? "cdn" : "hub")}";
        if (rng.Next(2) == 0) return body;
        for (int n = 1 + rng.Next(2); n > 0; n--)
        {
            string name = Headers[rng.Next(Headers.Length)];
            headers.TryGetValue(name, out var old);
            if (name == "Content-Length") old = body.Length.ToString();
            var value = Value(rng, name, old ?? "");
            if (value is null)
            {
                if (name == "Content-Length") headers[name] = FakeHub.Omit;
                else headers.Remove(name);
            }
            else headers[name] = value;
            done.Add($"{where} {name}={Show(value)}");
        }
        if (method == "GET" && rng.Next(3) == 0)
        {
            int cut = rng.Next(body.Length + 1);
            switch (rng.Next(4))
            {
                case 0: done.Add($"{where} body cut to {cut}"); return body[..cut];
                case 1:
                    done.Add($"{where} body cut to {cut}, Content-Length matching");
                    headers["Content-Length"] = cut.ToString();
                    return body[..cut];
                case 2:
                    var extra = new byte[1 + rng.Next(100)];
                    rng.NextBytes(extra);
                    if (rng.Next(2) == 0) headers["Content-Length"] = (body.Length + extra.Length).ToString();
                    done.Add($"{where} body +{extra.Length} bytes");
                    return [.. body, .. extra];
                default:
                    if (body.Length == 0) return body;
                    var flipped = (byte[])body.Clone();
                    flipped[rng.Next(flipped.Length)] ^= (byte)(1 + rng.Next(255));
                    done.Add($"{where} body byte flipped");
                    return flipped;
            }
        }
        return body;
    }

    private static string Show(string? v) => v is null ? "(missing)" : v.Length > 50 ? $"({v.Length} chars) {v[..20]}…" : $"'{v}'";

    private static string Hex(Random rng, int length) => string.Concat(Enumerable.Range(0, length).Select(_ => "0123456789abcdef"[rng.Next(16)]));

    /// <summary>A damaged value for header <paramref name="name"/> whose real value is <paramref name="old"/>; null = leave the header out.</summary>
    private static string? Value(Random rng, string name, string old)
    {
        switch (rng.Next(12))
        {
            case 0: return null;
            case 1: return "";
            case 2: return new string(rng.Next(2) == 0 ? 'a' : '7', 4000 + rng.Next(20000));
            case 3: return new[] { "-1", "-" + old, "-9223372036854775808" }[rng.Next(3)];
            case 4: return new string("zg"[rng.Next(2)], rng.Next(2) == 0 ? 40 : 64);
            case 5: return Hex(rng, new[] { 39, 41, 63, 65, 0 }[rng.Next(5)]);
            case 6:
                // Characters a header may carry on the wire but a name or number may not (no CR/LF: that would end the header).
                string odd = new[] { "é", "\u00ff", "\t", " ", "\"", "ä/ü", "\u0001" }[rng.Next(7)];
                return old.Length == 0 ? odd : old.Insert(rng.Next(old.Length + 1), odd);
            case 7: return new[] { "../../../../tmp/sharplens-escape", "..", "a/../../b", "%2e%2e/%2e%2e/x", "../" + old, "/" + old }[rng.Next(6)];
            case 8: return new[] { "99999999999999999999", "0", "1", (long.TryParse(old, out long l) ? l + 1 - 2 * rng.Next(2) : 5).ToString() }[rng.Next(4)];
            case 9: return Hex(rng, rng.Next(2) == 0 ? 40 : 64);
            case 10 when name == "Location":
                return new[] { "/cdn/" + Hex(rng, 64), "http://127.0.0.1:1/cdn/x", "ftp://127.0.0.1/x", "file:///etc/passwd", "//127.0.0.1:1/x",
                    "http://[bad", "/fuzz-org/fuzz-model/resolve/main/../../../x" }[rng.Next(7)];
            case 11 when name.Contains("Etag", StringComparison.OrdinalIgnoreCase):
                string bare = old.Trim('"');
                return new[] { "\"" + bare, "W/\"" + bare + "\"", bare, "\"\"", "W/" }[rng.Next(5)];
            default: return old.Length == 0 ? Hex(rng, 40) : old[..rng.Next(old.Length)];
        }
    }
}
