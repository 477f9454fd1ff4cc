"""LM: the built-in language-model benchmark beside the mixture theory (needs the lm extra).

In the full profile, runs :func:`forgetlab.lm.benchmark.run_benchmark` with the benchmark's
quick sizes (a small character-level transformer pre-trained once on the synthetic two-mode
language and cached) in the same-prompts setting, where the target keeps both modes, for one
method per theory statement: SFT (C2), replay SFT (C6), reverse KL to the explicit two-mode
target (C3), RL with a reward that favours the new mode (C8), on-policy distillation and SDFT.
The old mass on the prompt set is computed exactly with the mode marker (no sampling error), so
the checks are orderings to floating point at matched new-task gain: SFT loses more old mass
than every method the theory says keeps it, and the new-mode reward loses more than the
benchmark's mass tolerance. Each run's own prediction and whether it agrees (including the
disagreements) are listed in the notes. Runs that did not reach the target gain are reported
and not compared. Skipped, with a note, when torch is absent and in the quick profile
(pre-training alone takes minutes).
"""

from __future__ import annotations

import importlib.util

from forgetlab.claims.base import ClaimContext, ClaimResult, new_result

STATEMENT = (
    "On a causal language model trained on a two-mode language, the mixture theory's ordering "
    "of old-mass loss carries over at matched new-task gain: forward KL on new-task data alone "
    "(SFT) loses the old mode, while replay SFT, reverse KL to the two-mode target, on-policy "
    "distillation and SDFT do not lose it; RL whose reward favours the new mode loses it."
)

KEEPS = ("replay_sft", "rl:reward=target", "distill", "sdft")
LOSES = ("rl:reward=verifier_new",)
METHODS = ("sft", *KEEPS, *LOSES)
SETTING = "same_prompts"


def run(ctx: ClaimContext) -> ClaimResult:
    """Run the LM benchmark's quick or full profile and compare old mass lost per method."""
    res = new_result(ctx, STATEMENT, methods=METHODS, setting=SETTING, benchmark_profile="quick")
    if importlib.util.find_spec("torch") is None:
        res.skipped = True
        res.notes.append("skipped: PyTorch is not installed (pip install 'forgetlab[lm]' to run "
                         "the language-model section)")
        return res
    if ctx.profile.name == "quick":
        res.skipped = True
        res.notes.append("skipped in the quick profile: pre-training the benchmark's model takes "
                         "minutes; run 'forgetlab reproduce --profile full' (or 'forgetlab lm "
                         "benchmark --profile quick' alone)")
        return res
    from forgetlab.lm.benchmark import MASS_TOL, run_benchmark

    bench = run_benchmark("quick", methods=list(METHODS), settings=[SETTING], seed=ctx.seed)
    res.parameters["benchmark"] = {k: v for k, v in bench.config.items() if k != "profile"}
    res.parameters["pretrain"] = bench.pretrain
    headline = [r for r in bench.methods if r.matched_gain == bench.config["target_gain"][SETTING]]
    rows = {r.method: r for r in headline}
    for r in headline:
        res.notes.append(
            f"{r.method}: reached gain {r.reached} ({r.seeds_reached}/{r.seeds} seeds) after "
            f"{r.steps:.1f} steps (mean), gain {r.new_task_gain:.3f}, old mass lost "
            f"{r.old_mass_lost:.4f} (95% interval {r.intervals.get('old_mass_lost')}), old drift "
            f"KL {r.old_drift_kl:.3g}; theory: {r.theory} ({r.claim}: {r.theory_reason}); "
            f"measured: {r.measured}; agrees: {r.agrees} ({r.agrees_reason})")
    sft = rows["sft"]
    for name in KEEPS:
        other = rows[name]
        if not (sft.reached and other.reached):
            res.notes.append(f"{name}: not compared (target gain not reached by both runs)")
            continue
        res.check(f"old mass lost: SFT minus {name} (theory: SFT loses, {name} does not)", 0.0,
                  sft.old_mass_lost - other.old_mass_lost, 0.0, "floating point",
                  kind="lower_bound",
                  predicted_by="closed form", measured_by="finite-batch simulation",
                  independent=False)
    for name in LOSES:
        r = rows[name]
        if not r.reached:
            res.notes.append(f"{name}: not compared (target gain not reached)")
            continue
        res.check(f"old mass lost by {name} (theory: loses, beyond the benchmark's mass "
                  f"tolerance)", MASS_TOL, r.old_mass_lost, 0.0, "floating point",
                  kind="lower_bound",
                  predicted_by="closed form", measured_by="finite-batch simulation",
                  independent=False)
    fig = res.figure(2, title="LM benchmark: old mass and drift against new-task gain")
    axes = fig.panels
    for k, r in enumerate(headline):  # the first seed's trajectory
        gain = [p["new_task_gain"] for p in r.trajectories[0]]
        axes[0].line(gain, [p["old_mass_lost"] for p in r.trajectories[0]],
                     f"{r.method} (theory: {r.theory})", color=f"C{k}", style=".-")
        axes[1].line(gain, [p["old_drift_kl"] for p in r.trajectories[0]], r.method,
                     color=f"C{k}", style=".-")
    axes[0].label("new-task gain [probability]", "old mass lost m_0 - m [probability]",
          "mass forgetting")
    axes[1].label("new-task gain [probability]", "old-component drift KL [nats]",
          "old-component drift")
    return res
