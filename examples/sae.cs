#:project ../src/SharpLens/SharpLens.csproj
// Copied out of this repository, reference the package instead of the project:   #:package SharpLens@0.1.0
// Sparse autoencoder features on a prompt: load a model and an SAE, print the top features per token, ablate one.
// Run: dotnet run examples/sae.cs [model] [sae] [hook]
//   default: gpt2-small with Joseph Bloom's residual SAE at blocks.8.hook_resid_pre from the Hugging Face Hub
//   (SAELens release gpt2-small-res-jb); a local SAELens folder or Gemma Scope params.npz works too.
using SharpLens.Model;
using SharpLens.Sae;
using static TorchSharp.torch;

string modelName = args.Length > 0 ? args[0] : "gpt2-small";
string saeLocation = args.Length > 1 ? args[1] : "jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre";
string? hook = args.Length > 2 ? args[2] : null;

using var model = HookedTransformer.FromPretrained(modelName);
using var sae = SparseAutoencoder.Load(saeLocation, hook);
Console.WriteLine($"Loaded {model.Config.ModelName} and {sae}");
using var scope = NewDisposeScope();

// A prompt (token ids when the model has no tokenizer).
var tokens = model.Tokenizer is not null
    ? model.ToTokens("When Mary and John went to the store, John gave a drink to").Tokens
    : arange(1, 13).unsqueeze(0);
var strTokens = model.Tokenizer is not null ? model.ToStrTokens(tokens[0]) : tokens[0].data<long>().Select(t => t.ToString()).ToList();

// Splice the SAE in with the error term: the model's output is unchanged, the SAE's hooks are cached.
var (logits, cache) = model.RunWithCacheWithSaes(tokens, [sae], useErrorTerm: true);
using (cache)
{
    var acts = cache[$"{sae.HookName}.hook_sae_acts_post"];           // [1, pos, d_sae]
    var (values, ids) = SaeAnalysis.TopFeatures(acts[0], 5);
    for (int p = 0; p < strTokens.Count; p++)
        Console.WriteLine($"{p,3} {strTokens[p],-12} " + string.Join("  ",
            Enumerable.Range(0, 5).Where(k => values[p, k].item<float>() > 0).Select(k => $"{ids[p, k].item<long>()}:{values[p, k].item<float>():F2}")));

    var x = cache[$"{sae.HookName}.hook_sae_input"];
    var m = SaeAnalysis.Reconstruction(sae, x);
    var ce = SaeAnalysis.CrossEntropy(model, sae, tokens);
    Console.WriteLine($"L0 {m.L0Mean:F1}  explained variance {m.ExplainedVariance:F3}  CE clean {ce.Clean:F3} / with SAE {ce.WithSae:F3} " +
        $"/ zero-ablated {ce.ZeroAblation:F3}  score {ce.Score:F3}");

    // Ablate the feature that fires most strongly at the last token and see what it did to the next-token prediction.
    int feature = (int)ids[^1, 0].item<long>();
    var ablated = SaeAnalysis.AblateFeatures(model, sae, tokens, [feature]);
    var next = logits[0, -1].argmax().item<long>();
    Console.WriteLine($"Ablating feature {feature}: logit of the predicted next token {next} goes from " +
        $"{logits[0, -1, next].item<float>():F3} to {ablated[0, -1, next].item<float>():F3}");
}
