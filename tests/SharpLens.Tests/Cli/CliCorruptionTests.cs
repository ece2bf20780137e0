using System.Text;
using System.Text.Json.Nodes;
using SharpLens.Loading;
using SharpLens.Tests.Sae;
using static TorchSharp.torch;
using static SharpLens.Tests.Cli.CliTestHelper;

namespace SharpLens.Tests.Cli;

/// <summary>
/// The real CLI (in-process) on damaged inputs of every kind, as a user or an acceptance check would produce them: each
/// command must exit with a code in 1..127, print exactly one line starting with "error:", no stack frame, create no
/// output file and leave an earlier output file untouched.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CliCorruptionTests : IDisposable
{
    private readonly string _dir = TestEnvironment.NewTempDir("cli-");

    public void Dispose()
    {
        foreach (var f in Directory.EnumerateFileSystemEntries(_dir, "*", SearchOption.AllDirectories))
            try { File.SetUnixFileMode(f, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); } catch (IOException) { }
        Directory.Delete(_dir, true);
    }

    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>A copy of a fixture model folder (config.json and model.safetensors).</summary>
    private string CopyModel(string fixture = "tiny-gpt2", string name = "model")
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;
        foreach (var f in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(Golden.Dir, "..", fixture, f), Path.Combine(folder, f));
        return folder;
    }

    private static void EditConfig(string folder, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, "config.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    }

    /// <summary>Rewrites a safetensors file with its tensors edited (replace, add, remove).</summary>
    internal static void EditTensors(string path, Action<Dictionary<string, Tensor>> edit)
    {
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> tensors;
        using (var f = SafetensorsFile.Open(path)) tensors = f.Names.ToDictionary(n => n, n => f.ReadCopy(n));
        edit(tensors);
        File.Delete(path);
        SafetensorsWriter.Write(path, tensors);
    }

    internal string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>Damage to the model folder: name → what it does to a copy of tiny-gpt2.</summary>
    private static readonly Dictionary<string, Action<string>> ModelDamage = new()
    {
        ["weights-truncated"] = m => { var p = Path.Combine(m, "model.safetensors"); File.WriteAllBytes(p, File.ReadAllBytes(p)[..5000]); },
        ["weights-header-only"] = m => { var p = Path.Combine(m, "model.safetensors"); var b = File.ReadAllBytes(p); File.WriteAllBytes(p, b[..(8 + (int)BitConverter.ToUInt64(b))]); },
        ["weights-empty"] = m => File.WriteAllBytes(Path.Combine(m, "model.safetensors"), []),
        ["weights-text"] = m => File.WriteAllText(Path.Combine(m, "model.safetensors"), "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"),
        ["weights-dir"] = m => { File.Delete(Path.Combine(m, "model.safetensors")); Directory.CreateDirectory(Path.Combine(m, "model.safetensors")); },
        ["weights-missing"] = m => File.Delete(Path.Combine(m, "model.safetensors")),
        ["weights-symlink-loop"] = m => { var p = Path.Combine(m, "model.safetensors"); File.Delete(p); File.CreateSymbolicLink(p, p); },
        ["weights-dangling-symlink"] = m => { var p = Path.Combine(m, "model.safetensors"); File.Delete(p); File.CreateSymbolicLink(p, Path.Combine(m, "nowhere")); },
        ["weights-unreadable"] = m => File.SetUnixFileMode(Path.Combine(m, "model.safetensors"), UnixFileMode.None),
        ["weights-missing-tensor"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t.Remove("h.1.mlp.c_fc.weight")),
        ["weights-wrong-shape"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["h.0.attn.c_attn.weight"] = zeros(64, 100)),
        ["weights-wrong-rank"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["ln_f.weight"] = zeros(8, 8)),
        ["weights-scalar"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["ln_f.bias"] = tensor(1f)),
        ["weights-int64"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["h.0.mlp.c_fc.weight"] = t["h.0.mlp.c_fc.weight"].to(ScalarType.Int64)),
        ["weights-bool"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["wte.weight"] = t["wte.weight"] > 0),
        ["weights-int8"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["wpe.weight"] = t["wpe.weight"].to(ScalarType.Int8)),
        ["weights-nan"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["h.0.ln_1.weight"] = full(64, float.NaN)),
        ["weights-inf"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["wte.weight"] = full(1000, 64, float.PositiveInfinity)),
        ["weights-small-vocab"] = m => EditTensors(Path.Combine(m, "model.safetensors"), t => t["wte.weight"] = t["wte.weight"][..10]),
        ["config-missing"] = m => File.Delete(Path.Combine(m, "config.json")),
        ["config-empty"] = m => File.WriteAllText(Path.Combine(m, "config.json"), ""),
        ["config-dir"] = m => { File.Delete(Path.Combine(m, "config.json")); Directory.CreateDirectory(Path.Combine(m, "config.json")); },
        ["config-symlink-loop"] = m => { var p = Path.Combine(m, "config.json"); File.Delete(p); File.CreateSymbolicLink(p, p); },
        ["config-unreadable"] = m => File.SetUnixFileMode(Path.Combine(m, "config.json"), UnixFileMode.None),
        ["config-null"] = m => File.WriteAllText(Path.Combine(m, "config.json"), "null"),
        ["config-string-layers"] = m => EditConfig(m, o => o["n_layer"] = "2"),
        ["config-float-layers"] = m => EditConfig(m, o => o["n_layer"] = 2.5),
        ["config-zero-layers"] = m => EditConfig(m, o => o["n_layer"] = 0),
        ["config-more-layers"] = m => EditConfig(m, o => o["n_layer"] = 7),
        ["config-zero-heads"] = m => EditConfig(m, o => o["n_head"] = 0),
        ["config-heads-not-dividing"] = m => EditConfig(m, o => o["n_head"] = 3),
        ["config-zero-vocab"] = m => EditConfig(m, o => o["vocab_size"] = 0),
        ["config-bigger-vocab"] = m => EditConfig(m, o => o["vocab_size"] = 5000),
        ["config-tiny-ctx"] = m => EditConfig(m, o => o["n_positions"] = 2),
        ["config-zero-ctx"] = m => { EditConfig(m, o => { o["n_positions"] = 0; o["n_ctx"] = 0; }); },
        ["config-huge-ctx"] = m => EditConfig(m, o => o["n_positions"] = 1L << 40),
        ["config-missing-embd"] = m => EditConfig(m, o => o.Remove("n_embd")),
        ["config-unknown-arch"] = m => EditConfig(m, o => { o["architectures"] = new JsonArray("FooForCausalLM"); o["model_type"] = "foo"; }),
        ["config-no-arch"] = m => EditConfig(m, o => { o.Remove("architectures"); o.Remove("model_type"); }),
        ["config-arch-number"] = m => EditConfig(m, o => o["architectures"] = 5),
        ["config-unknown-activation"] = m => EditConfig(m, o => o["activation_function"] = "swish9"),
        ["config-negative-eps"] = m => EditConfig(m, o => o["layer_norm_epsilon"] = -1),
        ["config-nan-eps"] = m => File.WriteAllText(Path.Combine(m, "config.json"), File.ReadAllText(Path.Combine(m, "config.json")).Replace("1e-05", "NaN")),
        ["config-lone-surrogate"] = m => File.WriteAllText(Path.Combine(m, "config.json"), File.ReadAllText(Path.Combine(m, "config.json")).Replace("\"gelu_new\"", "\"gelu\\udc00\"")),
        ["config-llama-arch-on-gpt2-weights"] = m => File.Copy(Path.Combine(Golden.Dir, "..", "tiny-llama", "config.json"), Path.Combine(m, "config.json"), true),
        ["folder-empty"] = m => { File.Delete(Path.Combine(m, "config.json")); File.Delete(Path.Combine(m, "model.safetensors")); },
        ["bin-garbage"] = m => { File.Delete(Path.Combine(m, "model.safetensors")); File.WriteAllText(Path.Combine(m, "pytorch_model.bin"), "not a zip"); },
        ["index-missing-shard"] = m =>
        {
            File.Move(Path.Combine(m, "model.safetensors"), Path.Combine(m, "model-00001-of-00002.safetensors"));
            File.WriteAllText(Path.Combine(m, "model.safetensors.index.json"),
                "{\"weight_map\": {\"wte.weight\": \"model-00001-of-00002.safetensors\", \"ln_f.weight\": \"model-00002-of-00002.safetensors\"}}");
        },
        ["index-escapes-folder"] = m =>
        {
            File.Move(Path.Combine(m, "model.safetensors"), Path.Combine(m, "model-00001-of-00001.safetensors"));
            File.WriteAllText(Path.Combine(m, "model.safetensors.index.json"), "{\"weight_map\": {\"wte.weight\": \"../../../../etc/passwd\"}}");
        },
        ["tokenizer-garbage"] = m => File.WriteAllText(Path.Combine(m, "tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": 5}}"),
        ["tokenizer-dir"] = m => Directory.CreateDirectory(Path.Combine(m, "tokenizer.json")),
        ["tokenizer-model-garbage"] = m => File.WriteAllBytes(Path.Combine(m, "tokenizer.model"), [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
    };

    public static TheoryData<string, string> ModelCases()
    {
        var d = new TheoryData<string, string>();
        string[] commands = ["run", "dla", "patch", "generate", "ioi", "sae", "attribute"];
        int i = 0;
        foreach (var damage in ModelDamage.Keys)
        {
            if (damage.StartsWith("tokenizer", StringComparison.Ordinal)) { d.Add("run-prompt", damage); d.Add("tokenize", damage); continue; }
            // Every damage with run, and each with one other command in turn, so all commands meet all kinds of damage.
            d.Add("run", damage);
            d.Add(commands[1 + i++ % (commands.Length - 1)], damage);
        }
        return d;
    }

    /// <summary>Runs <paramref name="command"/> on <paramref name="model"/> with valid other inputs; returns the CLI result and the output paths.</summary>
    private ((int Code, string Out, string Err) Result, string[] Outputs) RunCommand(string command, string model)
    {
        string outDir = Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName;
        string existing = Path.Combine(outDir, "existing.json"), fresh = Path.Combine(outDir, "fresh.html");
        File.WriteAllText(existing, "earlier output");
        string tokens = Write("tokens.json", "[[1, 2, 3, 4], [5, 6, 7, 8]]");
        string answers = Write("answers.json", "[[5, 6], [7, 8]]");
        string prompts = Write("prompts.json", "[{\"tokens\": [1, 2, 3, 4], \"correct_id\": 5, \"incorrect_id\": 6}, {\"tokens\": [7, 8, 9, 10], \"correct_id\": 11, \"incorrect_id\": 12}]");
        string sae = SaeGolden.Folder("standard_blocks.0.hook_resid_post");
        string[] args = command switch
        {
            "run" => ["run", "--model", model, "--tokens-file", tokens, "--out", existing],
            "run-prompt" => ["run", "--model", model, "--prompt", "hello world", "--out", existing],
            "dla" => ["dla", "--model", model, "--prompts", prompts, "--json", existing, "--report", fresh],
            "patch" => ["patch", "--model", model, "--clean", prompts, "--corrupted", prompts, "--kind", "resid_pre", "--json", existing, "--report", fresh],
            "generate" => ["generate", "--model", model, "--tokens", "1,2,3", "--max-new-tokens", "3", "--greedy"],
            "ioi" => ["ioi", "--model", model, "--json", existing, "--report", fresh, "--top-k", "3"],
            "sae" => ["sae", "--model", model, "--sae", sae, "--tokens-file", tokens, "--answers", answers, "--json", existing, "--report", fresh],
            "attribute" => ["attribute", "--model", model, "--tokens-file", tokens, "--answers", answers, "--steps", "2", "--json", existing, "--report", fresh],
            "tokenize" => ["tokenize", "--tokenizer", model, "hello world"],
            _ => throw new ArgumentException(command),
        };
        return (Run(args), [existing, fresh]);
    }

    private static void AssertCleanFailure((int Code, string Out, string Err) r, string[] outputs, string what)
    {
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("[sharplens]", StringComparison.Ordinal)).ToList();
        Assert.True(r.Code is >= 1 and <= 127, $"{what}: exit {r.Code}, stderr:\n{r.Err}");
        Assert.True(lines.Count == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"{what}: expected one 'error:' line, got:\n{r.Err}");
        Assert.False(r.Err.Contains("   at ", StringComparison.Ordinal), $"{what}: stack trace:\n{r.Err}");
        Assert.False(r.Err.Contains("internal error", StringComparison.Ordinal), $"{what}: {r.Err}");
        Assert.Equal("earlier output", File.ReadAllText(outputs[0]));
        Assert.False(File.Exists(outputs[1]), $"{what}: {outputs[1]} was created");
        Assert.Equal(2, Directory.GetFileSystemEntries(Path.GetDirectoryName(outputs[0])!).Length + (File.Exists(outputs[1]) ? 0 : 1));
    }

    [Theory]
    [MemberData(nameof(ModelCases))]
    public void DamagedModelFolder(string command, string damage)
    {
        if (damage.EndsWith("unreadable", StringComparison.Ordinal) && IsRoot) return; // root reads mode-000 files
        string model = CopyModel();
        ModelDamage[damage](model);
        var (r, outputs) = RunCommand(command, model);
        // Non-finite weights: run exports the activations faithfully (NaN and all); JSON outputs cannot hold them.
        if (damage is "weights-nan" or "weights-inf" && command is "run" or "generate" && r.Code == 0) return;
        AssertCleanFailure(r, outputs, $"{command} / {damage}");
    }

    public static TheoryData<string, string> FamilyCases()
    {
        var d = new TheoryData<string, string>();
        foreach (var f in new[] { "tiny-gemma", "tiny-gemma2", "tiny-gemma3", "tiny-gptj", "tiny-llama", "tiny-mistral", "tiny-neo", "tiny-neox",
                     "tiny-olmo2", "tiny-opt", "tiny-phi3", "tiny-qwen2", "tiny-qwen3" })
            foreach (var damage in new[] { "truncated", "int64", "no-first-tensor", "config-layers-string", "config-no-vocab", "config-gpt2" })
                d.Add(f, damage);
        return d;
    }

    /// <summary>Every family's folder, damaged in a few generic ways, through <c>sharplens run</c>.</summary>
    [Theory]
    [MemberData(nameof(FamilyCases))]
    public void DamagedFamilyFolder(string family, string damage)
    {
        string model = CopyModel(family);
        string weights = Path.Combine(model, "model.safetensors");
        string first;
        using (var f = SafetensorsFile.Open(weights)) first = f.Names.Order(StringComparer.Ordinal).First();
        switch (damage)
        {
            case "truncated": File.WriteAllBytes(weights, File.ReadAllBytes(weights)[..(int)(new FileInfo(weights).Length * 2 / 3)]); break;
            case "int64": EditTensors(weights, t => { foreach (var k in t.Keys.ToList()) t[k] = t[k].to(ScalarType.Int64); }); break;
            case "no-first-tensor": EditTensors(weights, t => t.Remove(first)); break;
            case "config-layers-string": EditConfig(model, o => { foreach (var k in new[] { "num_hidden_layers", "n_layer", "num_layers" }) if (o.ContainsKey(k)) o[k] = "2"; }); break;
            case "config-no-vocab": EditConfig(model, o => o.Remove("vocab_size")); break;
            default: File.Copy(Path.Combine(Golden.Dir, "config.json"), Path.Combine(model, "config.json"), true); break;
        }
        var (r, outputs) = RunCommand("run", model);
        AssertCleanFailure(r, outputs, $"{family} / {damage}");
    }

    /// <summary>A structurally damaged prompts file fails before the model loads: its error is the only line on stderr.</summary>
    [Fact]
    public void DamagedPromptsFileFailsBeforeTheModelLoads()
    {
        string prompts = Write("prompts.json", "[{\"tokens\": [1, 2], \"correct_id\": 5}]");
        foreach (var args in new[]
        {
            new[] { "dla", "--model", Golden.Dir, "--prompts", prompts, "--json", Existing },
            ["patch", "--model", Golden.Dir, "--clean", prompts, "--corrupted", prompts, "--kind", "resid_pre", "--json", Existing],
        })
        {
            var r = Run(args);
            Assert.Equal(1, r.Code);
            Assert.Equal($"error: {prompts}: entry 0: a token entry needs \"tokens\" (array of ids), \"correct_id\" and \"incorrect_id\" (integers).", r.Err.Trim());
        }
    }

    /// <summary><c>sharplens sae</c> loads the SAE before the model: a damaged cfg.json's error is the only line on stderr.</summary>
    [Fact]
    public void DamagedSaeFailsBeforeTheModelLoads()
    {
        string sae = Directory.CreateDirectory(Path.Combine(_dir, "sae")).FullName;
        foreach (var f in Directory.GetFiles(Sae0)) File.Copy(f, Path.Combine(sae, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(sae, "cfg.json"), "{\"d_in\": \"64\"}");
        var r = Run("sae", "--model", Golden.Dir, "--sae", sae, "--tokens-file", Write("tokens.json", "[[1, 2, 3]]"), "--json", Existing);
        Assert.Equal(1, r.Code);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith($"error: {Path.Combine(sae, "cfg.json")}: ", line);
    }

    /// <summary>Damaged prompt, token, answer, SAE and text files, and out-of-range arguments, with the intact tiny GPT-2.</summary>
    public static TheoryData<string> InputCases() => [.. InputDamage.Keys];

    private static readonly string[] BadTokenLists =
    [
        "", "   ", "[]", "[[]]", "[[], []]", "[[1, 2], [3]]", "[[-1, 2]]", "[[1, 2, 1000]]", "[[1, 9223372036854775807]]", "[[1, 1e30]]",
        "[[1, NaN]]", "[[1, Infinity]]", "[[1, 2.5]]", "[[1, null]]", "[[[1, 2]]]", "[1, 2, 3]", "{\"tokens\": [1]}", "null", "\"1,2\"",
        "[[" + string.Join(",", Enumerable.Repeat(1, 65)) + "]]", "[[1, 2]", "\uFEFF[[1, 2]]x", "[[1, 2]] [[3]]", "[[true, false]]",
    ];

    private static readonly string[] BadPrompts =
    [
        "", "[]", "{}", "[{}]", "[null]", "[{\"tokens\": [], \"correct_id\": 5, \"incorrect_id\": 6}]",
        "[{\"tokens\": [1, 2], \"correct_id\": -5, \"incorrect_id\": 6}]", "[{\"tokens\": [1, 2], \"correct_id\": 5000, \"incorrect_id\": 6}]",
        "[{\"tokens\": [1, 2], \"correct_id\": NaN, \"incorrect_id\": 6}]", "[{\"tokens\": [1, -2], \"correct_id\": 5, \"incorrect_id\": 6}]",
        "[{\"tokens\": [1, 2], \"correct_id\": 5}]", "[{\"tokens\": [1, 2], \"correct_id\": \"5\", \"incorrect_id\": 6}]",
        "[{\"tokens\": [1, 2], \"correct_id\": 5.5, \"incorrect_id\": 6}]", "[{\"tokens\": \"1 2\", \"correct_id\": 5, \"incorrect_id\": 6}]",
        "[{\"prompt\": \"hi\", \"correct\": \" a\", \"incorrect\": \" b\"}]",
        "[{\"tokens\": [" + string.Join(",", Enumerable.Repeat(1, 65)) + "], \"correct_id\": 5, \"incorrect_id\": 6}]",
        "[{\"tokens\": [[1, 2]], \"correct_id\": 5, \"incorrect_id\": 6}]",
        "[{\"tokens\": [1, 2], \"correct_id\": 5, \"incorrect_id\": 6, \"note\": \"\\ud800\"}]",
    ];

    private static readonly string[] BadAnswers =
    [
        "", "[]", "[[5]]", "[[5, 6, 7]]", "[[5, 6]]", "[[5, 6], [7, 8], [9, 10]]", "[[5, -6], [7, 8]]", "[[5, 6000], [7, 8]]", "[[5, NaN], [7, 8]]",
        "[[5, 6.5], [7, 8]]", "[5, 6]", "{\"a\": 1}", "[[\"x\", 6], [7, 8]]", "[[5, 99999999999999999999], [7, 8]]", "[{}, {}]", "[null, null]",
    ];

    /// <summary>Each case: the CLI arguments (paths under the test folder), after writing the damaged file.</summary>
    private static Dictionary<string, Func<CliCorruptionTests, string[]>> InputDamage => LazyInputDamage.Value;
    private static readonly Lazy<Dictionary<string, Func<CliCorruptionTests, string[]>>> LazyInputDamage = new(BuildInputDamage);

    private static Dictionary<string, Func<CliCorruptionTests, string[]>> BuildInputDamage()
    {
        var d = new Dictionary<string, Func<CliCorruptionTests, string[]>>();
        for (int i = 0; i < BadTokenLists.Length; i++)
        {
            string text = BadTokenLists[i];
            d[$"run-tokens-{i}"] = t => ["run", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", text), "--out", t.Existing];
            d[$"sae-tokens-{i}"] = t => ["sae", "--model", Golden.Dir, "--sae", Sae0, "--tokens-file", t.Write("tokens.json", text), "--json", t.Existing, "--report", t.Fresh];
            d[$"attribute-tokens-{i}"] = t => ["attribute", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", text), "--answers", t.Write("answers.json", "[[5, 6]]"),
                "--steps", "2", "--json", t.Existing, "--report", t.Fresh];
        }
        for (int i = 0; i < BadPrompts.Length; i++)
        {
            string text = BadPrompts[i];
            d[$"dla-prompts-{i}"] = t => ["dla", "--model", Golden.Dir, "--prompts", t.Write("prompts.json", text), "--json", t.Existing, "--report", t.Fresh];
            d[$"patch-clean-{i}"] = t => ["patch", "--model", Golden.Dir, "--clean", t.Write("clean.json", text), "--corrupted", t.Write("corrupted.json", GoodPrompts),
                "--kind", "resid_pre", "--json", t.Existing, "--report", t.Fresh];
            d[$"patch-corrupted-{i}"] = t => ["patch", "--model", Golden.Dir, "--clean", t.Write("clean.json", GoodPrompts), "--corrupted", t.Write("corrupted.json", text),
                "--kind", "head_out_by_pos", "--method", "attribution", "--json", t.Existing, "--report", t.Fresh];
        }
        for (int i = 0; i < BadAnswers.Length; i++)
        {
            string text = BadAnswers[i];
            d[$"attribute-answers-{i}"] = t => ["attribute", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3], [4, 5, 6]]"),
                "--answers", t.Write("answers.json", text), "--steps", "2", "--json", t.Existing, "--report", t.Fresh];
            d[$"sae-answers-{i}"] = t => ["sae", "--model", Golden.Dir, "--sae", Sae0, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3], [4, 5, 6]]"),
                "--answers", t.Write("answers.json", text), "--json", t.Existing, "--report", t.Fresh];
            d[$"run-backward-answers-{i}"] = t => ["run", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3], [4, 5, 6]]"),
                "--backward", "logit-diff", "--answers", t.Write("answers.json", text), "--out", t.Existing];
        }
        foreach (var (i, ids) in new[] { "-1", "1000", "99999999999", "1,,2", "", "1, 2", "0x10", "NaN", "1e3", "-9223372036854775808", "99999999999999999999" }.Index())
            d[$"generate-tokens-{i}"] = _ => ["generate", "--model", Golden.Dir, "--tokens", ids, "--max-new-tokens", "2", "--greedy"];
        d["generate-past-context"] = _ => ["generate", "--model", Golden.Dir, "--tokens", "1,2,3", "--max-new-tokens", "100", "--greedy"];
        d["run-pos-slice-out-of-range"] = t => ["run", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3]]"), "--pos-slice", "-9", "--out", t.Existing];
        d["run-stop-at-layer-out-of-range"] = t => ["run", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3]]"), "--stop-at-layer", "-9", "--out", t.Existing];
        d["dla-pattern-prompt-out-of-range"] = t => ["dla", "--model", Golden.Dir, "--prompts", t.Write("prompts.json", GoodPrompts), "--pattern-prompt", "5", "--json", t.Existing, "--report", t.Fresh];
        d["dla-prompts-dir"] = t => ["dla", "--model", Golden.Dir, "--prompts", Directory.CreateDirectory(Path.Combine(t._dir, "p.json")).FullName, "--json", t.Existing];
        d["dla-prompts-missing"] = t => ["dla", "--model", Golden.Dir, "--prompts", Path.Combine(t._dir, "none.json"), "--json", t.Existing];
        d["run-tokens-symlink-loop"] = t => { var p = Path.Combine(t._dir, "loop.json"); File.CreateSymbolicLink(p, p); return ["run", "--model", Golden.Dir, "--tokens-file", p, "--out", t.Existing]; };
        d["run-tokens-unreadable"] = t =>
        {
            var p = t.Write("tokens.json", "[[1, 2]]");
            File.SetUnixFileMode(p, UnixFileMode.None);
            return ["run", "--model", Golden.Dir, "--tokens-file", p, "--out", t.Existing];
        };
        d["run-out-in-missing-folder"] = t => ["run", "--model", Golden.Dir, "--tokens-file", t.Write("tokens.json", "[[1, 2]]"), "--out", Path.Combine(t._dir, "no", "such", "a.safetensors")];
        d["model-is-a-file"] = t => ["run", "--model", Path.Combine(Golden.Dir, "config.json"), "--tokens-file", t.Write("tokens.json", "[[1, 2]]"), "--out", t.Existing];
        d["model-missing-folder"] = t => ["run", "--model", Path.Combine(t._dir, "nothing-here") + "/", "--tokens-file", t.Write("tokens.json", "[[1, 2]]"), "--out", t.Existing];
        foreach (var (i, text) in new[] { "", "[]", "[1, 2]", "[\"a\", null]", "{\"a\": \"b\"}", "[\"\\uD800\"]", "nul" }.Index())
            d[$"tokenize-texts-{i}"] = t => ["tokenize", "--texts-file", t.Write("texts.json", text), "--json"];
        d["tokenize-tokenizer-empty-folder"] = t => ["tokenize", "--tokenizer", Directory.CreateDirectory(Path.Combine(t._dir, "empty")).FullName, "hi"];
        d["tokenize-tokenizer-empty-file"] = t => ["tokenize", "--tokenizer", t.Write("tokenizer.json", ""), "hi"];
        d["tokenize-tokenizer-model-empty"] = t => ["tokenize", "--tokenizer", t.Write("tokenizer.model", ""), "hi"];
        d["tokenize-tokenizer-model-text"] = t => ["tokenize", "--tokenizer", t.Write("tokenizer.model", "IQ== 0\nIg== 1\n!!! x\n"), "hi"];
        d["tokenize-vocab-only"] = t => ["tokenize", "--tokenizer", t.Write("vocab.json", "{\"a\": 0}"), "hi"];
        // SAE folders with damage.
        foreach (var (name, damage) in SaeDamage)
            d[$"sae-folder-{name}"] = t =>
            {
                string sae = Directory.CreateDirectory(Path.Combine(t._dir, "sae")).FullName;
                foreach (var f in Directory.GetFiles(Sae0)) File.Copy(f, Path.Combine(sae, Path.GetFileName(f)));
                damage(sae);
                return ["sae", "--model", Golden.Dir, "--sae", sae, "--tokens-file", t.Write("tokens.json", "[[1, 2, 3]]"), "--json", t.Existing, "--report", t.Fresh];
            };
        return d;
    }

    private static string Sae0 => SaeGolden.Folder("standard_blocks.0.hook_resid_post");
    private const string GoodPrompts = "[{\"tokens\": [1, 2, 3, 4], \"correct_id\": 5, \"incorrect_id\": 6}, {\"tokens\": [7, 8, 9, 10], \"correct_id\": 11, \"incorrect_id\": 12}]";

    private static void EditCfg(string sae, Action<JsonObject> edit)
    {
        string path = Path.Combine(sae, "cfg.json");
        var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(o);
        File.WriteAllText(path, o.ToJsonString());
    }

    private static readonly Dictionary<string, Action<string>> SaeDamage = new()
    {
        ["cfg-missing"] = s => File.Delete(Path.Combine(s, "cfg.json")),
        ["cfg-empty"] = s => File.WriteAllText(Path.Combine(s, "cfg.json"), ""),
        ["cfg-array"] = s => File.WriteAllText(Path.Combine(s, "cfg.json"), "[]"),
        ["cfg-d-in-string"] = s => EditCfg(s, o => o["d_in"] = "64"),
        ["cfg-d-in-wrong"] = s => EditCfg(s, o => o["d_in"] = 32),
        ["cfg-d-sae-zero"] = s => EditCfg(s, o => o["d_sae"] = 0),
        ["cfg-d-sae-negative"] = s => EditCfg(s, o => o["d_sae"] = -256),
        ["cfg-d-sae-huge"] = s => EditCfg(s, o => o["d_sae"] = 1L << 40),
        ["cfg-arch-unknown"] = s => EditCfg(s, o => o["architecture"] = "magic"),
        ["cfg-arch-number"] = s => EditCfg(s, o => o["architecture"] = 3),
        ["cfg-hook-unknown"] = s => EditCfg(s, o => o["metadata"]!["hook_name"] = "blocks.0.hook_nothing"),
        ["cfg-hook-missing"] = s => EditCfg(s, o => { o["metadata"]!.AsObject().Remove("hook_name"); o.Remove("hook_name"); }),
        ["cfg-metadata-array"] = s => EditCfg(s, o => o["metadata"] = new JsonArray()),
        ["cfg-dtype-unknown"] = s => EditCfg(s, o => o["dtype"] = "float7"),
        ["cfg-normalize-unknown"] = s => EditCfg(s, o => o["normalize_activations"] = "sometimes"),
        ["cfg-topk-k-negative"] = s => EditCfg(s, o => { o["architecture"] = "topk"; o["k"] = -3; }),
        ["cfg-jumprelu-no-threshold"] = s => EditCfg(s, o => o["architecture"] = "jumprelu"),
        ["weights-missing"] = s => File.Delete(Path.Combine(s, "sae_weights.safetensors")),
        ["weights-truncated"] = s => { var p = Path.Combine(s, "sae_weights.safetensors"); File.WriteAllBytes(p, File.ReadAllBytes(p)[..3000]); },
        ["weights-empty"] = s => File.WriteAllBytes(Path.Combine(s, "sae_weights.safetensors"), []),
        ["weights-dir"] = s => { File.Delete(Path.Combine(s, "sae_weights.safetensors")); Directory.CreateDirectory(Path.Combine(s, "sae_weights.safetensors")); },
        ["weights-no-W_enc"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t.Remove("W_enc")),
        ["weights-W_enc-shape"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["W_enc"] = zeros(64, 100)),
        ["weights-W_dec-transposed"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["W_dec"] = t["W_dec"].t().contiguous()),
        ["weights-b_dec-scalar"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["b_dec"] = tensor(0f)),
        ["weights-int64"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["W_enc"] = t["W_enc"].to(ScalarType.Int64)),
        ["weights-bool"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["b_enc"] = t["b_enc"] > 0),
        ["weights-nan"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["b_dec"] = full(64, float.NaN)),
        ["weights-extra"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["threshold"] = zeros(7)),
        ["weights-f16"] = s => EditTensors(Path.Combine(s, "sae_weights.safetensors"), t => t["W_dec"] = t["W_dec"].to(ScalarType.Float16)),
    };

    private string Existing
    {
        get
        {
            string p = Path.Combine(Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName, "existing.json");
            if (!File.Exists(p)) File.WriteAllText(p, "earlier output");
            return p;
        }
    }

    private string Fresh => Path.Combine(Directory.CreateDirectory(Path.Combine(_dir, "out")).FullName, "fresh.html");

    /// <summary>Inputs that are valid after all (the command may succeed): the check is then only that nothing crashed.</summary>
    private static readonly HashSet<string> MaySucceed = ["sae-folder-weights-extra", "sae-folder-weights-f16", "sae-folder-cfg-dtype-unknown"];

    [Theory]
    [MemberData(nameof(InputCases))]
    public void DamagedInput(string name)
    {
        if (name.EndsWith("unreadable", StringComparison.Ordinal) && IsRoot) return;
        var args = InputDamage[name](this);
        var r = Run(args);
        if (r.Code == 0 && MaySucceed.Contains(name)) return;
        if (name.StartsWith("generate-tokens-", StringComparison.Ordinal))
        {
            // An argument, not a file: "1,,2" and "1, 2" are read as two ids; text that is no integer is a usage error (exit 2).
            if (r.Code == 0 && name is "generate-tokens-3" or "generate-tokens-5") return;
            if (r.Code == 2 && r.Err.StartsWith("error: --tokens must be comma-separated integers", StringComparison.Ordinal)) return; // before loading
        }
        AssertCleanFailure(r, [Existing, Fresh], name);
    }

    /// <summary>Damage to a Hub cache holding test-org/tiny-gpt2 (refs/main → snapshot whose files link into blobs/).</summary>
    private static readonly Dictionary<string, Action<string, string>> HubCacheDamage = new()
    {
        ["ref-missing"] = (repo, snap) => File.Delete(Path.Combine(repo, "refs", "main")),
        ["ref-garbage"] = (repo, snap) => File.WriteAllBytes(Path.Combine(repo, "refs", "main"), [0xFF, 0x00, 0x2F, 0x2E, 0x2E]),
        ["ref-dir"] = (repo, snap) => { File.Delete(Path.Combine(repo, "refs", "main")); Directory.CreateDirectory(Path.Combine(repo, "refs", "main")); },
        ["ref-loop"] = (repo, snap) => { var p = Path.Combine(repo, "refs", "main"); File.Delete(p); File.CreateSymbolicLink(p, p); },
        ["ref-escapes"] = (repo, snap) => File.WriteAllText(Path.Combine(repo, "refs", "main"), "../../../../../../etc"),
        ["ref-unknown-commit"] = (repo, snap) => File.WriteAllText(Path.Combine(repo, "refs", "main"), new string('a', 40)),
        ["blob-missing"] = (repo, snap) => File.Delete(Path.Combine(repo, "blobs", "weights")),
        ["blob-dir"] = (repo, snap) => { File.Delete(Path.Combine(repo, "blobs", "weights")); Directory.CreateDirectory(Path.Combine(repo, "blobs", "weights")); },
        ["link-loop"] = (repo, snap) => { var p = Path.Combine(snap, "model.safetensors"); File.Delete(p); File.CreateSymbolicLink(p, p); },
        ["config-link-dangling"] = (repo, snap) => File.Delete(Path.Combine(repo, "blobs", "config")),
        ["snapshots-is-file"] = (repo, snap) => { Directory.Delete(Path.Combine(repo, "snapshots"), true); File.WriteAllText(Path.Combine(repo, "snapshots"), "x"); },
        ["repo-is-file"] = (repo, snap) => { Directory.Delete(repo, true); File.WriteAllText(repo, "x"); },
        ["refs-unreadable"] = (repo, snap) => File.SetUnixFileMode(Path.Combine(repo, "refs", "main"), UnixFileMode.None),
    };

    public static TheoryData<string> HubCacheCases() => [.. HubCacheDamage.Keys];

    /// <summary><c>sharplens download</c> offline (HF_HUB_OFFLINE=1) on a damaged cache: the cache is not usable, so a clean failure.</summary>
    [Theory]
    [MemberData(nameof(HubCacheCases))]
    public async Task DownloadOfflineWithDamagedCache(string damage)
    {
        if (damage.EndsWith("unreadable", StringComparison.Ordinal) && IsRoot) return;
        const string commit = "0123456789abcdef0123456789abcdef01234567";
        string cache = Directory.CreateDirectory(Path.Combine(_dir, "hub")).FullName;
        string repo = Path.Combine(cache, "models--test-org--tiny-gpt2"), snap = Path.Combine(repo, "snapshots", commit);
        Directory.CreateDirectory(snap);
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        foreach (var (file, blob) in new[] { ("config.json", "config"), ("model.safetensors", "weights") })
        {
            File.Copy(Path.Combine(Golden.Dir, file), Path.Combine(repo, "blobs", blob));
            File.CreateSymbolicLink(Path.Combine(snap, file), Path.Combine("..", "..", "blobs", blob));
        }
        var intact = await Download(cache);
        Assert.True(intact.Code == 0, intact.Err);
        Assert.Equal(snap, intact.Out.Trim());

        HubCacheDamage[damage](repo, snap);
        var r = await Download(cache);
        Assert.True(r.Code is >= 1 and <= 127, $"{damage}: exit {r.Code}, stdout {r.Out}, stderr:\n{r.Err}");
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("test-org/tiny-gpt2 at", StringComparison.Ordinal)).ToList(); // the first line says what is fetched
        Assert.True(lines.Count == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"{damage}: expected one 'error:' line, got:\n{r.Err}");
        Assert.DoesNotContain("internal error", r.Err);
        Assert.Equal("", r.Out);
    }

    private static async Task<(int Code, string Out, string Err)> Download(string cache)
    {
        var (o, e) = (new StringWriter(), new StringWriter());
        var command = new SharpLens.Cli.Commands.DownloadCommand(() => new SharpLens.Loading.Hub.HubOptions { CacheDir = cache, Offline = true, Endpoint = "http://127.0.0.1:9" });
        int code = await SharpLens.Cli.CliApp.Guard(() => command.RunAsync(SharpLens.Cli.CliArgs.Parse(["test-org/tiny-gpt2"]), o, e), "download", false, e, default);
        return (code, o.ToString(), e.ToString());
    }
}
