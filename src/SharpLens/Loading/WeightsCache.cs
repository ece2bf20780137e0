using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>
/// The processed-weights cache: after a load that had to convert weights (processing, a dtype change, a
/// <c>pytorch_model.bin</c>), the model's parameters are written as one safetensors file laid out exactly as the model
/// holds them (q/k/v fused per layer), so the next load of the same checkpoint with the same settings maps that file
/// instead of reading and processing the checkpoint.
/// <para>
/// Folder: <c>$SHARPLENS_CACHE/weights</c>, else <c>$XDG_CACHE_HOME/sharplens/weights</c>, else
/// <c>~/.cache/sharplens/weights</c>. Files are named by a hash of their key (see <see cref="WeightsCacheKey"/>), which
/// each file also carries in full in its header metadata and which is compared on every read. Size bound:
/// <see cref="DefaultMaxBytes"/> (<c>SHARPLENS_WEIGHTS_CACHE_MAX_GB</c>), least recently used files are deleted first.
/// <c>SHARPLENS_WEIGHTS_CACHE=0</c> turns the cache off.
/// </para>
/// <para>
/// Safety: a file is written to a temporary name, flushed to disk and renamed into place, so readers (and concurrent
/// writers: the last rename wins, both files are complete) only ever see whole files. A read validates the header, the
/// key, the exact file length and a SHA-256 of samples of every tensor's bytes (first, middle and last 4 KiB);
/// a file failing any check is deleted and rebuilt. Hashing every byte would cost as much as the load it saves, so
/// damage to a file's interior outside the samples after it was written completely is not detected.
/// </para>
/// </summary>
public sealed class WeightsCache
{
    /// <summary>Version of the file layout and key; bump when either changes so old files stop matching.</summary>
    public const int FormatVersion = 1;

    /// <summary>Default size bound: 20 GiB.</summary>
    public const long DefaultMaxBytes = 20L << 30;

    private const string FormatKey = "sharplens_weights_cache", KeyKey = "key", SampleKey = "sample_sha256";
    private const int SampleBytes = 4096;
    private static readonly string Placeholder = new('0', 64);
    private static readonly TimeSpan StaleTemp = TimeSpan.FromHours(6);

    /// <summary>A cache in <paramref name="folder"/> holding at most <paramref name="maxBytes"/> bytes of files.</summary>
    public WeightsCache(string folder, long maxBytes = DefaultMaxBytes)
    {
        if (maxBytes < 0) throw new SharpLensException($"Weights cache size bound must be ≥ 0 bytes, got {maxBytes}.");
        (Folder, MaxBytes) = (Path.GetFullPath(folder), maxBytes);
    }

    /// <summary>The folder holding the cache files.</summary>
    public string Folder { get; }

    /// <summary>Upper bound of the total size of the cache files; older files are deleted to stay under it.</summary>
    public long MaxBytes { get; }

    /// <summary>
    /// The cache the environment asks for: <c>SHARPLENS_CACHE</c> / <c>XDG_CACHE_HOME</c> / home as above, the bound from
    /// <c>SHARPLENS_WEIGHTS_CACHE_MAX_GB</c>; null when <c>SHARPLENS_WEIGHTS_CACHE</c> is <c>0</c>, <c>false</c> or <c>off</c>.
    /// </summary>
    public static WeightsCache? FromEnvironment() =>
        FromEnvironment(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    internal static WeightsCache? FromEnvironment(Func<string, string?> env, string home)
    {
        if (env("SHARPLENS_WEIGHTS_CACHE")?.Trim().ToLowerInvariant() is "0" or "false" or "off" or "no") return null;
        long max = DefaultMaxBytes;
        if (NonEmpty(env("SHARPLENS_WEIGHTS_CACHE_MAX_GB")) is { } gb)
        {
            if (!double.TryParse(gb, NumberStyles.Float, CultureInfo.InvariantCulture, out double g) || !(g >= 0))
                throw new SharpLensException($"SHARPLENS_WEIGHTS_CACHE_MAX_GB is '{gb}'; it must be a number of GiB ≥ 0 (e.g. 20 or 0.5).");
            max = (long)Math.Min(g * (1L << 30), long.MaxValue / 2);
        }
        return new WeightsCache(Path.Combine(SharpLensCacheRoot(env, home), "weights"), max);
    }

    /// <summary>SharpLens's cache folder: <c>$SHARPLENS_CACHE</c>, else <c>$XDG_CACHE_HOME/sharplens</c>, else <c>~/.cache/sharplens</c>.</summary>
    public static string SharpLensCacheRoot() =>
        SharpLensCacheRoot(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    internal static string SharpLensCacheRoot(Func<string, string?> env, string home) =>
        NonEmpty(env("SHARPLENS_CACHE")) ?? Path.Combine(NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache"), "sharplens");

    /// <summary>The file that holds (or would hold) the entry for <paramref name="key"/>.</summary>
    public string PathFor(WeightsCacheKey key) => Path.Combine(Folder, key.FileName);

    /// <summary>
    /// Opens the valid cache file for <paramref name="key"/>, or returns null: when there is none, or when the file
    /// fails validation (then it is deleted and <paramref name="problem"/> says why).
    /// </summary>
    public SafetensorsFile? TryOpen(WeightsCacheKey key, out string? problem)
    {
        problem = null;
        string path = PathFor(key);
        if (!File.Exists(path)) return null;
        SafetensorsFile? file = null;
        try
        {
            file = SafetensorsFile.Open(path);
            problem = Validate(file, key);
            if (problem is null)
            {
                Touch(path);
                return file;
            }
        }
        catch (SafetensorsFormatException e) { problem = e.Message; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SharpLensException) { problem = $"{path}: {e.Message}"; }
        file?.Dispose();
        Delete(path);
        return null;
    }

    /// <summary>Deletes the entry for <paramref name="key"/> (e.g. a file whose tensors did not fit the model).</summary>
    public void Remove(WeightsCacheKey key) => Delete(PathFor(key));

    /// <summary>
    /// Writes <paramref name="tensors"/> as the entry for <paramref name="key"/> (atomically), then deletes least recently
    /// used files until the cache fits <see cref="MaxBytes"/>. Returns false without writing when the entry alone exceeds
    /// the bound. File-system failures (disk full, read-only folder) are <see cref="SharpLensException"/>s; nothing partial
    /// is left behind.
    /// </summary>
    public bool Store(WeightsCacheKey key, IReadOnlyList<KeyValuePair<string, Tensor>> tensors)
    {
        var layout = new List<(long Begin, long End)>();
        long offset = 0;
        foreach (var (name, t) in tensors)
        {
            if (!SafetensorsDtypes.TryGetName(t.dtype, out _, out int size))
                throw new SharpLensException($"Weights cache: tensor '{name}' has dtype {t.dtype}, which safetensors files cannot hold.");
            layout.Add((offset, offset += t.numel() * size));
        }
        byte[] header = Header(key, tensors);
        long total = 8 + header.Length + offset;
        if (total > MaxBytes) return false;

        string path = PathFor(key);
        string tmp = Path.Combine(Folder, $".{key.FileName}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(Folder);
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20))
            {
                fs.Write(BitConverter.GetBytes((ulong)header.Length));
                fs.Write(header);
                foreach (var (_, t) in tensors) WriteData(fs, t);
                fs.Flush();
                // The checksum covers the bytes as they are in the file, read back the same way a reader will.
                string hash = SampleHash(fs.SafeFileHandle, 8 + header.Length, layout);
                fs.Position = 8 + IndexOf(header, Encoding.ASCII.GetBytes(Placeholder));
                fs.Write(Encoding.ASCII.GetBytes(hash));
                fs.Flush(flushToDisk: true); // the rename below must never publish a file whose data is still in flight
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Delete(tmp);
            throw new SharpLensException($"Cannot write the weights cache file '{path}': {e.Message}", e);
        }
        catch
        {
            Delete(tmp);
            throw;
        }
        Evict(keep: path);
        return true;
    }

    /// <summary>
    /// Deletes cache files, least recently used first (a hit refreshes a file's time), until the total is within
    /// <see cref="MaxBytes"/>; never <paramref name="keep"/>. Also removes temporary files abandoned by crashed writers.
    /// </summary>
    public void Evict(string? keep = null)
    {
        if (!Directory.Exists(Folder)) return;
        var files = new DirectoryInfo(Folder).EnumerateFiles("*.safetensors").ToList();
        long total = files.Sum(f => f.Length);
        foreach (var f in files.OrderBy(f => f.LastWriteTimeUtc))
        {
            if (total <= MaxBytes) break;
            if (keep is not null && f.FullName == Path.GetFullPath(keep)) continue;
            if (Delete(f.FullName)) total -= f.Length;
        }
        foreach (var t in new DirectoryInfo(Folder).EnumerateFiles(".*.tmp"))
            if (DateTime.UtcNow - t.LastWriteTimeUtc > StaleTemp) Delete(t.FullName);
    }

    private static string? Validate(SafetensorsFile file, WeightsCacheKey key)
    {
        var meta = file.Metadata;
        if (meta.GetValueOrDefault(FormatKey) != FormatVersion.ToString(CultureInfo.InvariantCulture))
            return $"{file.Path}: not a weights cache file of format {FormatVersion} (metadata '{FormatKey}' is '{meta.GetValueOrDefault(FormatKey)}').";
        if (meta.GetValueOrDefault(KeyKey) != key.Text)
            return $"{file.Path}: its key does not match the requested checkpoint and settings.";
        if (file.UnusedDataBytes != 0)
            return $"{file.Path}: {file.UnusedDataBytes} bytes of its data block belong to no tensor (damaged).";
        var layout = file.Names.Select(n => file.Info(n)).Select(i => (i.Begin, i.End)).ToList();
        long dataEnd = layout.Count == 0 ? 0 : layout.Max(x => x.End);
        long length = new FileInfo(file.Path).Length;
        if (length != file.DataOffset + dataEnd)
            return $"{file.Path}: file is {length} bytes, its header describes {file.DataOffset + dataEnd}.";
        using var handle = File.OpenHandle(file.Path);
        string hash = SampleHash(handle, file.DataOffset, layout);
        return hash == meta.GetValueOrDefault(SampleKey) ? null : $"{file.Path}: its data does not match the checksum in its header (damaged).";
    }

    /// <summary>SHA-256 over the first, middle and last <see cref="SampleBytes"/> of every tensor (all of a small one).</summary>
    private static string SampleHash(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long dataOffset, IReadOnlyList<(long Begin, long End)> layout)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[SampleBytes];
        void Add(long begin, long end)
        {
            for (long at = begin; at < end;)
            {
                int n = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - at)), dataOffset + at);
                if (n == 0) throw new IOException("file ended inside a tensor");
                sha.AppendData(buffer, 0, n);
                at += n;
            }
        }
        foreach (var (begin, end) in layout)
        {
            if (end - begin <= 3 * SampleBytes) { Add(begin, end); continue; }
            long mid = begin + (end - begin) / 2 / SampleBytes * SampleBytes;
            Add(begin, begin + SampleBytes);
            Add(mid, mid + SampleBytes);
            Add(end - SampleBytes, end);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static byte[] Header(WeightsCacheKey key, IReadOnlyList<KeyValuePair<string, Tensor>> tensors)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            w.WriteString(FormatKey, FormatVersion.ToString(CultureInfo.InvariantCulture));
            w.WriteString(SampleKey, Placeholder);
            w.WriteString(KeyKey, key.Text);
            w.WriteEndObject();
            long offset = 0;
            foreach (var (name, t) in tensors)
            {
                SafetensorsDtypes.TryGetName(t.dtype, out string dtype, out int size);
                w.WriteStartObject(name);
                w.WriteString("dtype", dtype);
                w.WriteStartArray("shape");
                foreach (var d in t.shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset += t.numel() * size);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad to a multiple of 64 bytes: every tensor then starts aligned for any element type and for SIMD loads.
        while (ms.Length % 64 != 0) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private static void WriteData(Stream fs, Tensor t)
    {
        const long chunkBytes = 1 << 26; // Tensor.bytes is an int-length span
        using var scope = NewDisposeScope();
        var flat = t.detach().cpu().contiguous().reshape(-1);
        long perChunk = Math.Max(1, chunkBytes / flat.element_size());
        for (long start = 0; start < flat.numel(); start += perChunk)
            fs.Write(flat.narrow(0, start, Math.Min(perChunk, flat.numel() - start)).bytes);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        int i = haystack.AsSpan().IndexOf(needle);
        return i >= 0 ? i : throw new InvalidOperationException("checksum placeholder missing from the header");
    }

    private static void Touch(string path)
    {
        try { File.SetLastWriteTimeUtc(path, DateTime.UtcNow); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // read-only cache: still usable
    }

    private static bool Delete(string path)
    {
        try { File.Delete(path); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s.Trim();
}
