using System.Text.Json;
using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Finds and loads the weights of a Hugging Face style model folder.</summary>
public static class Checkpoint
{
    /// <summary>The weight files looked for, in order of preference.</summary>
    public static readonly IReadOnlyList<string> WeightFileNames =
        ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

    /// <summary>
    /// The full path of the weights file <see cref="LoadStateDict(string)"/> would use, or null if the folder has none:
    /// <c>model.safetensors</c>, else the sharded <c>model.safetensors.index.json</c>, else <c>pytorch_model.bin</c>,
    /// else <c>pytorch_model.bin.index.json</c>.
    /// </summary>
    public static string? FindWeights(string folder) =>
        WeightFileNames.Select(n => Path.Combine(folder, n)).FirstOrDefault(File.Exists);

    /// <summary>
    /// Loads every tensor of the folder's weights (see <see cref="FindWeights"/>) under its checkpoint name.
    /// Safetensors tensors are memory-mapped views: treat them as read-only. Throws <see cref="SharpLensException"/>
    /// if the folder or its weights are missing, and <see cref="SafetensorsFormatException"/> for malformed files.
    /// </summary>
    public static Dictionary<string, Tensor> LoadStateDict(string folder) => LoadStateDict(folder, writable: false);

    /// <summary>
    /// Like <see cref="LoadStateDict(string)"/>; with <paramref name="writable"/> every tensor is read into its own
    /// fresh memory (no mapping), so the caller may modify it in place.
    /// </summary>
    /// <param name="folder">Model folder.</param>
    /// <param name="writable">Read into fresh memory instead of mapping the file.</param>
    /// <param name="skip">Names not to load at all (e.g. buffers the model does not use), or null.</param>
    public static Dictionary<string, Tensor> LoadStateDict(string folder, bool writable, Func<string, bool>? skip = null)
    {
        if (!Directory.Exists(folder)) throw new SharpLensException($"Model folder '{folder}' does not exist.");
        string path = FindWeights(folder) ?? throw new SharpLensException(
            $"Model folder '{folder}' has no weights: looked for {string.Join(", ", WeightFileNames)}; the folder contains {Listing(folder)}.");
        return Path.GetFileName(path) switch
        {
            "model.safetensors" => LoadSafetensors(path, writable, skip),
            "pytorch_model.bin" => Without(PytorchCheckpointReader.Load(path), skip),
            "model.safetensors.index.json" => LoadSharded(path, p => LoadSafetensors(p, writable, skip), skip),
            _ => LoadSharded(path, p => Without(PytorchCheckpointReader.Load(p), skip), skip),
        };
    }

    private static Dictionary<string, Tensor> LoadSafetensors(string path, bool writable, Func<string, bool>? skip)
    {
        using var f = SafetensorsFile.Open(path);
        return f.Names.Where(n => skip is null || !skip(n))
            .ToDictionary(n => n, n => writable ? f.ReadCopy(n) : f.Read(n), StringComparer.Ordinal);
    }

    /// <summary>
    /// Loads the shards named by an index's <c>weight_map</c> (tensor name → shard file). Every shard must exist,
    /// every mapped name must be in its shard, and no name may appear in two shards.
    /// </summary>
    /// <summary>Drops (and frees) the skipped tensors of a loader that cannot skip them while reading.</summary>
    private static Dictionary<string, Tensor> Without(Dictionary<string, Tensor> all, Func<string, bool>? skip)
    {
        if (skip is null) return all;
        foreach (var name in all.Keys.Where(skip).ToList())
        {
            all[name].Dispose();
            all.Remove(name);
        }
        return all;
    }

    private static Dictionary<string, Tensor> LoadSharded(string indexPath, Func<string, Dictionary<string, Tensor>> loadShard,
        Func<string, bool>? skip = null)
    {
        var map = ReadWeightMap(indexPath);
        string folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var shards = map.Values.Distinct().ToList();
        foreach (var s in shards)
            if (Path.IsPathRooted(s) || !Path.GetFullPath(Path.Combine(folder, s)).StartsWith(folder + Path.DirectorySeparatorChar))
                throw new SafetensorsFormatException($"{indexPath}: shard '{s}' is outside the model folder.");
        var missing = shards.Where(s => !File.Exists(Path.Combine(folder, s))).ToList();
        if (missing.Count > 0)
            throw new SharpLensException($"{indexPath}: {missing.Count} of {shards.Count} shard files are missing: {string.Join(", ", missing)} " +
                $"(needed for e.g. '{map.First(kv => kv.Value == missing[0]).Key}').");

        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var from = new Dictionary<string, string>(StringComparer.Ordinal);
        using var scope = NewDisposeScope(); // on error, frees what was loaded so far
        foreach (var shard in shards)
        {
            foreach (var (name, t) in loadShard(Path.Combine(folder, shard)))
            {
                if (from.TryGetValue(name, out var other))
                    throw new SafetensorsFormatException($"{indexPath}: tensor '{name}' is in two shards, '{other}' and '{shard}'.");
                (from[name], result[name]) = (shard, t);
            }
        }
        foreach (var (name, shard) in map)
            if (skip?.Invoke(name) != true && from.GetValueOrDefault(name) != shard)
                throw new SafetensorsFormatException($"{indexPath}: weight_map puts '{name}' in '{shard}', but " +
                    (from.TryGetValue(name, out var actual) ? $"it is in '{actual}'." : "no shard has it."));
        foreach (var t in result.Values) t.MoveToOuterDisposeScope();
        return result;
    }

    internal static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        using var doc = JsonInput.Parse(indexPath, JsonInput.ReadFile(indexPath),
            (m, e) => e is null ? new SafetensorsFormatException(m) : new SafetensorsFormatException(m, e));
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException($"{indexPath}: needs a 'weight_map' object (tensor name → shard file).");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in wm.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException($"{indexPath}: weight_map['{p.Name}'] must be a shard file name, got {p.Value.ValueKind}.");
            map[p.Name] = p.Value.GetString()!;
        }
        if (map.Count == 0) throw new SafetensorsFormatException($"{indexPath}: weight_map is empty.");
        return map;
    }

    private static string Listing(string folder)
    {
        var names = Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        return names.Count == 0 ? "nothing" : string.Join(", ", names.Take(20)) + (names.Count > 20 ? $", … ({names.Count} entries)" : "");
    }
}
