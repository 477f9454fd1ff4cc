"""Chen et al. (2025): their toy's two figures, reproduced with and without the published
floors, and the long run of their estimator.

Settings exactly as in :mod:`forgetlab.chen2025`: presets ``chen2025-two-mode`` and
``chen2025-single-mode`` are the published arithmetic, 1e-12 floors included (in every learner
density sum, in the importance weight, and inside the log of the reward);
``chen2025-*-clean`` drop the floors.  Drop and Gain are read on the seed-mean curves at the
first iteration where Gain >= 0.9.  Checks, for each of the four presets:

1. Equivalence (not counted as verification: the same algorithm on the same normals, written
   twice): the engine against a plain per-seed loop of the published arithmetic
   (:mod:`forgetlab.chen2025.reference`, scipy densities per sample, np.trapezoid on the grid)
   on the same normals, every run of the preset: largest difference of parameters and overlaps
   <= 1e-12 (floating point).
2. Both forward KL (SFT, lr 0.15 / 0.05) and their RL estimator reach Gain 0.9.  True by
   construction of the reading point whenever a stop step exists: not verification.
3. The ordering: two-mode, drop(SFT) - drop(RL) > 4 s.e.; single-mode, drop(RL) - drop(SFT)
   > 4 s.e. (seed-to-seed spread of the two means, combined).

What the floor changes (floored against clean on the same seeds, so paired): the single-mode
RL reading point moves later and its drop shrinks (checked, > 4 paired s.e.); the two-mode
forward-KL curve moves by a few s.e. (reported).  Long run: their RL estimator (published
arithmetic; no baseline, positive reward once the new mode fits) drains the old weight pi1
below 0.75 by more than 4 s.e., while descent on the exact reverse KL (quadrature) does not
lower pi1 (tolerance 1e-6).
"""

from __future__ import annotations

import numpy as np

from forgetlab.chen2025 import (
    PRESETS,
    model,
    reference,
    reverse_kl_and_grad,
    run_chen2025,
    run_preset,
)
from forgetlab.chen2025.run import ChenResult
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result
from forgetlab.claims.figures import Panel

STATEMENT = (
    "In the Chen et al. (2025) toy, at equal new-task gain (Gain >= 0.9) forward KL (SFT) loses "
    "more old-mode overlap than their RL estimator with a two-mode learner, and the order flips "
    "with a single-mode learner; this holds with the published 1e-12 floors and without them, "
    "and the floor delays the single-mode RL run and shrinks its drop. Their RL estimator has "
    "no baseline and a positive reward once the new mode fits, so run long it also drains the "
    "old weight pi1; descent on the exact reverse KL does not."
)

N_SIGMA = 4.0
PI1_0 = 0.75
REFERENCE_STEPS = 40
REFERENCE_SEEDS = 2
MATCH_TOLERANCE = 1e-12


def _reference_check(res: ClaimResult, name: str, seed: int) -> None:
    """Engine vs the plain per-seed published arithmetic, same normals, every run of a preset."""
    p = PRESETS[name]
    fn = reference.two_mode if p.variant == "two-mode" else reference.single_mode
    eps = model.DENSITY_FLOOR if p.floors else 0.0
    worst = 0.0
    for method, lr in p.runs:
        eng = run_chen2025(p.variant, method, lr, REFERENCE_STEPS, REFERENCE_SEEDS, seed,
                           floors=p.floors)
        gens = [np.random.default_rng(s)
                for s in np.random.SeedSequence(seed).spawn(REFERENCE_SEEDS)]
        for s, gen in enumerate(gens):
            traj, acc_old, acc_new = fn(method, lr, gen, REFERENCE_STEPS, eng.samples, eps)
            worst = max(worst, float(np.abs(traj - eng.params[s]).max()),
                        float(np.abs(acc_old - eng.acc_old[s]).max()),
                        float(np.abs(acc_new - eng.acc_new[s]).max()))
    res.check(f"{name}: engine vs the published per-seed arithmetic, max |difference| of "
              f"parameters and overlaps ({REFERENCE_SEEDS} seeds x {REFERENCE_STEPS} steps, "
              f"every run)", 0.0, worst, MATCH_TOLERANCE, "floating point",
              predicted_by="finite-batch simulation", measured_by="finite-batch simulation",
              independent=False)


def _draw(ax: Panel, name: str, results: list[ChenResult]) -> None:
    for k, r in enumerate(results):
        steps = np.arange(r.acc_old.shape[1])
        label = f"{r.method} lr={r.learning_rate:g}"
        ax.line(steps, r.acc_old.mean(0), f"acc_old, {label}", color=f"C{k}")
        ax.line(steps, r.acc_new.mean(0), f"acc_new, {label}", color=f"C{k}", style="--")
        stop = r.summary().stop_step
        if stop is not None:
            ax.vline(stop, color=f"C{k}")
    ax.label("iteration [steps]", "per-mode overlap acc [fraction]", name)


def _ordering(res: ClaimResult, name: str, results: list[ChenResult], first: str) -> None:
    """The reading-point checks of one preset and its notes."""
    rows = {(r.method, r.learning_rate): r.summary() for r in results}
    for (method, lr), s in rows.items():
        res.notes.append(
            f"{name}, {method} lr={lr:g}: stop step {s.stop_step}, drop {s.drop:.4f} +- "
            f"{s.drop_se:.4f}, gain {s.gain:.4f} +- {s.gain_se:.4f} ({s.seeds} seeds, "
            f"{s.diverged} diverged)")
    runs = PRESETS[name].runs
    fkl = rows[runs[0]]  # the paper's main SFT rate
    rl = rows[next(k for k in runs if k[0] == "reverse_kl")]
    for label, s in (("forward KL", fkl), ("RL", rl)):
        res.check(f"{name}: {label} reaches Gain 0.9 (true by construction of the reading point "
                  f"once it exists: not verification)", 0.9, s.gain, 0.0,
                  "Monte Carlo standard error", kind="lower_bound",
                  predicted_by="algebraic identity", measured_by="finite-batch simulation",
                  independent=False)
    a, b = (fkl, rl) if first == "forward_kl" else (rl, fkl)
    second = "reverse_kl" if first == "forward_kl" else "forward_kl"
    res.check(f"{name}: drop({first}) - drop({second}) at Gain 0.9 (> {N_SIGMA:g} s.e.)",
              N_SIGMA * float(np.hypot(a.drop_se, b.drop_se)), a.drop - b.drop, 0.0,
              "Monte Carlo standard error", kind="lower_bound",
              predicted_by="finite-batch simulation", measured_by="finite-batch simulation",
              independent=False)


def _paired_se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(x.size))


def _floor_effect(res: ClaimResult, runs: dict[str, list[ChenResult]], ax: Panel) -> None:
    """What the floor changes, floored against clean on the same seeds (paired)."""
    single_f, single_c = runs["chen2025-single-mode"][1], runs["chen2025-single-mode-clean"][1]
    sf, sc = single_f.summary(), single_c.summary()
    if sf.stop_step is not None and sc.stop_step is not None:
        res.notes.append(
            f"Floor effect, single-mode RL: Gain 0.9 reached at step {sf.stop_step} with the "
            f"floors against {sc.stop_step} without ({sf.stop_step - sc.stop_step:+d} steps); "
            f"drop {sf.drop:.4f} against {sc.drop:.4f}. The learner starts at -3.5, where "
            f"N(x; 3.5, 0.7^2) / q / 0.1 ~ 1e-21 is far below the 1e-12 inside the log, so the "
            f"early reward is the constant log(1e-12) = -27.6 for most samples and carries no "
            f"signal; only the right tail of each batch moves the learner.")
        drop_gap = single_c.drop[:, sc.stop_step] - single_f.drop[:, sf.stop_step]
        res.check("floor effect: single-mode RL drop, clean - floored, each at its Gain 0.9 "
                  f"(> {N_SIGMA:g} s.e.; a finding of this project, not verification)",
                  N_SIGMA * _paired_se(drop_gap), float(drop_gap.mean()), 0.0,
                  "Monte Carlo standard error", kind="lower_bound",
                  predicted_by="finite-batch simulation", measured_by="finite-batch simulation",
                  independent=False)
    two_f, two_c = runs["chen2025-two-mode"][0], runs["chen2025-two-mode-clean"][0]
    curve_se = two_c.acc_new.std(0, ddof=1) / np.sqrt(two_c.acc_new.shape[0])
    diff = two_f.acc_new - two_c.acc_new
    paired = diff.std(0, ddof=1) / np.sqrt(diff.shape[0])
    # In s.e. of the curve, up to the clean run's reading point, where the curve has a spread
    # (not at step 0, where every seed is equal).
    horizon = np.arange(curve_se.size) <= (two_c.summary().stop_step or curve_se.size)
    spread = (curve_se > 1e-9 * curve_se.max()) & horizon
    ratio = np.where(spread, np.abs(diff.mean(0)) / np.where(spread, curve_se, 1.0), 0.0)
    t = int(np.argmax(ratio))
    gap = float(diff.mean(0)[t])
    res.notes.append(
        f"Floor effect, two-mode forward KL (lr 0.15): the seed-mean acc_new curves differ by up "
        f"to {ratio[t]:.1f} seed-to-seed s.e. of the curve before Gain 0.9 (step {t}: "
        f"{gap:+.4f}, {abs(gap) / max(paired[t], 1e-300):.0f} paired s.e.); Gain 0.9 at step "
        f"{two_f.summary().stop_step} with the floors, {two_c.summary().stop_step} without. The "
        f"floor matters for samples in the far tail of N(3.5, 0.7^2), where q1 + q2 is near "
        f"1e-12 while the new component is still far.")
    for k, (f, c, label) in enumerate(((single_f, single_c, "single-mode RL"),
                                       (two_f, two_c, "two-mode SFT lr 0.15"))):
        steps = np.arange(f.acc_new.shape[1])
        ax.line(steps, f.acc_new.mean(0), f"{label}, floors", color=f"C{k}")
        ax.line(steps, c.acc_new.mean(0), f"{label}, clean", color=f"C{k}", style="--")
    ax.label("iteration [steps]", "new-mode overlap acc_new [fraction]",
             "what the 1e-12 floor changes")


def _long_run(res: ClaimResult, steps: int, seeds: int, seed: int, ax: Panel) -> None:
    rl = run_chen2025("two-mode", "reverse_kl", steps=steps, seeds=seeds, seed=seed)
    exact = run_chen2025("two-mode", "exact_reverse_kl", steps=steps, seeds=1)
    pi_rl, pi_exact = rl.params[:, :, 0], exact.params[0, :, 0]
    final = pi_rl[:, -1]
    se = float(final.std(ddof=1) / np.sqrt(seeds))
    res.check(f"RL estimator (published arithmetic) drains pi1: 0.75 - pi1(T={steps}) "
              f"(> {N_SIGMA:g} s.e.)", N_SIGMA * se, PI1_0 - final.mean(), 0.0,
              "Monte Carlo standard error", kind="lower_bound",
              predicted_by="finite-batch simulation", measured_by="finite-batch simulation",
              independent=False)
    res.check(f"exact reverse KL: min_t pi1(t) over T={steps} (does not drain)", PI1_0,
              float(pi_exact.min()), 1e-6, "quadrature error", kind="lower_bound",
              predicted_by="closed form", measured_by="population run", independent=True)
    theta = exact.params[0, -1]
    kl, _ = reverse_kl_and_grad(theta[None])
    res.notes.append(
        f"Exact reverse KL after {steps} steps: (pi1, mu1, s1, mu2, s2) = "
        f"{np.round(theta, 4).tolist()}, KL(q || p) = {float(kl[0]):.4f}. From the paper's start "
        f"within this horizon the exact descent has not learned the new mode: its new component "
        f"sits between the modes and widens, and pi1 rises above 0.75. Run much longer (tens of "
        f"thousands of steps, docs/chen2025.md) it reaches the target and pi1 returns to 0.750. "
        f"So over the paper's horizon 'exact reverse KL keeps pi1 at 0.75' holds as 'it does not "
        f"drain pi1'; the target is reached only asymptotically.")
    steps_ax = np.arange(pi_rl.shape[1])
    ax.line(steps_ax, pi_rl.mean(0), f"their RL estimator ({seeds} seeds)", color="C0")
    ax.band(steps_ax, np.quantile(pi_rl, 0.05, 0), np.quantile(pi_rl, 0.95, 0), color="C0")
    ax.line(steps_ax, pi_exact, "exact reverse KL (quadrature)", color="C3")
    ax.hline(PI1_0, "target pi1 = 0.75")
    ax.label("iteration [steps]", "old weight pi1 [probability]", "long run, two-mode")


def run(ctx: ClaimContext) -> ClaimResult:
    """The four presets side by side, the engine against the published arithmetic, the floor's
    effect and the long run."""
    seeds = ctx.profile.pick(16, 64)
    long_steps = ctx.profile.pick(1000, 3000)
    long_seeds = ctx.profile.pick(8, 32)
    res = new_result(ctx, STATEMENT,
                     presets={k: [v.variant, v.steps, [list(r) for r in v.runs], v.floors]
                              for k, v in PRESETS.items()},
                     seeds=seeds, long_run_steps=long_steps, long_run_seeds=long_seeds,
                     samples_per_iteration=1000, gain_threshold=0.9,
                     density_floor=model.DENSITY_FLOOR)
    fig = res.figure(3, 2, title="Chen et al. (2025) toy: published arithmetic (floors) and clean")
    runs = {}
    for k, name in enumerate(PRESETS):
        _reference_check(res, name, ctx.seed)
        runs[name] = run_preset(name, seeds, ctx.seed)
        _draw(fig.panels[k], name, runs[name])
        _ordering(res, name, runs[name], "forward_kl" if "two-mode" in name else "reverse_kl")
    _floor_effect(res, runs, fig.panels[4])
    _long_run(res, long_steps, long_seeds, ctx.seed, fig.panels[5])
    res.notes.append(
        "The paper's own numerical values are not available to this project; the checks are "
        "its stated qualitative results (the orderings), with our numbers above.")
    return res
