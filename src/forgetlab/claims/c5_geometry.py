"""C5: local geometry at the optimum of reverse KL, and exponential convergence.

Checks:

1. Hessian = Fisher at theta* = (alpha, a, b): the Hessian of L_R obtained by central finite
   differences of the exact gradient (:func:`forgetlab.population.reverse_kl_gradient`, raw
   coordinates) equals :func:`forgetlab.population.fisher_information` at theta*. Tolerance:
   the difference between the finite-difference Hessians at steps h and h/2 (its step-size
   error estimate) plus 1e-8 for the engine.
2. Contraction: population gradient descent (logit weight, means, Sigma = I: the "natural"
   coordinates) started near theta* contracts ||theta_t - theta*|| by max_i |1 - s lambda_i|
   per step, lambda_i the eigenvalues of :func:`forgetlab.theory.local_geometry`. The measured
   factor is the geometric-mean ratio over the second half of the window where
   1e-9 <= ||theta_t - theta*|| <= 1e-3; the subdominant modes decay geometrically, so its
   error is below the difference from the first half's factor, which is the tolerance
   (plus 1e-6).
3. Independent reference: the engine's Fisher information at theta* against E_q[score
   score^T] integrated by scipy.integrate on a 2-D grid (:mod:`forgetlab.claims.reference`),
   to the quadrature error 1e-9. Checks 1 and 2 use the engine on both sides (consistency).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logit

from forgetlab import population, theory
from forgetlab.claims import reference
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result, sim_config
from forgetlab.dynamics import simulate
from forgetlab.mixture import TwoModeMixture

STATEMENT = (
    "At theta* the Hessian of L_R equals the Fisher information F(theta*); for separated modes "
    "F ~ blockdiag(1/(alpha(1-alpha)), alpha Sigma^{-1}, (1-alpha) Sigma^{-1}) up to "
    "O(poly(Delta) BC). Gradient descent with step s converges exponentially, contracting "
    "||theta_t - theta*|| by max_i |1 - s lambda_i| per step."
)

ALPHAS = (0.2, 0.5)
SEPARATIONS = (3.0, 5.0)
STEPS_S = (0.5, 1.0, 2.0)
KICK = 0.01
WINDOW = (1e-3, 1e-9)


def _fd_hessian(target: TwoModeMixture, h: float) -> np.ndarray:
    """Central differences of the exact gradient at theta*, ``[..., P, P]``."""
    dim = target.dim
    theta = np.concatenate([target.weight_old[..., None], target.mean_old, target.mean_new], -1)
    n_p = theta.shape[-1]
    cols = []
    for j in range(n_p):
        grads = []
        for sign in (1.0, -1.0):
            th = theta.copy()
            th[..., j] += sign * h
            q = TwoModeMixture(th[..., 0], th[..., 1:dim + 1], th[..., dim + 1:], target.cov)
            g = population.reverse_kl_gradient(q, target)
            grads.append(np.concatenate([g.weight_old[..., None], g.mean_old, g.mean_new], -1))
        cols.append((grads[0] - grads[1]) / (2.0 * h))
    return np.stack(cols, axis=-1)


def _hessian_check(res: ClaimResult) -> None:
    a_grid, d_grid = np.meshgrid(ALPHAS, SEPARATIONS, indexing="ij")
    target = TwoModeMixture(a_grid, np.zeros(2), np.stack([d_grid, 0 * d_grid], -1), 1.0)
    fisher = population.fisher_information(target)
    h = 1e-4
    fd, fd_half = _fd_hessian(target, h), _fd_hessian(target, h / 2)
    err = float(np.max(np.abs(fd_half - fisher)))
    tol = float(np.max(np.abs(fd - fd_half))) + 1e-8
    brute = reference.fisher(reference.Mix.of(
        target.weight_old.ravel(), target.mean_old.reshape(-1, 2), target.mean_new.reshape(-1, 2),
        np.eye(2)))
    res.check("max |Fisher (engine) - E_q[score score^T] (brute-force quadrature)| at theta*",
              0.0, float(np.max(np.abs(fisher.reshape(brute.shape) - brute))), 1e-9,
              "quadrature error", predicted_by="brute-force quadrature",
              measured_by="exact engine", independent=True)
    res.check("max |Hessian (finite differences) - Fisher| at theta*", 0.0, err, tol,
              "step-size error",
              predicted_by="exact engine", measured_by="finite differences", independent=False)
    sep = theory.separated_fisher(a_grid, np.eye(2)[None, None])
    res.notes.append(
        "max |F - separated blockdiag| at theta*: "
        + ", ".join(f"Delta={d:g}: {np.max(np.abs(fisher - sep)[:, i]):.3g}"
                    for i, d in enumerate(SEPARATIONS)))


def run(ctx: ClaimContext) -> ClaimResult:
    """Hessian = Fisher, and measured contraction against max |1 - s lambda_i|."""
    steps = ctx.profile.pick(400, 800)
    stride = 5
    res = new_result(ctx, STATEMENT, alphas=ALPHAS, separations=SEPARATIONS,
                     step_sizes=STEPS_S, kick=KICK, steps=steps, dim=2, cov="identity",
                     parameterisation="natural (logit weight, plain means, Sigma = I)",
                     window=WINDOW)
    _hessian_check(res)
    grid = [(a, d, s) for a in ALPHAS for d in SEPARATIONS for s in STEPS_S]
    configs = [
        sim_config(
            exact_metrics=False, method="rl", steps=steps, stride=stride, learning_rate=s,
            problem={"dim": 2, "cov": 1.0, "separation": d, "alpha": a,
                     "beta0": float(a + KICK), "learner_new_mean": [d - KICK, KICK]},
        )
        for a, d, s in grid
    ]
    traj = simulate(configs)
    alpha = np.array([g[0] for g in grid])
    target = TwoModeMixture(alpha, traj.target_mean_old[:, 0, 0], traj.target_mean_new[:, 0, 0],
                            1.0)
    geom = theory.local_geometry(target, np.array([g[2] for g in grid]), "natural")
    dist = np.sqrt((logit(traj.weight_old[:, 0]) - logit(alpha)[:, None]) ** 2
                   + np.sum((traj.mean_old[:, 0] - traj.target_mean_old[:, 0]) ** 2, -1)
                   + np.sum((traj.mean_new[:, 0] - traj.target_mean_new[:, 0]) ** 2, -1))
    measured = np.full(len(grid), np.nan)
    fig = res.figure(2, title="C5: local geometry and exponential convergence")
    axes = fig.panels
    for c, (a, d, s) in enumerate(grid):
        idx = np.flatnonzero((dist[c] <= WINDOW[0]) & (dist[c] >= WINDOW[1]))
        name = f"alpha={a:g}, Delta={d:g}, s={s:g}"
        if idx.size < 4:
            res.notes.append(f"{name}: too few steps inside the window {WINDOW}")
            continue
        i0, i1 = idx[0], idx[-1]
        im = idx[len(idx) // 2]
        t0, tm, t1 = traj.steps[i0], traj.steps[im], traj.steps[i1]
        first = (dist[c, im] / dist[c, i0]) ** (1.0 / (tm - t0))
        rate = (dist[c, i1] / dist[c, im]) ** (1.0 / (t1 - tm))
        measured[c] = rate
        res.check(f"contraction per step, {name}", geom.contraction[c], rate,
                  abs(first - rate) + 1e-6, "iteration error",
                  predicted_by="exact engine", measured_by="population run", independent=False)
        res.notes.append(
            f"{name}: lambda_min {geom.lambda_min[c]:.4f}, lambda_max {geom.lambda_max[c]:.4f}, "
            f"condition number {geom.condition_number[c]:.3g}, predicted factor "
            f"{geom.contraction[c]:.5f}, measured {rate:.5f}")
    order = np.argsort(geom.contraction)
    axes[0].series(np.arange(len(grid)), geom.contraction[order], measured[order],
                  labels=("max_i |1 - s lambda_i|", "measured factor"))
    axes[0].label("configuration (sorted by predicted factor) [index]",
          "contraction per step [ratio]", "predicted vs measured contraction")
    for c in range(len(grid)):
        axes[1].line(traj.steps, np.maximum(dist[c], 1e-17), color=f"C{c % 10}")
    axes[1].yscale = "log"
    axes[1].label("step t [iterations]", "||theta_t - theta*|| [logit / Mahalanobis units]",
          f"{len(grid)} runs started near theta*")
    return res
