using SharpLens.Hooks;

namespace SharpLens.Model;

public sealed partial class HookedTransformer
{
    /// <summary>
    /// Runs <paramref name="module"/> in place of the hook point <paramref name="name"/> until the returned handle is
    /// disposed (how SAEs are spliced in). Meanwhile <paramref name="name"/> leaves <see cref="HookNames"/> and the
    /// cache, and its hooks do not fire; the module's hook points take its place in forward order and can be hooked
    /// and cached like any other. Disposing restores the original hook point with its hooks.
    /// </summary>
    public IDisposable ReplaceHookPoint(string name, IHookModule module)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var point = GetHookPoint(name);
        if (point.Replacement is not null)
            throw new SharpLensException($"Hook point '{name}' already has a module spliced in; remove it first.");
        var added = module.HookPoints;
        CheckNewNames(added);
        int at = _hookPoints.IndexOf(point);
        _hookPoints.RemoveAt(at);
        _hookDict.Remove(name);
        _hookPoints.InsertRange(at, added);
        foreach (var p in added) _hookDict.Add(p.Name, p);
        point.Replacement = module;
        return new Handle(() =>
        {
            int first = added.Count > 0 ? _hookPoints.IndexOf(added[0]) : -1;
            foreach (var p in added) { _hookPoints.Remove(p); _hookDict.Remove(p.Name); }
            _hookPoints.Insert(first >= 0 ? first : _hookPoints.Count, point);
            _hookDict.Add(name, point);
            point.Replacement = null;
        });
    }

    /// <summary>
    /// Adds a new hook point that runs on the output of the hook point <paramref name="after"/> (after its hooks, or
    /// after the module spliced in there), e.g. HookedSAETransformer's <c>blocks.L.mlp.hook_in</c>. It is listed right
    /// after <paramref name="after"/>. Disposing the handle removes it.
    /// </summary>
    public IDisposable AddHookPointAfter(string after, HookPoint point)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var anchor = GetHookPoint(after);
        CheckNewNames([point]);
        _hookPoints.Insert(_hookPoints.IndexOf(anchor) + 1, point);
        _hookDict.Add(point.Name, point);
        anchor.Chain(point);
        return new Handle(() =>
        {
            anchor.Unchain(point);
            _hookPoints.Remove(point);
            _hookDict.Remove(point.Name);
        });
    }

    private void CheckNewNames(IReadOnlyList<HookPoint> points)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in points)
            if (_hookDict.ContainsKey(p.Name) || !seen.Add(p.Name))
                throw new SharpLensException($"Hook point '{p.Name}' already exists in the model; hook names must be unique.");
    }

    private sealed class Handle(Action undo) : IDisposable
    {
        private Action? _undo = undo;

        public void Dispose()
        {
            _undo?.Invoke();
            _undo = null;
        }
    }
}
