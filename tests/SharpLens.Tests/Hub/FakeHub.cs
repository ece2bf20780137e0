using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace SharpLens.Tests.Hub;

/// <summary>
/// A small HTTP/1.1 server on 127.0.0.1 that answers like the Hugging Face Hub:
/// <c>/{org}/{name}/resolve/{revision}/{file}</c> with <c>X-Repo-Commit</c>/<c>ETag</c>, a 302 to a separate "CDN"
/// host (<c>localhost</c>) for LFS files with <c>X-Linked-Etag</c>/<c>X-Linked-Size</c>, Range support, the Hub's
/// <c>X-Error-Code</c> on 404s, and fault switches. Raw sockets so a response can be cut after N bytes.
/// </summary>
internal sealed class FakeHub : IDisposable
{
    public const string Commit = "1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
    public static readonly string[] Revisions = ["main", Commit, "refs/pr/1", "v1.0", "step143000"];

    public sealed record RepoFile(byte[] Bytes, bool Lfs)
    {
        public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Bytes));
        /// <summary>git's blob id: sha1("blob {size}\0" + content), the Hub's ETag for small files.</summary>
        public string GitSha1 => Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {Bytes.Length}\0"), .. Bytes]));
        public string Etag => Lfs ? Sha256 : GitSha1;
    }

    public sealed record Request(string Method, string Target, bool HasAuth, string? Range, int Status);

    public readonly Dictionary<string, Dictionary<string, RepoFile>> Repos = new();
    public readonly ConcurrentQueue<Request> Log = new();

    // fault switches (each "count" is consumed by the matching requests)
    public int CutCdnAfterBytes = -1;
    public int CutCount;
    public int Fail500Count;
    public int StallCount;
    public bool IgnoreRange;
    public bool CorruptLfs;
    public bool Always401;
    public int ChunkDelayMs;

    /// <summary>
    /// Fuzzing hook, called with (method, target, headers, body) for every response: may change the headers in place
    /// (a <c>Content-Length</c> entry replaces the real one; <see cref="Omit"/> as its value sends none) and returns the body to send.
    /// </summary>
    public Func<string, string, Dictionary<string, string>, byte[], byte[]>? Tamper;

    /// <summary>A header value that makes <see cref="Send"/> leave the header out (for <c>Content-Length</c>).</summary>
    public const string Omit = "\0omit";

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();

    public FakeHub()
    {
        _listener.Start();
        _ = AcceptLoop();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;
    public string Endpoint => $"http://127.0.0.1:{Port}";

    /// <summary>The tiny GPT-2 fixture as repo <c>test-org/tiny-gpt2</c> (config.json plain, model.safetensors in LFS, one file in a subfolder).</summary>
    public static FakeHub WithTinyGpt2()
    {
        var hub = new FakeHub();
        hub.Repos["test-org/tiny-gpt2"] = new()
        {
            ["config.json"] = new(System.IO.File.ReadAllBytes(Path.Combine(Golden.Dir, "config.json")), Lfs: false),
            ["model.safetensors"] = new(System.IO.File.ReadAllBytes(Path.Combine(Golden.Dir, "model.safetensors")), Lfs: true),
            ["sub/dir/notes.txt"] = new("nested file\n"u8.ToArray(), Lfs: false),
        };
        return hub;
    }

    public RepoFile File(string repo, string name) => Repos[repo][name];
    public int Count(Func<Request, bool> match) => Log.Count(match);
    public int CdnGets => Count(r => r.Method == "GET" && r.Target.StartsWith("/cdn/", StringComparison.Ordinal));

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch { return; }
            _ = Task.Run(async () =>
            {
                using (client)
                    try { await Handle(client); }
                    catch (IOException) { } // client went away
                    catch (OperationCanceledException) { }
            });
        }
    }

    private async Task Handle(TcpClient client)
    {
        var stream = client.GetStream();
        // Requests are HEAD/GET without bodies: the header block is all there is to read.
        var reader = new StreamReader(stream, Encoding.ASCII, false, 1024, leaveOpen: true);
        string? requestLine = await reader.ReadLineAsync();
        if (string.IsNullOrEmpty(requestLine)) return;
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (string? line; !string.IsNullOrEmpty(line = await reader.ReadLineAsync());)
        {
            int colon = line.IndexOf(':');
            headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        var parts = requestLine.Split(' ');
        string method = parts[0], target = parts[1];
        headers.TryGetValue("Range", out var range);
        var resp = Route(method, target, headers, range);
        if (Tamper is { } tamper) resp = resp with { Body = tamper(method, target, resp.Headers, resp.Body) };
        Log.Enqueue(new Request(method, target, headers.ContainsKey("Authorization"), range, resp.Status));
        await Send(client, stream, method, resp);
    }

    private sealed record Response(int Status, Dictionary<string, string> Headers, byte[] Body, bool IsCdnBody = false);

    private static Response Status(int status, params (string, string)[] headers) =>
        new(status, headers.ToDictionary(h => h.Item1, h => h.Item2), []);

    private Response Route(string method, string target, Dictionary<string, string> headers, string? range)
    {
        if (Interlocked.Decrement(ref Fail500Count) >= 0) return Status(500);
        if (Always401) return Status(401, ("X-Error-Message", "Invalid credentials in Authorization header"));
        var seg = target.Split('/');
        if (seg.Length == 3 && seg[1] == "cdn")
        {
            var file = Repos.Values.SelectMany(r => r.Values).FirstOrDefault(f => f.Lfs && f.Sha256 == seg[2]);
            if (file is null) return Status(404);
            var bytes = file.Bytes;
            if (CorruptLfs) { bytes = (byte[])bytes.Clone(); bytes[bytes.Length / 2] ^= 0xFF; }
            return Body(bytes, IgnoreRange ? null : range, [("ETag", $"\"{file.Sha256}\"")], cdn: true);
        }
        // /{org}/{name}/resolve/{revision}/{file...}
        if (seg.Length < 6 || seg[3] != "resolve") return Status(404);
        string repo = $"{seg[1]}/{seg[2]}", revision = Uri.UnescapeDataString(seg[4]);
        string name = Uri.UnescapeDataString(string.Join('/', seg[5..]));
        if (!Repos.TryGetValue(repo, out var files))
            return Status(404, ("X-Error-Code", "RepoNotFound"), ("X-Error-Message", "Repository not found"));
        if (!Revisions.Contains(revision))
            return Status(404, ("X-Error-Code", "RevisionNotFound"), ("X-Error-Message", "Invalid rev id: " + revision));
        if (!files.TryGetValue(name, out var f))
            return Status(404, ("X-Error-Code", "EntryNotFound"), ("X-Error-Message", "Entry not found"), ("X-Repo-Commit", Commit));
        if (f.Lfs)
            return Status(302, ("Location", $"http://localhost:{Port}/cdn/{f.Sha256}"), ("X-Repo-Commit", Commit),
                ("X-Linked-Etag", $"\"{f.Sha256}\""), ("X-Linked-Size", f.Bytes.Length.ToString()), ("ETag", $"\"{f.GitSha1}\""));
        return Body(f.Bytes, IgnoreRange ? null : range, [("ETag", $"\"{f.GitSha1}\""), ("X-Repo-Commit", Commit)], cdn: false);
    }

    private static Response Body(byte[] bytes, string? range, (string, string)[] headers, bool cdn)
    {
        var h = headers.ToDictionary(x => x.Item1, x => x.Item2);
        h["Accept-Ranges"] = "bytes";
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            long from = long.Parse(range[6..^1]);
            if (from >= bytes.Length) return new Response(416, new() { ["Content-Range"] = $"bytes */{bytes.Length}" }, []);
            h["Content-Range"] = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
            return new Response(206, h, bytes[(int)from..], cdn);
        }
        return new Response(200, h, bytes, cdn);
    }

    private async Task Send(TcpClient client, NetworkStream stream, string method, Response r)
    {
        var head = new StringBuilder($"HTTP/1.1 {r.Status} {(HttpStatusCode)r.Status}\r\n");
        foreach (var (k, v) in r.Headers.Where(h => h.Value != Omit)) head.Append($"{k}: {v}\r\n");
        if (!r.Headers.ContainsKey("Content-Length")) head.Append($"Content-Length: {r.Body.Length}\r\n");
        head.Append("Connection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.Latin1.GetBytes(head.ToString())); // Latin-1: a tampered header may carry any byte
        if (method == "HEAD") return;
        if (r.IsCdnBody && Interlocked.Decrement(ref StallCount) >= 0)
        {
            await stream.FlushAsync();
            await Task.Delay(TimeSpan.FromSeconds(10), _stop.Token); // the client's read timeout fires first
            return;
        }
        int limit = r.IsCdnBody && CutCdnAfterBytes >= 0 && Interlocked.Decrement(ref CutCount) >= 0
            ? Math.Min(CutCdnAfterBytes, r.Body.Length) : r.Body.Length;
        for (int i = 0; i < limit; i += 16384)
        {
            await stream.WriteAsync(r.Body.AsMemory(i, Math.Min(16384, limit - i)));
            if (ChunkDelayMs > 0) await Task.Delay(ChunkDelayMs);
        }
        await stream.FlushAsync();
        if (limit < r.Body.Length) client.Client.Shutdown(SocketShutdown.Both); // cut: fewer bytes than Content-Length
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
