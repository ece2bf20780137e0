using SharpLens.Analysis;
using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Model;

/// <summary>What <see cref="HookedTransformer.RunWithCacheToFile"/> wrote.</summary>
/// <param name="Path">The safetensors file.</param>
/// <param name="ActivationNames">The cached hook names, in file order.</param>
/// <param name="OutputName">Name of the model output in the file (<c>logits</c>, or <c>residual</c> with stopAtLayer), or null when not written.</param>
/// <param name="OutputShape">Shape of the model output.</param>
/// <param name="Bytes">File size in bytes.</param>
public sealed record ActivationFileSummary(string Path, IReadOnlyList<string> ActivationNames, string? OutputName, long[] OutputShape, long Bytes);

public sealed partial class HookedTransformer
{
    /// <summary>
    /// <see cref="RunWithCache(Tensor, Func{string, bool}?, bool, Tensor?, bool, Func{Tensor, Tensor}?, Slice, ScalarType?)"/>
    /// straight to a safetensors file: each cached activation is written the moment its hook fires and then freed, so
    /// the run needs memory for the model, one block's activations and the logits, however large the cache. The file
    /// holds <c>logits</c> (with <paramref name="stopAtLayer"/>: <c>residual</c>, the stream entering that block),
    /// <c>tokens</c> and then the activations in the order they fire — byte for byte what <see cref="SafetensorsWriter.Write"/>
    /// writes for <c>[logits, tokens, ..cache]</c> of the same in-memory run. The header comes first in the file, so
    /// its names, dtypes and shapes are worked out before the run by a shape pass: the model runs on three tiny batches
    /// ([1, 2], [2, 2], [1, 3] token ids 0) to learn which hooks fire and which axes follow the batch and the
    /// positions; the hooks attached to the model do not see those passes. Every activation of the real run is checked
    /// against its header entry. The file is written under a temporary name and renamed at the end: an exception or
    /// an interrupt leaves no file. Gradients are not streamed (the autograd graph keeps every activation anyway: use
    /// the in-memory RunWithCache with includeBackward).
    /// </summary>
    /// <param name="tokens">Token ids [batch, pos].</param>
    /// <param name="path">The safetensors file to write.</param>
    /// <param name="namesFilter">Which hook points to write; null writes all that fire. A filter that matches none of them is an error.</param>
    /// <param name="attentionMask">Padding mask [batch, pos].</param>
    /// <param name="stopAtLayer">Run and write only blocks before this one (see <see cref="RunWithCache(Tensor, int, Func{string, bool}?, Slice, ScalarType?, bool, Tensor?)"/>).</param>
    /// <param name="posSlice">Write only these positions of each activation (TransformerLens's <c>pos_slice</c>).</param>
    /// <param name="cacheDtype">Write activations in this dtype (the output and tokens keep theirs).</param>
    /// <param name="metadata">The header's <c>__metadata__</c> strings.</param>
    /// <param name="writeOutput">Write the logits (or residual).</param>
    /// <param name="writeTokens">Write the token ids (int64 [batch, pos]).</param>
    public ActivationFileSummary RunWithCacheToFile(Tensor tokens, string path, Func<string, bool>? namesFilter = null, Tensor? attentionMask = null,
        int? stopAtLayer = null, Slice posSlice = default, ScalarType? cacheDtype = null, IReadOnlyDictionary<string, string>? metadata = null,
        bool writeOutput = true, bool writeTokens = true)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!BitConverter.IsLittleEndian) throw new SharpLensException("Writing safetensors files on a big-endian host is not supported.");
        using var scope = NewDisposeScope();
        var toks = PrepareTokens(tokens, 0);
        long batch = toks.shape[0], pos = toks.shape[1];
        var transform = CacheTransform.Create(posSlice, cacheDtype, pos);
        var range = LayerRange(null, stopAtLayer);
        var (activations, output) = ShapePass(namesFilter, attentionMask is not null, range, batch, pos);
        if (namesFilter is not null && activations.Count == 0)
            throw new SharpLensException($"{path}: the names filter matches no hook point that fires; nothing to write. " +
                "Hook names look like 'blocks.0.attn.hook_pattern'; see HookedTransformer.HookNames.");

        string outputName = stopAtLayer is null ? "logits" : "residual";
        var entries = new List<SafetensorsEntry>();
        void Add(string name, ScalarType dtype, long[] shape)
        {
            if (!SafetensorsDtypes.TryGetName(dtype, out string dt, out int size))
                throw new SharpLensException($"{path}: '{name}' has dtype {dtype}, which safetensors files here cannot hold; allowed: {SafetensorsDtypes.Allowed}.");
            if (entries.Any(e => e.Name == name)) throw new SharpLensException($"{path}: tensor name '{name}' would be written twice.");
            entries.Add(new SafetensorsEntry(name, dt, shape, shape.Aggregate(1L, (a, d) => a * d) * size));
        }
        if (writeOutput) Add(outputName, output.Dtype, output.Shape);
        if (writeTokens) Add("tokens", ScalarType.Int64, [batch, pos]);
        foreach (var (name, dtype, shape) in activations) Add(name, transform.Dtype(dtype), transform.Shape(name, shape));

        byte[] header = SafetensorsWriter.Header(entries, metadata);
        long dataStart = 8 + header.Length;
        var offsets = new Dictionary<string, (long Offset, SafetensorsEntry Entry)>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var e in entries) { offsets[e.Name] = (offset, e); offset += e.Bytes; }
        long total = dataStart + offset;

        AtomicFile.Write(path, fs =>
        {
            fs.Write(BitConverter.GetBytes((ulong)header.Length));
            fs.Write(header);
            var written = new HashSet<string>(StringComparer.Ordinal);
            void Put(string name, Tensor t)
            {
                if (!offsets.TryGetValue(name, out var slot))
                    throw new SharpLensException($"{path}: hook '{name}' fired in the run but not in the shape pass; streaming cannot place it. Use the in-memory RunWithCache.");
                if (!written.Add(name)) throw new SharpLensException($"{path}: hook '{name}' fired twice in one run; streaming writes each activation once.");
                SafetensorsDtypes.TryGetName(t.dtype, out string dt, out _);
                if (dt != slot.Entry.Dtype || !t.shape.SequenceEqual(slot.Entry.Shape))
                    throw new SharpLensException($"{path}: '{name}' is {dt} {TensorExtensions.ShapeText(t.shape)} in the run, but the shape pass predicted " +
                        $"{slot.Entry.Dtype} {TensorExtensions.ShapeText(slot.Entry.Shape)}; use the in-memory RunWithCache for this model.");
                fs.Seek(dataStart + slot.Offset, SeekOrigin.Begin);
                SafetensorsWriter.WriteData(fs, t);
            }
            var regs = new List<IDisposable>();
            try
            {
                foreach (var (name, _, _) in activations)
                    regs.Add(GetHookPoint(name).Add((act, point) =>
                    {
                        using var hookScope = NewDisposeScope();
                        Put(point.Name, transform.Apply(point.Name, act));
                        return null;
                    }, permanent: false));
                using var noGrad = no_grad();
                var result = ForwardCore(toks, attentionMask, null, range, scope);
                if (writeOutput) Put(outputName, result);
                if (writeTokens) Put("tokens", toks);
            }
            finally
            {
                foreach (var r in regs) r.Dispose();
            }
            var missing = entries.Select(e => e.Name).Where(n => !written.Contains(n)).ToList();
            if (missing.Count > 0)
                throw new SharpLensException($"{path}: {missing.Count} activation(s) of the shape pass never fired in the run ({string.Join(", ", missing.Take(4))}).");
            fs.SetLength(total);
        });
        return new ActivationFileSummary(path, activations.Select(a => a.Name).ToList(), writeOutput ? outputName : null, output.Shape, total);
    }

    /// <summary>
    /// Which hooks fire (in order) and the dtype and shape of each activation and of the output for a [batch, pos]
    /// input, from three tiny runs: an axis that follows the batch size or the length becomes batch or pos; any other
    /// axis must stay constant.
    /// </summary>
    private (List<(string Name, ScalarType Dtype, long[] Shape)> Activations, (ScalarType Dtype, long[] Shape) Output) ShapePass(
        Func<string, bool>? namesFilter, bool withMask, (int Start, int? Stop) range, long batch, long pos)
    {
        long p0 = Config.NCtx >= 3 ? 2 : 1;
        (long B, long P)[] sizes = [(1, p0), (2, p0), (1, p0 + 1)];
        var runs = new List<List<(string Name, ScalarType Dtype, long[] Shape)>>();
        var observed = _hookPoints.Where(hp => namesFilter is null || namesFilter(hp.Name)).ToHashSet();
        foreach (var (b, p) in sizes)
        {
            var seen = new List<(string, ScalarType, long[])>();
            // A probe, not hooks: the user's hooks (and SAE hook points' hooks) must not see these tiny forwards.
            using (HookProbe.Begin((point, act) => { if (observed.Contains(point)) seen.Add((point.Name, act.dtype, act.shape)); }))
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var output = ForwardCore(zeros([b, p], ScalarType.Int64), withMask ? ones([b, p], ScalarType.Int64) : null, null, range, scope);
                seen.Add(("", output.dtype, output.shape));
            }
            runs.Add(seen);
        }
        if (runs[1].Count != runs[0].Count || runs[2].Count != runs[0].Count
            || !runs.All(r => r.Select(x => x.Name).SequenceEqual(runs[0].Select(x => x.Name))))
            throw new SharpLensException("The hooks that fire depend on the input size; this run cannot be streamed. Use the in-memory RunWithCache.");
        var result = new List<(string, ScalarType, long[])>();
        for (int i = 0; i < runs[0].Count; i++)
        {
            var (name, dtype, a) = runs[0][i];
            long[] b = runs[1][i].Shape, c = runs[2][i].Shape;
            if (b.Length != a.Length || c.Length != a.Length)
                throw new SharpLensException($"The rank of '{name}' depends on the input size; this run cannot be streamed. Use the in-memory RunWithCache.");
            var shape = new long[a.Length];
            for (int d = 0; d < a.Length; d++)
                shape[d] = (a[d] == b[d] && a[d] == c[d]) ? a[d]
                    : (a[d] == 1 && b[d] == 2 && c[d] == 1) ? batch
                    : (a[d] == p0 && b[d] == p0 && c[d] == p0 + 1) ? pos
                    // batch·pos·k flattened into one axis (per-head q/k norm hooks: [batch·pos·heads, ...])
                    : (a[d] % p0 == 0 && b[d] == 2 * a[d] && c[d] == a[d] / p0 * (p0 + 1)) ? batch * pos * (a[d] / p0)
                    : throw new SharpLensException($"Axis {d} of '{name}' is neither constant nor the batch or position axis; " +
                        "this run cannot be streamed. Use the in-memory RunWithCache.");
            result.Add((name, dtype, shape));
        }
        var last = result[^1];
        result.RemoveAt(result.Count - 1);
        return (result, (last.Item2, last.Item3));
    }
}
