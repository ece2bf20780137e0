namespace SharpLens;

/// <summary>
/// Writes a file so that readers see either the old content or the complete new one: the data goes to a temporary
/// file beside the target, which is renamed over it; on failure the temporary file is removed.
/// </summary>
public static class AtomicFile
{
    private static readonly HashSet<string> InProgress = [];
    private static bool _aborted;

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        lock (InProgress)
        {
            if (_aborted) throw new OperationCanceledException($"Not writing {path}: the process is being interrupted.");
            InProgress.Add(tmp);
        }
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                write(fs);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
        finally
        {
            lock (InProgress) InProgress.Remove(tmp);
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
