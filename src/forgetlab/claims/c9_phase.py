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

Checks (one per factor; population differences to floating point, finite-batch ones within 4
standard errors):
1. direction: at every Delta reverse KL retains more mass than forward KL;
2. overlap: reverse-KL worst-case drift at the largest Delta is below that at the smallest;
3. sampling: the spread of beta_T across seeds at B = 2 exceeds that at the largest B;
4. visibility: at every Delta forward KL with replay lambda = 0.5 retains more than without.
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
BETA0, ALPHA = 0.5, 0.5
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
                lr: float = 0.5, start: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    cfgs = [sim_config(method=method, knobs=knobs, steps=steps, stride=steps,
                             exact_metrics=False,
                             learning_rate=lr, problem=_problem(s, start)) for s in seps]
    tr = simulate(cfgs)
    return tr.weight_old[:, 0, -1] / BETA0, tr.drift_sup[:, 0, -1]


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
        mass[i], _ = _population("sft", knobs, seps, steps, lr=1.0)
    axes[0].heatmap(mass * BETA0, seps, lams, "beta_T [probability]")
    axes[0].label("separation Delta [Mahalanobis units]",
                "replay fraction lambda [fraction]",
                "forward KL + old-data replay: beta_T (theory: lambda)")
    res.check("visibility: min over Delta of beta_T(lambda=0.5) - beta_T(lambda=0)", 0.0,
              float(np.min(mass[-1] - mass[0]) * BETA0), 0.0, "floating point",
              kind="lower_bound",
              predicted_by="closed form", measured_by="population run", independent=True)
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
    k = int(np.argmax(spread[0] - spread[-1]))
    res.check(f"sampling: sd(beta_T) at B={sizes[0]} minus at B={sizes[-1]} (Delta={seps[k]:g})",
              0.0, float(spread[0, k] - spread[-1, k]), N_SIGMA * float(np.hypot(
                  spread_se[0, k], spread_se[-1, k])), "Monte Carlo standard error",
              kind="lower_bound",
              predicted_by="closed form", measured_by="finite-batch simulation", independent=True)

    kept = np.empty((len(METHODS), len(seps)))
    sup = np.empty_like(kept)
    for i, (method, knobs) in enumerate(METHODS.values()):
        kept[i], sup[i] = _population(method, knobs, seps, steps, start=START)
    names = list(METHODS)
    axes[3].heatmap(kept, seps, names, "beta_T / beta_0 [ratio]")
    axes[3].label("separation Delta [Mahalanobis units]", "method",
                  "retained mass by method (population)")
    axes[4].heatmap(np.log10(np.maximum(sup, 1e-16)), seps, names,
            "log10 sup drift [log10 Mahalanobis]")
    axes[4].label("separation Delta [Mahalanobis units]", "method",
                  "worst-case drift by method (population)")
    rev, fwd = names.index("reverse KL"), names.index("SFT")
    res.check("direction: min over Delta of retained mass, reverse KL minus forward KL", 0.0,
              float(np.min(kept[rev] - kept[fwd])), 0.0, "floating point", kind="lower_bound",
              predicted_by="closed form", measured_by="population run", independent=True)
    res.check(f"overlap: reverse-KL sup drift at Delta={seps[-1]:g} minus at Delta={seps[0]:g}",
              0.0, float(sup[rev, -1] - sup[rev, 0]), 0.0, "floating point", kind="upper_bound",
              predicted_by="closed form", measured_by="population run", independent=True)
    for name, row, drow in zip(names, kept, sup, strict=True):
        res.notes.append(f"{name}: beta_T/beta_0 by Delta {np.round(row, 3).tolist()}, "
                         f"sup drift {[float(f'{v:.3g}') for v in drow]}")
    axes[5].text("Factors:\n(i) direction: forward vs reverse KL\n(ii) overlap: Delta\n"
                 "(iii) sampling: population vs batch B\n(iv) visibility: replay lambda")
    return res
