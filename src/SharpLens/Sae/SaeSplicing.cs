using System.Runtime.CompilerServices;
using SharpLens.Cache;
using SharpLens.Hooks;
using SharpLens.Model;
using static TorchSharp.torch;

namespace SharpLens.Sae;

/// <summary>
/// SAELens's <c>HookedSAETransformer</c> on top of <see cref="HookedTransformer"/>: splice SAEs into the model at their
/// hooks (<see cref="AddSae"/>), run with SAEs attached for one call, cache and hook their activations. While an SAE
/// is attached its hook's name leaves the model's hook names and the cache (the SAE runs in its place) and the SAE's
/// hook points (<c>&lt;hook&gt;.hook_sae_*</c>) appear. The first SAE also adds HookedSAETransformer's
/// <c>blocks.L.mlp.hook_in</c> hook points (the MLP input), which then stay.
/// </summary>
public static class SaeSplicing
{
    private sealed class Attached(SparseAutoencoder sae, IDisposable handle, bool previousUseErrorTerm, Action restoreConfig)
    {
        public SparseAutoencoder Sae { get; } = sae;
        public IDisposable Handle { get; } = handle;
        public bool PreviousUseErrorTerm { get; } = previousUseErrorTerm;
        public Action RestoreConfig { get; } = restoreConfig;
    }

    private sealed class State
    {
        public readonly List<Attached> Saes = [];
        public readonly List<IDisposable> MlpIn = [];
    }

    private static readonly ConditionalWeakTable<HookedTransformer, State> States = new();

    /// <summary>The SAEs currently attached, in the order they were added.</summary>
    public static IReadOnlyList<SparseAutoencoder> AttachedSaes(this HookedTransformer model) =>
        States.TryGetValue(model, out var s) ? s.Saes.Select(a => a.Sae).ToList() : [];

    /// <summary>
    /// Splices <paramref name="sae"/> in at its hook until <see cref="ResetSaes"/> (SAELens's <c>add_sae</c>). An SAE
    /// already attached at that hook is replaced. <paramref name="useErrorTerm"/> overrides the SAE's
    /// <see cref="SparseAutoencoder.UseErrorTerm"/> while attached. Fails when the model has no such hook or its width
    /// differs from the SAE's d_in.
    /// </summary>
    public static void AddSae(this HookedTransformer model, SparseAutoencoder sae, bool? useErrorTerm = null)
    {
        var state = States.GetValue(model, _ => new State());
        EnsureMlpInHooks(model, state);
        string hook = sae.HookName;
        var existing = state.Saes.FindIndex(a => a.Sae.HookName == hook);
        if (existing >= 0) Detach(state, existing);
        if (!model.HookNames.Contains(hook))
            throw new SharpLensException($"SAE {sae.Source} reads hook '{hook}', which this model ({model.Config.ModelName}) does not have." +
                NameSuggestions.DidYouMean(hook, model.HookNames) + " Pass the right hook with --sae-hook / the hookName argument if the config is wrong.");
        CheckWidth(model.Config, sae);
        var restore = EnableOptInHook(model.Config, hook);
        var handle = model.ReplaceHookPoint(hook, sae);
        state.Saes.Add(new Attached(sae, handle, sae.UseErrorTerm, restore));
        if (useErrorTerm is bool u) sae.UseErrorTerm = u;
    }

    /// <summary>Removes attached SAEs (all, or those at <paramref name="hookNames"/>) and restores the original hook points.</summary>
    public static void ResetSaes(this HookedTransformer model, IEnumerable<string>? hookNames = null)
    {
        if (!States.TryGetValue(model, out var state)) return;
        var names = hookNames?.ToHashSet(StringComparer.Ordinal);
        if (names is not null)
            foreach (var n in names)
                if (!state.Saes.Any(a => a.Sae.HookName == n))
                    throw new SharpLensException($"No SAE is attached at '{n}'." + NameSuggestions.DidYouMean(n, state.Saes.Select(a => a.Sae.HookName)));
        for (int i = state.Saes.Count - 1; i >= 0; i--)
            if (names is null || names.Contains(state.Saes[i].Sae.HookName)) Detach(state, i);
    }

    /// <summary>
    /// Attaches <paramref name="saes"/> until the returned scope is disposed (SAELens's <c>with model.saes(...)</c>);
    /// SAEs that were attached at the same hooks before come back afterwards.
    /// </summary>
    public static IDisposable Saes(this HookedTransformer model, IEnumerable<SparseAutoencoder> saes, bool? useErrorTerm = null)
    {
        var list = saes.ToList();
        var dup = list.GroupBy(s => s.HookName).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new SharpLensException($"Two SAEs read the same hook '{dup.Key}'; attach one SAE per hook.");
        var state = States.GetValue(model, _ => new State());
        var previous = state.Saes.Where(a => list.Any(s => s.HookName == a.Sae.HookName)).Select(a => a.Sae).ToList();
        var added = new List<SparseAutoencoder>();
        try
        {
            foreach (var sae in list) { model.AddSae(sae, useErrorTerm); added.Add(sae); }
        }
        catch
        {
            Restore();
            throw;
        }
        return new Scope(Restore);

        void Restore()
        {
            model.ResetSaes(added.Select(s => s.HookName).Where(h => state.Saes.Any(a => a.Sae.HookName == h)).ToList());
            foreach (var p in previous) model.AddSae(p);
        }
    }

    /// <summary>Logits with <paramref name="saes"/> spliced in for this call (SAELens's <c>run_with_saes</c>).</summary>
    public static Tensor RunWithSaes(this HookedTransformer model, Tensor tokens, IEnumerable<SparseAutoencoder> saes,
        bool? useErrorTerm = null, Tensor? attentionMask = null)
    {
        using var _ = model.Saes(saes, useErrorTerm);
        return model.Forward(tokens, attentionMask);
    }

    /// <summary><see cref="HookedTransformer.Forward(Tensor, ReturnType, bool, Tensor?)"/> with <paramref name="saes"/> spliced in (logits and/or loss).</summary>
    public static ModelOutput RunWithSaes(this HookedTransformer model, Tensor tokens, IEnumerable<SparseAutoencoder> saes, ReturnType returnType,
        bool lossPerToken = false, bool? useErrorTerm = null, Tensor? attentionMask = null)
    {
        using var _ = model.Saes(saes, useErrorTerm);
        return model.Forward(tokens, returnType, lossPerToken, attentionMask);
    }

    /// <summary>Logits and a cache including the SAEs' hook points (SAELens's <c>run_with_cache_with_saes</c>).</summary>
    public static (Tensor Logits, ActivationCache Cache) RunWithCacheWithSaes(this HookedTransformer model, Tensor tokens,
        IEnumerable<SparseAutoencoder> saes, bool? useErrorTerm = null, Func<string, bool>? namesFilter = null, Tensor? attentionMask = null)
    {
        using var _ = model.Saes(saes, useErrorTerm);
        return model.RunWithCache(tokens, namesFilter, attentionMask: attentionMask);
    }

    /// <summary>Logits with SAEs spliced in and temporary hooks, which may target the SAEs' hook points (SAELens's <c>run_with_hooks_with_saes</c>).</summary>
    public static Tensor RunWithHooksWithSaes(this HookedTransformer model, Tensor tokens, IEnumerable<SparseAutoencoder> saes,
        IEnumerable<Hook> hooks, bool? useErrorTerm = null, Tensor? attentionMask = null)
    {
        using var _ = model.Saes(saes, useErrorTerm);
        return model.RunWithHooks(tokens, hooks, attentionMask: attentionMask);
    }

    /// <summary>
    /// The width an activation at <paramref name="hook"/> has in its last axis as an SAE sees it (hook_z SAEs: heads ×
    /// d_head), or null for hooks whose width is not known from the config.
    /// </summary>
    public static int? HookWidth(HookedTransformerConfig cfg, string hook, bool flattenHeads)
    {
        string last = hook[(hook.LastIndexOf('.') + 1)..];
        bool attn = hook.Contains(".attn.", StringComparison.Ordinal);
        return last switch
        {
            "hook_embed" or "hook_pos_embed" or "hook_resid_pre" or "hook_resid_mid" or "hook_resid_post" or "hook_attn_out" or "hook_mlp_out"
                or "hook_normalized" or "hook_mlp_in" or "hook_in" or "hook_result" or "hook_attn_in" => cfg.DModel,
            "hook_z" or "hook_q" when attn => flattenHeads ? cfg.NHeads * cfg.DHead : cfg.DHead,
            "hook_pre" or "hook_post" when hook.Contains(".mlp.", StringComparison.Ordinal) => cfg.DMlp,
            _ => null,
        };
    }

    private static void CheckWidth(HookedTransformerConfig cfg, SparseAutoencoder sae)
    {
        if (HookWidth(cfg, sae.HookName, sae.Config.ReshapeHookZ) is not int width || width == sae.Config.DIn) return;
        throw new SharpLensException($"SAE {sae.Source} has d_in = {sae.Config.DIn}, but activations at '{sae.HookName}' of this model " +
            $"({cfg.ModelName}) have width {width}" + (sae.Config.ReshapeHookZ ? $" (n_heads·d_head = {cfg.NHeads}·{cfg.DHead})" : "") +
            ". The SAE was trained on a different model or hook.");
    }

    private static void Detach(State state, int index)
    {
        var a = state.Saes[index];
        a.Handle.Dispose();
        a.Sae.UseErrorTerm = a.PreviousUseErrorTerm;
        a.RestoreConfig();
        state.Saes.RemoveAt(index);
    }

    /// <summary>
    /// An SAE on an opt-in hook (<c>hook_mlp_in</c>, <c>attn.hook_result</c>, <c>hook_q_input</c>..., <c>hook_attn_in</c>) would
    /// never run: switch the hook on while the SAE is attached, and back afterwards.
    /// </summary>
    private static Action EnableOptInHook(HookedTransformerConfig cfg, string hook)
    {
        string last = hook[(hook.LastIndexOf('.') + 1)..];
        switch (last)
        {
            case "hook_mlp_in" when !cfg.UseHookMlpIn:
                cfg.UseHookMlpIn = true;
                return () => cfg.UseHookMlpIn = false;
            case "hook_result" when !cfg.UseAttnResult:
                cfg.UseAttnResult = true;
                return () => cfg.UseAttnResult = false;
            case "hook_q_input" or "hook_k_input" or "hook_v_input" when !cfg.UseSplitQkvInput:
                cfg.UseSplitQkvInput = true;
                return () => cfg.UseSplitQkvInput = false;
            case "hook_attn_in" when !cfg.UseAttnIn:
                cfg.UseAttnIn = true;
                return () => cfg.UseAttnIn = false;
            default:
                return () => { };
        }
    }

    private static void EnsureMlpInHooks(HookedTransformer model, State state)
    {
        if (state.MlpIn.Count > 0) return;
        var names = model.HookNames.ToHashSet(StringComparer.Ordinal);
        for (int l = 0; l < model.Config.NLayers; l++)
        {
            string anchor = $"blocks.{l}.ln2.hook_normalized", name = $"blocks.{l}.mlp.hook_in";
            if (names.Contains(anchor) && !names.Contains(name)) state.MlpIn.Add(model.AddHookPointAfter(anchor, new HookPoint(name)));
        }
    }

    private sealed class Scope(Action dispose) : IDisposable
    {
        private Action? _dispose = dispose;

        public void Dispose()
        {
            _dispose?.Invoke();
            _dispose = null;
        }
    }
}
