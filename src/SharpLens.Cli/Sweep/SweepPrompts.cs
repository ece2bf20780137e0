using System.Text.Json;
using SharpLens.Cli.Dla;
using SharpLens.Model;

namespace SharpLens.Cli.Sweep;

/// <summary>Prompts of an SAE statistics sweep: a JSON array of texts, or any prompts.json 'dla' reads (answers unused).</summary>
internal static class SweepPrompts
{
    public static List<DlaPrompt> Read(HookedTransformer model, string path)
    {
        if (!File.Exists(path)) throw new SharpLensException($"Prompts file '{path}' does not exist.");
        using var doc = ParseOrNull(path);
        if (doc is null || doc.RootElement.ValueKind != JsonValueKind.Array || doc.RootElement.GetArrayLength() == 0
            || doc.RootElement[0].ValueKind != JsonValueKind.String)
            return DlaInput.FromFile(model, path);
        var prompts = new List<DlaPrompt>();
        int i = 0;
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String) throw new SharpLensException($"{path}: entry {i} is not a string (an array of texts was expected).");
            using var batch = model.ToTokens(e.GetString()!);
            prompts.Add(new DlaPrompt(e.GetString()!, "", "", batch.Tokens[0].data<long>().ToArray(), 0, 0));
            i++;
        }
        return prompts;
    }

    // Malformed JSON is reported by DlaInput with its line and column.
    private static JsonDocument? ParseOrNull(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException) { return null; }
    }
}
