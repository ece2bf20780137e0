// A program of a SharpLens user, outside this repository: scripts/check-packages.sh builds it as a project and as a
// .NET 10 file-based app (with a '#:package SharpLens@VERSION' line added) against the freshly packed package.
// It runs the tiny fixture checkpoint and compares the logits with TransformerLens's.
// Usage: package-consumer <tiny-gpt2 folder>   (prints "max |logits - TransformerLens| = ...", exits 1 on a mismatch)
using SharpLens.Loading;
using SharpLens.Model;
using static TorchSharp.torch;

string dir = args[0];
using var model = HookedTransformer.FromPretrained(dir);   // a local folder: config.json + model.safetensors
using var scope = NewDisposeScope();
using var inputs = SafetensorsFile.Open(Path.Combine(dir, "expected", "inputs.safetensors"));
using var golden = SafetensorsFile.Open(Path.Combine(dir, "expected", "logits.safetensors"));
var tokens = inputs.Read("tokens");
var expected = golden.Read("logits_processed");
var (logits, cache) = model.RunWithCache(tokens);
using (cache)
{
    double diff = (logits - expected).abs().max().item<float>();
    double tolerance = 1e-4 * Math.Max(1, expected.abs().max().item<float>());
    Console.WriteLine($"logits [{string.Join(", ", logits.shape)}], {cache.Count} cached activations; max |logits - TransformerLens| = {diff:E2} (tolerance {tolerance:E2})");
    return diff <= tolerance ? 0 : 1;
}
