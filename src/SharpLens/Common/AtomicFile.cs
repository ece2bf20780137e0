namespace SharpLens;

/// <summary>
/// Writes a file so that readers see either the old content or the complete new one: the data goes to a temporary
/// file beside the target, which is renamed over it; on failure the temporary file is removed.
/// </summary>
public static class AtomicFile
{
    private static readonly HashSet<string> InProgress = [];
    private static bool _aborted;

    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/>, atomically. A file-system failure (folder
    /// missing or read-only, target is a folder, disk full) is a <see cref="SharpLensException"/> naming the file.
    /// </summary>
    public static void Write(string path, Action<Stream> write) => WriteAll([(path, write)]);

    /// <summary>
    /// Throws a <see cref="SharpLensException"/> naming the file when the folder an output path would go into does not
    /// exist (null paths are skipped). Commands call it before their work, so a typo fails at once; a write never creates folders.
    /// </summary>
    public static void RequireFolders(params string?[] paths)
    {
        foreach (var path in paths)
            if (path is not null && Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir && !Directory.Exists(dir))
                throw new SharpLensException($"Cannot write '{path}': folder '{dir}' does not exist.");
    }

    /// <summary>
    /// Writes several outputs of one run as a unit: every file is first written completely to its temporary file, and
    /// only then are they all renamed into place. If any write fails, none of the targets is touched, so a failure
    /// midway never leaves one output of the run beside a missing other.
    /// </summary>
    public static void WriteAll(IReadOnlyList<(string Path, Action<Stream> Write)> files)
    {
        RequireFolders([.. files.Select(f => f.Path)]);
        var staged = new List<(string Path, string Full, string Tmp)>();
        try
        {
            foreach (var (path, write) in files)
            {
                string full = Path.GetFullPath(path);
                if (Directory.Exists(full)) throw new SharpLensException($"Cannot write '{path}': it is a folder.");
                string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
                lock (InProgress)
                {
                    if (_aborted) throw new OperationCanceledException($"Not writing {path}: the process is being interrupted.");
                    InProgress.Add(tmp);
                }
                staged.Add((path, full, tmp));
                IoErrors(path, () =>
                {
                    using var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
                    write(fs);
                });
            }
            foreach (var (path, full, tmp) in staged) IoErrors(path, () => File.Move(tmp, full, overwrite: true));
        }
        catch
        {
            foreach (var (_, _, tmp) in staged)
                try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        finally
        {
            lock (InProgress) foreach (var (_, _, tmp) in staged) InProgress.Remove(tmp);
        }
    }

    private static void IoErrors(string path, Action io)
    {
        try { io(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SharpLensException($"Cannot write '{path}': {e.Message}", e);
        }
    }

    /// <summary>Writes UTF-8 text (no byte-order mark) atomically.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, s => s.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));

    /// <summary>
    /// For an interrupt handler that is about to end the process: deletes the temporary files of writes still in
    /// progress and makes later writes fail, so no partial file is left behind.
    /// </summary>
    public static void AbortAll()
    {
        lock (InProgress)
        {
            _aborted = true;
            foreach (var tmp in InProgress)
                try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
