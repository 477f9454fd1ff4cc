"""C9: the four factors of forgetting, as phase diagrams.

Forgetting is set by (i) the divergence direction, (ii) the geometric overlap (BC, through the
separation Delta), (iii) the sampling regime (population or finite batch of size B) and (iv) the
visibility of past behaviour (replay). Three diagrams show each factor's effect:

* (Delta, lambda): retained mass beta_T / beta_0 under forward KL with old-data replay
  (population), with the exact optimum lambda beside it;
* (Delta, B): reverse KL in finite batches from beta_0 = 0.1: spread of beta_T across seeds and
  mean worst-case drift, on-policy;
* (method, Delta): retained mass and worst-case drift for SFT, reverse KL, SDFT (lam_demo 0.5)
  and TTT-Discover (no anchor), population; every learner's new mean starts at a + 1.5 (b - a).

The target's old weight alpha = 0.3 differs from the initial beta_0 = 0.5, so "keeps the target"
and "keeps the start" are told apart. Checks (one per factor, each at the fixed separation
Delta = 4 chosen before the run, except overlap, which compares separations; population
differences to floating point, finite-batch ones by 4 standard errors in the predicted
direction):
1. direction: at Delta = 4 reverse KL ends with more old mass beta_T than forward KL, and at
   the target's alpha (a-posteriori iteration bound from the last recorded moves);
2. overlap: reverse-KL worst-case drift at the largest Delta is below that at the smallest;
3. sampling: at Delta = 4 the spread of beta_T across seeds at B = 2 exceeds that at the largest
   B by more than 4 standard errors;
4. visibility: at Delta = 4 forward KL with replay lambda = 0.5 retains more than without.
The other separations are reported in the notes (at small Delta forward KL keeps beta within the
horizon and loses the old mode through drift instead, see C2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgetlab.claims.base import ClaimContext, ClaimResult, new_result, sim_config
from forgetlab.dynamics import simulate

STATEMENT = (
    "Forgetting is set by four factors: divergence direction (forward KL forgets mass, reverse "
    "KL does not), geometric overlap (drift is gated by BC = e^{-Delta^2/8}), sampling regime "
    "(finite on-policy batches add spread and starvation) and visibility of past behaviour "
    "(replay keeps mass). The phase diagrams show retained mass and drift over (Delta, lambda), "
    "(Delta, B) and (method, Delta)."
)

N_SIGMA = 4.0
BETA0, ALPHA = 0.5, 0.3
FIXED = 4.0  # the separation of the pass/fail checks
START = 1.5  # m_n(0) = a + 1.5 (b - a): the new mean never passes the old mode (see C4)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "SFT": ("sft", {}),
    "reverse KL": ("rl", {}),
    "SDFT": ("sdft", {"lam_demo": 0.5, "tau_ema": 0.1}),
    "TTT-Discover": ("ttt-discover", {"adaptive_gamma": False, "gamma": 1.5, "radius": 1.5}),
}


def _problem(sep: float, start: float = 0.5, beta0: float = BETA0) -> dict:
    return {"dim": 1, "separation": sep, "alpha": ALPHA, "beta0": beta0, "new_mean_start": start}


def _population(method: str, knobs: dict, seps: list[float], steps: int,
                lr: float = 0.5, start: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """beta_T / beta_0, sup drift and an a-posteriori bound on |beta_T - beta_inf| per Delta."""
    cfgs = [sim_config(method=method, knobs=knobs, steps=steps, stride=steps // 20,
                       exact_metrics=False,
                       learning_rate=lr, problem=_problem(s, start)) for s in seps]
    tr = simulate(cfgs)
    beta = tr.weight_old[:, 0]
    moves = np.abs(np.diff(beta[:, -4:], axis=-1))
    ratio = np.clip(np.max(moves[:, 1:] / np.maximum(moves[:, :-1], 1e-300), axis=1), 0.0, 0.99)
    bound = ratio / (1.0 - ratio) * moves[:, -1] + 1e-9
    return beta[:, -1] / BETA0, tr.drift_sup[:, 0, -1], bound


def run(ctx: ClaimContext) -> ClaimResult:
    """Three phase diagrams and one check per factor."""
    seps = ctx.profile.pick([1.0, 2.0, 4.0, 6.0], [1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    lams = ctx.profile.pick([0.0, 0.1, 0.3, 0.5], [0.0, 0.1, 0.2, 0.3, 0.5, 0.7])
    sizes = ctx.profile.pick([2, 8, 32], [2, 4, 8, 16, 32, 64])
    steps = ctx.profile.pick(200, 600)
    seeds = ctx.profile.pick(50, 200)
    res = new_result(ctx, STATEMENT, separations=seps, replay_fractions=lams, batch_sizes=sizes,
                     steps=steps, seeds=seeds, beta0=BETA0, alpha=ALPHA, dim=1,
                     methods={k: [m, kn] for k, (m, kn) in METHODS.items()})
    fig = res.figure(3, 2, title="C9: the four factors of forgetting")
    axes = fig.panels

    mass = np.empty((len(lams), len(seps)))
    for i, lam in enumerate(lams):
        knobs = {"replay": "old", "replay_fraction": lam} if lam else {}
        mass[i], _, _ = _population("sft", knobs, seps, steps, lr=1.0)
    axes[0].heatmap(mass * BETA0, seps, lams, "beta_T [probability]")
    axes[0].label("separation Delta [Mahalanobis units]",
                "replay fraction lambda [fraction]",
                "forward KL + old-data replay: beta_T (theory: lambda)")
    fix = seps.index(FIXED)
    res.check(f"visibility: beta_T(lambda=0.5) - beta_T(lambda=0) at Delta={FIXED:g}", 0.0,
              float((mass[-1, fix] - mass[0, fix]) * BETA0), 0.0, "floating point",
              kind="lower_bound",
              predicted_by="closed form", measured_by="population run", independent=False)
    res.notes.append("forward KL + old-data replay, beta_T by (lambda, Delta): "
                     + "; ".join(f"lambda={lam:g}: " + ", ".join(f"{v * BETA0:.3f}" for v in row)
                                 for lam, row in zip(lams, mass, strict=True)))

    spread = np.empty((len(sizes), len(seps)))
    spread_se = np.empty_like(spread)
    drift = np.empty_like(spread)
    for j, size in enumerate(sizes):
        cfgs = [sim_config(method="rl", regime="finite", steps=steps, stride=steps,
                                 learning_rate=0.1, batch_size=size, seeds=seeds, seed=ctx.seed,
                                 exact_metrics=False, problem=_problem(s, START, 0.1))
                for s in seps]
        tr = simulate(cfgs)
        beta = tr.weight_old[:, :, -1]
        spread[j] = beta.std(axis=1, ddof=1)
        spread_se[j] = spread[j] / np.sqrt(2 * (seeds - 1))  # s.e. of a standard deviation
        drift[j] = tr.drift_sup[:, :, -1].mean(axis=1)
    axes[1].heatmap(spread, seps, sizes, "sd of beta_T across seeds", fmt="{:.3f}")
    axes[1].label("separation Delta [Mahalanobis units]", "batch size B [samples]",
                  "reverse KL, finite batch: spread of beta_T")
    axes[2].heatmap(drift, seps, sizes, "mean sup drift [Mahalanobis]", fmt="{:.3f}")
    axes[2].label("separation Delta [Mahalanobis units]", "batch size B [samples]",
                  "reverse KL, finite batch: worst-case drift")
    k = fix
    res.check(f"sampling: sd(beta_T) at B={sizes[0]} minus at B={sizes[-1]} (Delta={seps[k]:g}, "
              f"> {N_SIGMA:g} s.e.)", N_SIGMA * float(np.hypot(spread_se[0, k], spread_se[-1, k])),
              float(spread[0, k] - spread[-1, k]), 0.0, "Monte Carlo standard error",
              kind="lower_bound", predicted_by="finite-batch simulation",
              measured_by="finite-batch simulation", independent=False)

    kept = np.empty((len(METHODS), len(seps)))
    sup = np.empty_like(kept)
    bounds = np.empty_like(kept)
    for i, (method, knobs) in enumerate(METHODS.values()):
        kept[i], sup[i], bounds[i] = _population(method, knobs, seps, steps, start=START)
    names = list(METHODS)
    axes[3].heatmap(kept, seps, names, "beta_T / beta_0 [ratio]")
    axes[3].label("separation Delta [Mahalanobis units]", "method",
                  "retained mass by method (population)")
    axes[4].heatmap(np.log10(np.maximum(sup, 1e-16)), seps, names,
            "log10 sup drift [log10 Mahalanobis]")
    axes[4].label("separation Delta [Mahalanobis units]", "method",
                  "worst-case drift by method (population)")
    rev, fwd = names.index("reverse KL"), names.index("SFT")
    res.check(f"direction: beta_T reverse KL minus forward KL at Delta={FIXED:g}", 0.0,
              float((kept[rev, fix] - kept[fwd, fix]) * BETA0), 0.0, "floating point",
              kind="lower_bound",
              predicted_by="closed form", measured_by="population run", independent=False)
    res.check(f"overlap: reverse-KL sup drift at Delta={seps[-1]:g} minus at Delta={seps[0]:g}",
              0.0, float(sup[rev, -1] - sup[rev, 0]), 0.0, "floating point", kind="upper_bound",
              predicted_by="closed form", measured_by="population run", independent=False)
    res.check(f"direction: reverse KL keeps the target's old weight, beta_T = alpha at "
              f"Delta={FIXED:g}", ALPHA, float(kept[rev, fix] * BETA0), float(bounds[rev, fix]),
              "iteration error", predicted_by="closed form", measured_by="population run",
              independent=True)
    res.notes.append("direction at every Delta (beta_T reverse minus forward KL): " + ", ".join(
        f"Delta={d:g}: {(kept[rev, i] - kept[fwd, i]) * BETA0:+.3f}" for i, d in enumerate(seps)))
    for name, row, drow in zip(names, kept, sup, strict=True):
        res.notes.append(f"{name}: beta_T/beta_0 by Delta {np.round(row, 3).tolist()}, "
                         f"sup drift {[float(f'{v:.3g}') for v in drow]}")
    axes[5].text("Factors:\n(i) direction: forward vs reverse KL\n(ii) overlap: Delta\n"
                 "(iii) sampling: population vs batch B\n(iv) visibility: replay lambda")
    return res
