namespace SharpLens.Cli;

/// <summary>A command-line mistake: reported with the command's usage and exit code 2.</summary>
internal sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// Minimal GNU-style argument parsing: <c>--name value</c>, <c>--name=value</c>, repeated options, boolean
/// flags and positionals. Commands declare which options take values; anything else is a flag.
/// </summary>
internal sealed class CliArgs
{
    private readonly Dictionary<string, List<string>> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    /// <summary>Arguments that are not options, in order.</summary>
    public List<string> Positionals { get; } = [];

    /// <summary>
    /// Parses raw arguments. A token <c>--x</c> followed by a token that does not start with <c>--</c> is an option
    /// with a value; a lone <c>--x</c> is a flag, and so is any name in <paramref name="flags"/>. After <c>--</c>
    /// everything is positional.
    /// </summary>
    public static CliArgs Parse(IEnumerable<string> raw, IReadOnlySet<string>? flags = null)
    {
        var a = new CliArgs();
        var list = raw.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string t = list[i];
            if (t == "--") { a.Positionals.AddRange(list.Skip(i + 1)); break; }
            if (t.StartsWith("--", StringComparison.Ordinal) && t.Length > 2)
            {
                string name = t[2..];
                int eq = name.IndexOf('=');
                if (eq >= 0) { a.Add(name[..eq], name[(eq + 1)..]); continue; }
                if (flags?.Contains(name) == true) { a._flags.Add(name); continue; }
                if (i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal)) { a.Add(name, list[++i]); continue; }
                a._flags.Add(name);
                continue;
            }
            if (t is "-h") { a._flags.Add("h"); continue; }
            a.Positionals.Add(t);
        }
        return a;
    }

    private void Add(string name, string value)
    {
        if (!_options.TryGetValue(name, out var l)) _options[name] = l = [];
        l.Add(value);
    }

    /// <summary>True when <c>--name</c> was given as a flag.</summary>
    public bool Flag(string name) { _used.Add(name); return _flags.Contains(name); }

    /// <summary>The last value of <c>--name</c>, or null.</summary>
    public string? Option(string name)
    {
        _used.Add(name);
        if (_flags.Contains(name)) throw new CliUsageException($"option --{name} needs a value.");
        return _options.TryGetValue(name, out var l) ? l[^1] : null;
    }

    /// <summary>All values of a repeatable option.</summary>
    public IReadOnlyList<string> Options(string name)
    {
        _used.Add(name);
        return _options.TryGetValue(name, out var l) ? l : [];
    }

    /// <summary>The value of <c>--name</c>, or a usage error saying it is required.</summary>
    public string Required(string name) => Option(name) ?? throw new CliUsageException($"option --{name} is required.");

    /// <summary>An integer option with a default; a usage error when it does not parse or is below <paramref name="min"/>.</summary>
    public int Int(string name, int defaultValue, int min = int.MinValue)
    {
        var s = Option(name);
        if (s is null) return defaultValue;
        if (!int.TryParse(s, out int v) || v < min)
            throw new CliUsageException($"option --{name} must be an integer ≥ {min}, got '{s}'.");
        return v;
    }

    /// <summary>
    /// Fails on any option or flag the command never asked about, naming the closest known one.
    /// Call after reading every option.
    /// </summary>
    public void RejectUnknown()
    {
        foreach (var name in _options.Keys.Concat(_flags))
            if (!_used.Contains(name))
                throw new CliUsageException($"unknown option --{name}." + NameSuggestions.DidYouMean(name, _used.Select(u => u)));
    }
}
