#:project ../src/SharpLens/SharpLens.csproj
// Copied out of this repository, reference the package instead of the project:   #:package SharpLens@0.1.0
// The IOI direct-logit-attribution notebook (shared/seed/ioi_direct_logit_attribution_notebook.txt), cell by cell,
// with the SharpLens API. Run: dotnet run examples/ioi.cs [model]   (default gpt2-small; a local folder works too)
using SharpLens.Analysis;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

// In [4]: no autograd is ever built by SharpLens; load GPT-2 small with TransformerLens's weight processing.
string modelName = args.Length > 0 ? args[0] : "gpt2-small";
using var model = HookedTransformer.FromPretrained(modelName);
Console.WriteLine($"Loaded pretrained model {modelName} into HookedTransformer");
using var scope = NewDisposeScope();

// In [36]: prompts and (correct, incorrect) answers, exactly as the notebook builds them.
var prompts = new List<string>();
var answers = new List<(string Correct, string Incorrect)>();
var answerTokenIds = new List<long>();
foreach (var p in IoiDataset.Prompts())
{
    answers.Add((p.Correct, p.Incorrect));
    answerTokenIds.Add(model.ToSingleToken(p.Correct));
    answerTokenIds.Add(model.ToSingleToken(p.Incorrect));
    prompts.Add(p.Prompt);
}
var answerTokens = tensor(answerTokenIds.ToArray(), [prompts.Count, 2]);
// check that all the prompts have the same number of tokens
int promptLen = model.ToStrTokens(prompts[1]).Count;
if (prompts.Any(p => model.ToStrTokens(p).Count != promptLen)) throw new InvalidOperationException("prompts differ in length");

// In [24]: print all prompts in a table
Console.WriteLine("prompts and answers");
for (int i = 0; i < prompts.Count; i++) Console.WriteLine($"  {prompts[i],-60} | {answers[i].Correct,-8} | {answers[i].Incorrect}");

// In [26]: cache the logits and model internals for all the prompts
using var batch = model.ToTokens(prompts, prependBos: true);
var tokens = batch.Tokens;
var (ogLogits, cache) = model.RunWithCache(tokens);
using var _ = cache;

// In [65]: the metric
int nEx = prompts.Count, dModel = model.Config.DModel;
var ogLogitDiff = LogitDiff.PerPrompt(ogLogits, answerTokens);
var ogLogitAvgDiff = LogitDiff.Mean(ogLogits, answerTokens);
Console.WriteLine("Logit differences");
for (int i = 0; i < nEx; i++) Console.WriteLine($"  {prompts[i],-60} | {answers[i].Correct,-8} | {answers[i].Incorrect,-8} | {ogLogitDiff[i].item<float>():F3}");

// In [63]
Console.WriteLine($"tensor({ogLogitAvgDiff.item<float>():F4})");

// In [80]: map answer tokens to residual directions and check the DLA identity
var answerResidualDirections = model.TokensToResidualDirections(answerTokens);
Console.WriteLine($"[{string.Join(", ", answerResidualDirections.shape)}]");
var logitDiffDirections = answerResidualDirections[.., 0] - answerResidualDirections[.., 1];
var finalResidual = cache["resid_post", -1];
var finalTokResidual = finalResidual[.., -1, ..];
var scaledFinalTokenResidual = cache.ApplyLnToStack(finalTokResidual, layer: -1, posSlice: -1);
double averageAvgLogitDiff = einsum("bd,bd->", scaledFinalTokenResidual, logitDiffDirections).item<float>() / nEx;
Console.WriteLine($"{averageAvgLogitDiff - ogLogitAvgDiff.item<float>():E4}");

// Beyond the notebook: which layers and heads carry the answer.
var (accumulated, labels) = cache.AccumulatedResid(-1, inclMid: true, posSlice: -1);
var perLayer = einsum("cbd,bd->c", cache.ApplyLnToStack(accumulated, -1, posSlice: -1), logitDiffDirections) / nEx;
for (int i = 0; i < labels.Count; i++) Console.WriteLine($"  {labels[i],-12} {perLayer[i].item<float>():F3}");
var (heads, headLabels) = cache.StackHeadResults(-1, posSlice: -1);
var perHead = einsum("cbd,bd->c", cache.ApplyLnToStack(heads, -1, posSlice: -1), logitDiffDirections) / nEx;
foreach (var i in Enumerable.Range(0, headLabels.Count).OrderByDescending(i => Math.Abs(perHead[i].item<float>())).Take(5))
    Console.WriteLine($"  {headLabels[i],-6} {perHead[i].item<float>():F3}");
