using SharpLens.Hooks;
using SharpLens.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpLens.Tests.Core;

public sealed class HookTests
{
    [Fact]
    public void ZeroAblatingAHeadMatchesTransformerLens()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var logits = model.RunWithHooks(Golden.Tokens, [Hook.At("blocks.1.attn.hook_z", (z, _) =>
        {
            var c = z.clone();
            c[.., .., 2, ..] = 0;
            return c;
        })]);
        Golden.AssertClose(Golden.Tensor("hooks.safetensors", "logits_zero_ablate_head"), logits, "zero-ablated head");
        Assert.All(model.HookPoints, p => Assert.False(p.HasHooks));
    }

    [Fact]
    public void MeanAblatingMlpOutMatchesTransformerLens()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        Tensor? mean = null;
        var logits = model.RunWithHooks(Golden.Tokens, [("blocks.0.hook_mlp_out", (act, _) =>
        {
            mean = act.mean([0, 1]).MoveToOuterDisposeScope();
            return act.mean([0, 1], keepdim: true).expand_as(act);
        })]);
        Golden.AssertClose(Golden.Tensor("hooks.safetensors", "mean_ablation_value"), mean!, "mean");
        Golden.AssertClose(Golden.Tensor("hooks.safetensors", "logits_mean_ablate_mlp_out"), logits, "mean-ablated mlp_out");
    }

    [Fact]
    public void PredicateHooksSeeEveryMatchingName()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var seen = new List<string>();
        model.RunWithHooks(Golden.Tokens, [Hook.Where(n => n.EndsWith("hook_pattern"), (a, h) => { seen.Add(h.Name); return null; })]);
        Assert.Equal(Golden.Manifest["sanity_checks"]!["run_with_hooks_filter_fn_names"]!.AsArray().Select(x => x!.GetValue<string>()), seen);
    }

    [Fact]
    public void ScopeRemovesHooksEvenWhenTheForwardThrows()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var before = model.Forward(Golden.Tokens);
        Assert.Throws<InvalidOperationException>(() =>
        {
            using var hooks = model.Hooks(("blocks.0.hook_resid_pre", (_, _) => throw new InvalidOperationException("boom")));
            model.Forward(Golden.Tokens);
        });
        Assert.Throws<InvalidOperationException>(() =>
            model.RunWithHooks(Golden.Tokens, [("blocks.0.hook_resid_pre", (_, _) => throw new InvalidOperationException("boom"))]));
        Assert.All(model.HookPoints, p => Assert.False(p.HasHooks));
        Golden.AssertClose(before, model.Forward(Golden.Tokens), "unchanged after failed hooks", 1e-7);
    }

    [Fact]
    public void PermanentHooksSurviveResetUnlessAskedAndResetHooksEndFalseKeepsHooks()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        int calls = 0;
        model.AddHook("hook_embed", (_, _) => { calls++; return null; }, permanent: true);
        model.AddHook("hook_pos_embed", (_, _) => { calls += 100; return null; });
        model.ResetHooks();
        model.Forward(Golden.Tokens);
        Assert.Equal(1, calls);
        model.ResetHooks(includingPermanent: true);
        model.Forward(Golden.Tokens);
        Assert.Equal(1, calls);

        model.RunWithHooks(Golden.Tokens, [("hook_embed", (_, _) => { calls++; return null; })], resetHooksEnd: false);
        Assert.True(model.GetHookPoint("hook_embed").HasHooks);
        model.ResetHooks();
        Assert.False(model.GetHookPoint("hook_embed").HasHooks);
    }

    [Fact]
    public void UnknownHookNameListsClosestNamesAndAttachesNothing()
    {
        using var model = Golden.Model();
        var e = Assert.Throws<SharpLensException>(() =>
            model.Hooks(("hook_embed", (_, _) => null), ("blocks.0.attn.hook_patern", (_, _) => null)));
        Assert.Contains("'blocks.0.attn.hook_patern'", e.Message);
        Assert.Contains("'blocks.0.attn.hook_pattern'", e.Message);
        Assert.False(model.GetHookPoint("hook_embed").HasHooks);
        var e2 = Assert.Throws<SharpLensException>(() => model.RunWithCache(Golden.Tokens, ["blocks.9.hook_resid_pre"]));
        Assert.Contains("Did you mean", e2.Message);
    }

    [Fact]
    public void HookReturningWrongShapeIsASpecificError()
    {
        using var scope = NewDisposeScope();
        using var model = Golden.Model();
        var e = Assert.Throws<SharpLensException>(() =>
            model.RunWithHooks(Golden.Tokens, [("blocks.0.hook_resid_mid", (a, _) => a.sum(-1))]));
        Assert.Contains("blocks.0.hook_resid_mid", e.Message);
        Assert.Contains("same shape", e.Message);
    }
}
