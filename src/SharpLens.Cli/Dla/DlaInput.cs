using System.Text.Json;
using SharpLens.Analysis;
using SharpLens.Model;
using SharpLens.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.Dla;

/// <summary>One prompt of a DLA run, resolved to ids.</summary>
internal sealed record DlaPrompt(string Prompt, string Correct, string Incorrect, long[] Ids, int CorrectId, int IncorrectId);

/// <summary>Prompts of a DLA run: parsing (IOI set or prompts.json), tokenization, validation.</summary>
internal static class DlaInput
{
    /// <summary>The seed's 8 IOI prompts, tokenized with BOS; all must have the same length, as the seed asserts.</summary>
    public static List<DlaPrompt> Ioi(HookedTransformer model)
    {
        var list = FromPairs(model, IoiDataset.Prompts(), i => $"IOI prompt {i}");
        int len = list[0].Ids.Length;
        foreach (var p in list.Where(p => p.Ids.Length != len))
        {
            var strs = model.ToStrTokens(p.Prompt);
            throw new SharpLensException($"IOI prompts must all have the same token length ({len}, like the first), but {TextEncoding.Excerpt(p.Prompt)} has " +
                $"{p.Ids.Length}: [{string.Join(", ", strs.Select(TextEncoding.Quote))}].");
        }
        return list;
    }

    private static List<DlaPrompt> FromPairs(HookedTransformer model, IEnumerable<PromptPair> pairs, Func<int, string> where)
    {
        var tokenizer = model.Tokenizer ?? throw new SharpLensException(
            $"Model '{model.Config.ModelName}' has no tokenizer, so text prompts cannot be used; give token ids instead.");
        var list = new List<DlaPrompt>();
        int i = 0;
        foreach (var p in pairs)
        {
            int Single(string s, string role)
            {
                try { return TextEncoding.ToSingleToken(tokenizer, s); }
                catch (SharpLensException e) { throw new SharpLensException($"{where(i)}: the {role} answer must be a single token. {e.Message}", e); }
            }
            var ids = TextEncoding.ToTokenIds(tokenizer, p.Prompt, model.Config.DefaultPrependBos, model.Config.NCtx, truncate: false)
                .Select(x => (long)x).ToArray();
            list.Add(new DlaPrompt(p.Prompt, p.Correct, p.Incorrect, ids, Single(p.Correct, "correct"), Single(p.Incorrect, "incorrect")));
            i++;
        }
        return list;
    }

    /// <summary>
    /// Reads prompts.json: an array of <c>{"prompt","correct","incorrect"}</c> or
    /// <c>{"tokens":[ids],"correct_id","incorrect_id"}</c> entries.
    /// </summary>
    public static List<DlaPrompt> FromFile(HookedTransformer model, string path) => Read(model, path);

    /// <summary>
    /// The checks of <see cref="FromFile"/> that need no model (JSON, entry shapes, integer ids), run before the model
    /// loads: a damaged prompts file then fails at once, with its error as the only line on stderr.
    /// </summary>
    public static void CheckFile(string path) => Read(null, path);

    private static List<DlaPrompt> Read(HookedTransformer? model, string path)
    {
        if (!File.Exists(path)) throw new SharpLensException($"Prompts file '{path}' does not exist.");
        using (var doc = JsonInput.ParseFile(path))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
                throw new SharpLensException($"{path}: expected a JSON array of prompts, got {doc.RootElement.ValueKind}.");
            if (doc.RootElement.GetArrayLength() == 0)
                throw new SharpLensException($"{path}: the prompt list is empty; give at least one {{\"prompt\", \"correct\", \"incorrect\"}} entry.");
            var result = new List<DlaPrompt>();
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                string where = $"{path}: entry {i}";
                if (e.ValueKind != JsonValueKind.Object) throw new SharpLensException($"{where} is not an object.");
                if (e.TryGetProperty("tokens", out var toks))
                {
                    long[] ids;
                    int c, w;
                    try
                    {
                        ids = toks.EnumerateArray().Select(t => t.GetInt64()).ToArray();
                        c = e.GetProperty("correct_id").GetInt32();
                        w = e.GetProperty("incorrect_id").GetInt32();
                    }
                    catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException)
                    {
                        throw new SharpLensException($"{where}: a token entry needs \"tokens\" (array of ids), \"correct_id\" and \"incorrect_id\" (integers).");
                    }
                    if (ids.Length == 0) throw new SharpLensException($"{where}: \"tokens\" is empty.");
                    if (model is null) { i++; continue; }
                    var outside = ids.Concat([c, w]).Where(x => x < 0 || x >= model.Config.DVocab).ToList();
                    if (outside.Count > 0)
                        throw new SharpLensException($"{where}: token id {outside[0]} is outside the vocabulary [0, {model.Config.DVocab}).");
                    string text = model.Tokenizer is { } tk ? TextEncoding.TokensToString(tk, ids.Select(x => (int)x)) : string.Join(" ", ids);
                    string Str(int id) => model.Tokenizer is { } t ? TextEncoding.ToSingleStrToken(t, id) : id.ToString();
                    result.Add(new DlaPrompt(text, Str(c), Str(w), ids, c, w));
                }
                else
                {
                    string Field(string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                        : throw new SharpLensException($"{where}: missing string field \"{name}\" (entries are {{\"prompt\", \"correct\", \"incorrect\"}} or {{\"tokens\", \"correct_id\", \"incorrect_id\"}}).");
                    var pair = new PromptPair(Field("prompt"), Field("correct"), Field("incorrect"));
                    if (model is not null) result.Add(FromPairs(model, [pair], _ => where)[0]);
                }
                i++;
            }
            for (int k = 0; k < result.Count; k++)
                if (result[k].Ids.Length > model!.Config.NCtx)
                    throw new SharpLensException($"{path}: entry {k} ({TextEncoding.Excerpt(result[k].Prompt)}) has {result[k].Ids.Length} tokens, " +
                        $"more than n_ctx = {model.Config.NCtx}.");
            return result;
        }
    }

    /// <summary>Right-padded [batch, pos] tokens, [batch, 2] answers and each prompt's real length.</summary>
    public static (Tensor Tokens, Tensor Answers, int[] Lengths) ToTensors(HookedTransformer model, IReadOnlyList<DlaPrompt> prompts)
    {
        var (tokens, lengths) = PromptTensors.RightPadded(prompts.Select(p => p.Ids).ToList(), PromptTensors.PadId(model));
        var answers = tensor(prompts.SelectMany(p => new long[] { p.CorrectId, p.IncorrectId }).ToArray(), [prompts.Count, 2]);
        return (tokens, answers, lengths);
    }
}
