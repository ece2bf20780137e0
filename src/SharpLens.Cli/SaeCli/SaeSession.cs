using System.Globalization;
using System.Text.Json.Nodes;
using SharpLens.Cli.Commands;
using SharpLens.Cli.Dla;
using SharpLens.Model;
using SharpLens.Sae;
using SharpLens.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Cli.SaeCli;

/// <summary>Options of <c>sharplens sae</c>.</summary>
internal sealed record SaeOptions(string Model, string Sae, string? SaeHook, IReadOnlyList<string> Prompts, string? TokensFile, string? AnswersFile,
    int TopK, string? JsonPath, string? ReportPath, bool NoBos, string Revision = "main", ScalarType Dtype = ScalarType.Float32,
    bool UseWeightsCache = true);

/// <summary>One feature of a token: id and activation.</summary>
internal sealed record FeatureAct(int Id, float Activation);

/// <summary>Everything <c>sharplens sae</c> prints and writes, as plain numbers.</summary>
internal sealed record SaeSummary(
    string ModelName, SparseAutoencoder Sae, long[][] Tokens, IReadOnlyList<IReadOnlyList<string>> StrTokens,
    float[,,] Acts, FeatureAct[][][] TopPerToken, float[] Frequency,
    SaeReconstructionMetrics Metrics, double CosSimMean, SaeCrossEntropy Ce,
    IReadOnlyList<(int Feature, double MeanLogitDiff)>? DlaTop, float[,]? Dla, string Dtype = "float32");

/// <summary>Runs the SAE analysis end to end: load, tokenize, analyse, print, then write JSON and report.</summary>
internal static class SaeSession
{
    public static int Run(SaeOptions o, TextWriter stdout, TextWriter stderr)
    {
        AtomicFile.RequireFolders(o.ReportPath, o.JsonPath); // before the (possibly long) run
        long[][]? ids = o.TokensFile is null ? null : RunCommand.ReadTokensFile(o.TokensFile);

        // The SAE first: a damaged SAE folder fails before the (longer) model load, its error the only line on stderr.
        var loadedSae = SaeLoading.Load([o.Sae], o.SaeHook is null ? [] : [o.SaeHook], stderr)[0];
        HookedTransformer loadedModel;
        try { loadedModel = ModelLoading.Load(o.Model, stderr, revision: o.Revision, dtype: o.Dtype, useWeightsCache: o.UseWeightsCache); }
        catch { loadedSae.Dispose(); throw; }
        using var model = loadedModel;
        using var sae = loadedSae; // disposed before the model, as when it was loaded second
        model.AddSae(sae); // validates the hook and width before any work
        model.ResetSaes();
        using var scope = NewDisposeScope();
        Tensor tokens;
        if (ids is not null) tokens = tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length], ScalarType.Int64);
        else
        {
            var batch = model.ToTokens(o.Prompts, prependBos: !o.NoBos);
            if (batch.AttentionMask is { } m && !m.all().item<bool>())
                throw new SharpLensException("The prompts tokenize to different lengths (" +
                    string.Join(", ", Enumerable.Range(0, (int)m.shape[0]).Select(i => m[i].sum().item<long>())) + " tokens); " +
                    "give prompts of equal token length, or run them one at a time.");
            tokens = batch.Tokens;
        }
        Tensor? answers = o.AnswersFile is null ? null : ReadAnswers(model, o.AnswersFile, (int)tokens.shape[0]);
        var summary = Analyse(model, o.Model, sae, tokens, answers, o.TopK, stderr);

        SaeOutput.Print(stdout, summary, o.TopK);
        DlaOutput.WriteOutputs(stdout,
            (o.JsonPath, () => DlaOutput.ToJsonText(SaeOutput.ToJson(summary))),
            (o.ReportPath, () => SaeOutput.Report(summary, o.TopK).Render()));
        return 0;
    }

    private static SaeSummary Analyse(HookedTransformer model, string modelName, SparseAutoencoder sae, Tensor tokens, Tensor? answers, int topK, TextWriter stderr)
    {
        stderr.WriteLine("[sharplens] encoding the hook's activations");
        var x = SaeAnalysis.HookActivation(model, sae, tokens);
        var acts = sae.Encode(x);
        var (values, indices) = SaeAnalysis.TopFeatures(acts, topK);
        long b = acts.shape[0], p = acts.shape[1];
        var v = values.data<float>().ToArray();
        var ix = indices.data<long>().ToArray();
        int k = (int)values.shape[^1];
        var top = new FeatureAct[b][][];
        for (int i = 0; i < b; i++)
        {
            top[i] = new FeatureAct[p][];
            for (int j = 0; j < p; j++)
                top[i][j] = Enumerable.Range(0, k).Select(t => ((i * p) + j) * k + t).Where(n => v[n] > 0).Select(n => new FeatureAct((int)ix[n], v[n])).ToArray();
        }
        var metrics = SaeAnalysis.Reconstruction(sae, x);
        stderr.WriteLine("[sharplens] cross-entropy clean / with SAE / zero-ablated");
        var ce = SaeAnalysis.CrossEntropy(model, sae, tokens);
        IReadOnlyList<(int, double)>? dlaTop = null;
        float[,]? dla = null;
        if (answers is not null)
        {
            stderr.WriteLine("[sharplens] feature direct logit attribution");
            var d = SaeAnalysis.FeatureDla(model, sae, tokens, SaeAnalysis.LogitDiffDirections(model, answers));
            dlaTop = SaeAnalysis.TopDla(d, topK);
            dla = To2D(d);
        }
        var rows = Enumerable.Range(0, (int)b).Select(i => tokens[i].data<long>().ToArray()).ToArray();
        var str = rows.Select(r => model.Tokenizer is { } t ? TextEncoding.ToStrTokens(t, r.Select(id => (int)id)) : r.Select(id => id.ToString(CultureInfo.InvariantCulture)).ToList()).ToList();
        var a3 = new float[b, p, acts.shape[2]];
        var flat = acts.data<float>().ToArray();
        Buffer.BlockCopy(flat, 0, a3, 0, flat.Length * sizeof(float));
        return new SaeSummary(modelName, sae, rows, str, a3, top, SaeAnalysis.FeatureFrequency(acts).data<float>().ToArray(), metrics,
            metrics.CosSimPerToken.mean().item<float>(), ce, dlaTop, dla, ModelDtype.Name(model.Dtype));
    }

    private static float[,] To2D(Tensor t)
    {
        var r = new float[t.shape[0], t.shape[1]];
        var flat = t.contiguous().data<float>().ToArray();
        Buffer.BlockCopy(flat, 0, r, 0, flat.Length * sizeof(float));
        return r;
    }

    /// <summary>[[correct, incorrect], ...] ids or [{"correct", "incorrect"}] with single-token strings or ids → [batch, 2].</summary>
    internal static Tensor ReadAnswers(HookedTransformer model, string path, int batch)
    {
        if (!File.Exists(path)) throw new SharpLensException($"Answers file '{path}' does not exist.");
        var root = JsonInput.ParseFileNode(path);
        if (root is not JsonArray arr || arr.Count != batch)
            throw new SharpLensException($"{path}: expected a JSON array with one answer pair per prompt ({batch}), e.g. [[5, 7]] or [{{\"correct\": \" Mary\", \"incorrect\": \" John\"}}].");
        var ids = new long[batch * 2];
        for (int i = 0; i < batch; i++)
        {
            JsonNode? c, w;
            if (arr[i] is JsonArray pair && pair.Count == 2) (c, w) = (pair[0], pair[1]);
            else if (arr[i] is JsonObject obj) (c, w) = (obj["correct"], obj["incorrect"]);
            else throw new SharpLensException($"{path}: entry {i} must be [correct, incorrect] or {{\"correct\", \"incorrect\"}}.");
            ids[2 * i] = Token(c, i, "correct");
            ids[2 * i + 1] = Token(w, i, "incorrect");
        }
        return tensor(ids, [batch, 2], ScalarType.Int64);

        long Token(JsonNode? n, int i, string role)
        {
            if (n is JsonValue jv && jv.TryGetValue(out long id))
            {
                if (id < 0 || id >= model.Config.DVocabOut) throw new SharpLensException($"{path}: entry {i} {role} token id {id} is outside the vocabulary [0, {model.Config.DVocabOut}).");
                return id;
            }
            if (n is JsonValue sv && sv.TryGetValue(out string? s))
            {
                if (model.Tokenizer is null) throw new SharpLensException($"{path}: entry {i} {role} is text, but model '{model.Config.ModelName}' has no tokenizer; give token ids.");
                try { return model.ToSingleToken(s); }
                catch (SharpLensException e) { throw new SharpLensException($"{path}: entry {i} {role}: {e.Message}"); }
            }
            throw new SharpLensException($"{path}: entry {i} needs a '{role}' answer (token id or single-token text).");
        }
    }
}
