"""C10: continual post-training over K stages, the split retention matrix against theory.

Chains of K tasks (d = 2, consecutive tasks 4 apart on a circle, Sigma = I; K = 3 quick,
K = 4 full), run by :func:`forgetlab.continual.run_continual`. Checks:

1. Replay chain (SFT replaying every earlier task at lambda = 0.15, exact-engine EM): the
   retained mass of every old task equals the stage fixed point w_j = lambda (closed form)
   and the replayed modes do not drift (closed form: drift 0).
2. The same chain by finite-batch gd (32 seeds, B = 64) against the same chain by population
   gd: final retained mass of every old task within 5 standard errors.
3. SFT chain, stage 1, against the two-mode engine: the K-mode chain (tensor rule on the
   discriminant plane) and the two-mode dynamics (:mod:`forgetlab.population`, 1-D quadrature,
   its own EM loop) give the same old mass and drift. Every later stage drains every old mode
   further (fixed point 0, reached like 1/t), shown in the notes.
4. Reverse chain (reverse KL to targets keeping every mode, gd): weights at the target's
   (closed form), and the drift of every mode below the overlap-gated bound
   sum_l B*_jl D(a_j, a_l) + sum_l B_jl D(m_j, m_l) (lemma bounds, closed form).
5. The engine's soft misassignments E_{phi_j}[r_k] of the K true modes against Monte Carlo
   (2e5 draws per mode, 5 standard errors).

Tolerances: 1 and 4 are iteration errors of the runs (EM with replay contracts by about the
overlap per step: 60 steps leave 1e-14 on the weights, tolerance 1e-6; the 60 reverse-KL gd
steps at rate 1 leave 6e-7 (K = 3) and 1.4e-5 (K = 4), tolerance 1e-4), 2 and 5 are Monte
Carlo standard errors, 3 is the two engines' quadrature error (measured 1e-10).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forgetlab import continual as cl
from forgetlab import kpopulation
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result, sim_config
from forgetlab.dynamics import simulate
from forgetlab.kmixture import KModeMixture

STATEMENT = (
    "Over K post-training stages, the split retention matrix (retained mass w_j and drift "
    "D(m_j, a_j) of every task after every stage) follows the stage fixed points: forward KL "
    "drains every mode outside its data (to 0, polynomially) and keeps replayed modes at "
    "their replay fraction without drift; reverse KL to a target that keeps the modes sends "
    "the weights to the target's, with drift gated by the pairwise overlaps."
)

SEPARATION = 4.0
LAMBDA = 0.15


def _chain(k: int, **stage: Any) -> dict[str, Any]:
    stages = []
    for i in range(1, k):
        s = dict(stage)
        if "replay_fraction" in s:
            s["replay"] = list(range(i))
        stages.append(s)
    return {"dim": 2, "separation": SEPARATION, "stages": stages}


def _labels(k: int) -> tuple[list[str], list[str]]:
    return [f"task {j}" for j in range(k)], [f"after {i}" for i in range(k)]


def run(ctx: ClaimContext) -> ClaimResult:
    k = ctx.profile.pick(3, 4)
    seeds = ctx.profile.pick(32, 64)
    res = new_result(ctx, STATEMENT, tasks=k, dim=2, separation=SEPARATION,
                     replay_fraction=LAMBDA, finite_seeds=seeds, batch_size=64)
    old = [(i, j) for i in range(1, k) for j in range(i)]

    # 1. replay chain: fixed points (closed form) against the exact-engine EM run
    replay = cl.run_continual(cl.parse_continual(
        _chain(k, method="sft", optimizer="em", steps=60, replay_fraction=LAMBDA)))
    err_w = max(abs(replay.retained_mass[i, j] - replay.predicted_mass[i, j]) for i, j in old)
    res.check("replay chain: max |w_j - lambda| over old tasks and stages", 0.0, err_w, 1e-6,
              "iteration error", predicted_by="closed form", measured_by="population run",
              independent=True)
    res.check("replay chain: max drift D(m_j, a_j) of replayed modes", 0.0,
              max(replay.drift[i, j] for i, j in old), 1e-4, "iteration error", "upper_bound",
              predicted_by="closed form", measured_by="population run", independent=True)

    # 2. finite batch against population (same chain, gd in both regimes)
    gd = _chain(k, method="sft", steps=120, learning_rate=0.5, replay_fraction=LAMBDA)
    pop = cl.run_continual(cl.parse_continual(gd))
    fin = cl.run_continual(cl.parse_continual({**gd, "regime": "finite", "seeds": seeds,
                                               "batch_size": 64, "seed": ctx.seed}))
    for j in range(k - 1):
        se = float(fin.retained_mass_se[-1, j])
        res.check(f"finite batch vs population: final mass of task {j}",
                  pop.retained_mass[-1, j], fin.retained_mass[-1, j], 5 * se,
                  "Monte Carlo standard error", predicted_by="population run",
                  measured_by="finite-batch simulation", independent=True)

    # 3. SFT chain: stage 1 against the two-mode engine
    sft = cl.run_continual(cl.parse_continual(_chain(k, method="sft", optimizer="em",
                                                     steps=40)))
    two = simulate(sim_config(method="sft", optimizer="em", steps=40, stride=40,
                              problem={"dim": 2, "separation": SEPARATION, "beta0": 0.5,
                                       "new_mean_start": 0.5,
                                       "old_mean": sft.task_means[0].tolist(),
                                       "new_mean": sft.task_means[1].tolist()}))
    res.check("SFT chain stage 1: old mass, K-mode vs two-mode engine",
              two.weight_old[0, 0, -1], sft.retained_mass[1, 0], 1e-8, "quadrature error",
              predicted_by="population run", measured_by="population run", independent=False)
    res.check("SFT chain stage 1: old drift, K-mode vs two-mode engine",
              two.drift[0, 0, -1], sft.drift[1, 0], 1e-7, "quadrature error",
              predicted_by="population run", measured_by="population run", independent=False)
    res.notes.append("SFT chain, mass of task 0 after each stage: " + ", ".join(
        f"{v:.3g}" for v in sft.retained_mass[:, 0]) + " (fixed point 0, reached like 1/t); "
        "drift of the drained modes: " + ", ".join(f"{v:.3g}" for v in sft.drift[-1, :-1]))

    # 4. reverse chain: target weights and the overlap-gated drift bound
    rev = cl.run_continual(cl.parse_continual({**_chain(k, method="reverse_kl", steps=60,
                                                        learning_rate=1.0),
                                               "entry_weight": 0.3}))
    err_r = max(abs(rev.retained_mass[i, j] - rev.predicted_mass[i, j])
                for i in range(1, k) for j in range(i + 1))
    res.check("reverse chain: max |w_j - target weight|", 0.0, err_r, 1e-4, "iteration error",
              predicted_by="closed form", measured_by="population run", independent=True)
    slack = min(rev.predicted_drift_bound[i, j] - rev.drift[i, j]
                for i in range(1, k) for j in range(i + 1))
    res.check("reverse chain: min over modes of (gated drift bound - drift)", 0.0, slack, 0.0,
              "floating point", "lower_bound", predicted_by="closed form",
              measured_by="population run", independent=True)

    # 5. engine against Monte Carlo on the K true modes
    mix = KModeMixture(np.full(k, 1.0 / k), sft.task_means, 1.0)
    eps = kpopulation.soft_misassignments(mix)
    rng = ctx.rng()
    n = 200_000
    worst = 0.0
    for j in range(k):
        x = sft.task_means[j] + rng.standard_normal((n, 2))
        r = mix.responsibilities(x)
        z = np.abs(r.mean(axis=0) - eps[j]) / (r.std(axis=0) / np.sqrt(n) + 1e-300)
        worst = max(worst, float(np.max(z)))
    res.check("engine E_{phi_j}[r_k] vs Monte Carlo: largest |z|", 0.0, worst, 5.0,
              "Monte Carlo standard error", "upper_bound", predicted_by="exact engine",
              measured_by="Monte Carlo", independent=True)

    # figure: the split retention matrix of each chain
    tasks, stages = _labels(k)
    fig = res.figure(ncols=3, nrows=2, title="C10: split retention matrix (rows: after stage "
                     "i, columns: task j)", stem="retention")
    for row, (name, chain) in enumerate((("SFT chain", sft), ("replay chain", replay))):
        mass, pred, drift = fig.panels[3 * row:3 * row + 3]
        mass.heatmap(chain.retained_mass, tasks, stages, "retained mass w_j")
        mass.label("task j", "stage i", f"{name}: mass (measured)")
        pred.heatmap(chain.predicted_mass, tasks, stages, "predicted w_j")
        pred.label("task j", "stage i", f"{name}: mass (fixed points)")
        drift.heatmap(chain.drift, tasks, stages, "drift D(m_j, a_j)")
        drift.label("task j", "stage i", f"{name}: drift")
    res.notes.append("summaries (replay chain, measured / predicted): backward transfer "
                     f"{replay.summary()['backward_transfer']:.4f} / "
                     f"{replay.summary()['predicted_backward_transfer']:.4f}; forgetting "
                     f"{replay.summary()['forgetting']:.4f} / "
                     f"{replay.summary()['predicted_forgetting']:.4f}")
    return res
