"""Chen et al. (2025): their toy's two figures, reproduced, and the long run of their estimator.

Settings exactly as in :mod:`forgetlab.chen2025` (presets ``chen2025-two-mode`` and
``chen2025-single-mode``: 1-D, unequal learnable variances, old-parameter rate x 0.005,
1000 samples per iteration). Drop and Gain are read on the seed-mean curves at the first
iteration where Gain >= 0.9. Checks:

1. Two-mode: both forward KL (SFT, lr 0.15) and their RL estimator (lr 0.01) reach Gain 0.9, and
   forward KL drops more old-mode overlap: drop(SFT) - drop(RL) exceeds 4 standard errors
   (seed-to-seed spread of the two means, combined).
2. Single-mode: the order flips: drop(RL) - drop(SFT) exceeds 4 standard errors.
3. Long run: their RL estimator (no baseline, positive reward once the new mode fits) drains
   the old weight pi1 below 0.75 by more than 4 standard errors, while descent on the exact
   reverse KL (quadrature, deterministic) does not lower pi1 (tolerance 1e-6: its quadrature
   accuracy).
"""

from __future__ import annotations

import numpy as np

from forgetlab.chen2025 import PRESETS, reverse_kl_and_grad, run_chen2025, run_preset
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result
from forgetlab.claims.figures import Panel

STATEMENT = (
    "In the Chen et al. (2025) toy, at equal new-task gain (Gain >= 0.9) forward KL (SFT) loses "
    "more old-mode overlap than their RL estimator with a two-mode learner, and the order flips "
    "with a single-mode learner. Their RL estimator has no baseline and a positive reward once "
    "the new mode fits, so run long it also drains the old weight pi1; descent on the exact "
    "reverse KL does not."
)

N_SIGMA = 4.0
PI1_0 = 0.75


def _ordering(res: ClaimResult, preset: str, seeds: int, seed: int, first: str, second: str,
              ax: Panel) -> None:
    results = {(r.method, r.learning_rate): r for r in run_preset(preset, seeds, seed)}
    runs = PRESETS[preset].runs
    rows = {}
    for k, (method, lr) in enumerate(runs):
        r = results[(method, lr)]
        s = r.summary()
        rows[(method, lr)] = s
        steps = np.arange(r.acc_old.shape[1])
        name = f"{method} lr={lr:g}"
        ax.line(steps, r.acc_old.mean(0), f"acc_old, {name}", color=f"C{k}")
        ax.line(steps, r.acc_new.mean(0), f"acc_new, {name}", color=f"C{k}", style="--")
        if s.stop_step is not None:
            ax.vline(s.stop_step, color=f"C{k}")
        res.notes.append(
            f"{preset}, {name}: stop step {s.stop_step}, drop {s.drop:.4f} +- {s.drop_se:.4f}, "
            f"gain {s.gain:.4f} +- {s.gain_se:.4f} ({s.seeds} seeds, {s.diverged} diverged)")
    ax.label("iteration [steps]", "per-mode overlap acc [fraction]", f"{preset}")
    by_method = {m: rows[(m, lr)] for m, lr in runs if (m, lr) in rows}
    fkl = rows[next(k for k in rows if k[0] == "forward_kl")]  # the paper's main SFT rate
    rl = by_method["reverse_kl"]
    for name, s in (("forward KL", fkl), ("RL", rl)):
        res.check(f"{preset}: {name} reaches Gain 0.9 (gain at stop step)", 0.9, s.gain, 0.0,
                  "Monte Carlo standard error", kind="lower_bound",
                  predicted_by="algebraic identity", measured_by="finite-batch simulation",
                  independent=False)
    a, b = (fkl, rl) if first == "forward_kl" else (rl, fkl)
    se = float(np.hypot(a.drop_se, b.drop_se))
    res.check(f"{preset}: drop({first}) - drop({second}) at Gain 0.9 (> {N_SIGMA:g} s.e.)",
              N_SIGMA * se, a.drop - b.drop, 0.0, "Monte Carlo standard error",
              kind="lower_bound",
              predicted_by="closed form", measured_by="finite-batch simulation", independent=True)


def _long_run(res: ClaimResult, steps: int, seeds: int, seed: int, ax: Panel) -> None:
    rl = run_chen2025("two-mode", "reverse_kl", steps=steps, seeds=seeds, seed=seed)
    exact = run_chen2025("two-mode", "exact_reverse_kl", steps=steps, seeds=1)
    pi_rl, pi_exact = rl.params[:, :, 0], exact.params[0, :, 0]
    final = pi_rl[:, -1]
    se = float(final.std(ddof=1) / np.sqrt(seeds))
    res.check(f"RL estimator drains pi1: 0.75 - pi1(T={steps}) (> {N_SIGMA:g} s.e.)",
              N_SIGMA * se, PI1_0 - final.mean(), 0.0, "Monte Carlo standard error",
              kind="lower_bound",
              predicted_by="closed form", measured_by="finite-batch simulation", independent=True)
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
    """Both presets and the long run."""
    seeds = ctx.profile.pick(16, 64)
    long_steps = ctx.profile.pick(1000, 3000)
    long_seeds = ctx.profile.pick(8, 32)
    res = new_result(ctx, STATEMENT, presets={k: [v.variant, v.steps, list(v.runs), v.floors]
                                              for k, v in PRESETS.items()},
                     seeds=seeds, long_run_steps=long_steps, long_run_seeds=long_seeds,
                     samples_per_iteration=1000, gain_threshold=0.9)
    fig = res.figure(3, title="Chen et al. (2025) toy: reproduction")
    axes = fig.panels
    _ordering(res, "chen2025-two-mode", seeds, ctx.seed, "forward_kl", "reverse_kl", axes[0])
    _ordering(res, "chen2025-single-mode", seeds, ctx.seed, "reverse_kl", "forward_kl", axes[1])
    _long_run(res, long_steps, long_seeds, ctx.seed, axes[2])
    res.notes.append(
        "The paper's own numerical values are not available to this project; the checks are "
        "its stated qualitative results (the orderings), with our numbers above.")
    return res
