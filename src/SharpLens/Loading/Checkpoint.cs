using static TorchSharp.torch;

namespace SharpLens.Loading;

/// <summary>Interim checkpoint loader (model.safetensors only).</summary>
public static class Checkpoint
{
    /// <summary>Loads every tensor of the folder's weights.</summary>
    public static Dictionary<string, Tensor> LoadStateDict(string folder)
    {
        var p = System.IO.Path.Combine(folder, "model.safetensors");
        if (!File.Exists(p)) throw new SharpLensException($"no weights in '{folder}': looked for model.safetensors");
        using var f = SafetensorsFile.Open(p);
        return f.Names.ToDictionary(n => n, n => f.Read(n));
    }
}
