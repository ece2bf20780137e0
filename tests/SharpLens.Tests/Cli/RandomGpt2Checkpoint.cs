using System.Text.Json.Nodes;
using SharpLens.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Cli;

/// <summary>
/// Class fixture: a random checkpoint with GPT-2's vocabulary (so the real tokenizer applies) but a tiny width, in a
/// temporary folder that is deleted when the test class is done (and, after a killed run, by the next run).
/// </summary>
public sealed class RandomGpt2Checkpoint : IDisposable
{
    private const string Prefix = "sharplens-random-gpt2-";

    /// <summary>The checkpoint folder.</summary>
    public string Dir { get; } = Create();

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static string Create()
    {
        // Folders of earlier test runs that were killed before their fixtures were disposed: their process is gone.
        foreach (var stale in Directory.GetDirectories(Path.GetTempPath(), Prefix + "*"))
            if (int.TryParse(Path.GetFileName(stale)[Prefix.Length..].Split('-')[0], out int pid) && !IsRunning(pid))
                try { Directory.Delete(stale, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        string dir = Directory.CreateTempSubdirectory($"{Prefix}{Environment.ProcessId}-").FullName;
        return Write(dir, layers: 2, dModel: 32, nHeads: 4, vocab: 50257, nCtx: 64, std: 0.2f, seed: 1234, randomNorms: true);
    }

    /// <summary>
    /// Writes a random GPT-2 checkpoint (Hugging Face layout, Conv1D shapes) into <paramref name="dir"/>: weights
    /// N(0, <paramref name="std"/>) from <paramref name="seed"/>; LayerNorm weights 1 (+ noise with <paramref name="randomNorms"/>).
    /// </summary>
    internal static string Write(string dir, int layers, int dModel, int nHeads, int vocab, int nCtx, float std, int seed, bool randomNorms)
    {
        Directory.CreateDirectory(dir);
        long d = dModel;
        File.WriteAllText(Path.Combine(dir, "config.json"), new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"), ["model_type"] = "gpt2", ["n_embd"] = dModel, ["n_layer"] = layers,
            ["n_head"] = nHeads, ["n_positions"] = nCtx, ["n_ctx"] = nCtx, ["vocab_size"] = vocab, ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = 1e-5, ["bos_token_id"] = vocab - 1, ["eos_token_id"] = vocab - 1,
        }.ToJsonString());
        using var scope = NewDisposeScope();
        var g = new Generator((ulong)seed);
        Tensor R(params long[] shape) => randn(shape, generator: g) * std;
        Tensor Norm() => randomNorms ? 1 + R(d) : ones(d);
        var t = new Dictionary<string, Tensor> { ["wte.weight"] = R(vocab, d), ["wpe.weight"] = R(nCtx, d), ["ln_f.weight"] = Norm(), ["ln_f.bias"] = R(d) };
        for (int l = 0; l < layers; l++)
        {
            string p = $"h.{l}.";
            t[p + "ln_1.weight"] = Norm(); t[p + "ln_1.bias"] = R(d); t[p + "ln_2.weight"] = Norm(); t[p + "ln_2.bias"] = R(d);
            t[p + "attn.c_attn.weight"] = R(d, 3 * d); t[p + "attn.c_attn.bias"] = R(3 * d);
            t[p + "attn.c_proj.weight"] = R(d, d); t[p + "attn.c_proj.bias"] = R(d);
            t[p + "mlp.c_fc.weight"] = R(d, 4 * d); t[p + "mlp.c_fc.bias"] = R(4 * d);
            t[p + "mlp.c_proj.weight"] = R(4 * d, d); t[p + "mlp.c_proj.bias"] = R(d);
        }
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), t);
        return dir;
    }

    private static bool IsRunning(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }
}
