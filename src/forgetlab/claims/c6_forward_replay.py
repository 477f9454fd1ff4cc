"""C6: forward KL with replay: the retained old mass is what the training data shows.

Population SFT on D_lambda = lambda R + (1 - lambda) p_new (exact engine, gradient descent,
logit weight, step 1), Delta = 4, d = 2, a general Sigma. Checks:

1. R = p_old: the run ends at (lambda, a, b) (:func:`forgetlab.theory.old_data_optimum`).
2. R = frozen initial model q_0: the run ends at the forward-KL projection of the
   three-component mixture lambda q_0 + (1 - lambda) p_new computed by EM with exact
   expectations (:func:`forgetlab.theory.frozen_model_optimum`); retained mass ~ lambda beta_0
   for separated modes is shown beside it.
3. R = the current model (stop-gradient): the run is the plain SFT run with learning rate
   s (1 - lambda) (:func:`forgetlab.theory.current_model_scale`), to floating point, and the old
   weight still decays.

4. Independent reference for 2: the optimum is also found by scipy.optimize (BFGS) on the
   cross entropy -E_D[log q] integrated by scipy.integrate on a 2-D grid
   (:func:`forgetlab.claims.reference.forward_kl_optimum`); engine EM and brute-force optimiser
   agree to 1e-7 (the optimiser's gradient tolerance over the curvature, plus quadrature). The
   separated approximation lambda beta_0 of the retained mass is shown with its error.

Tolerance of 1 and 2: an a-posteriori iteration bound. With rho_hat the largest ratio of
consecutive recorded parameter moves among the last three, ||theta_T - theta_inf|| <=
rho_hat / (1 - rho_hat) ||theta_T - theta_{T-k}||, plus 1e-8 for the engine's accuracy; for 2
the predicted optimum's own error, ||gradient there|| / (smallest Fisher eigenvalue), is added.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logit

from forgetlab import theory
from forgetlab.claims import reference
from forgetlab.claims.base import ClaimContext, ClaimResult, new_result, sim_config
from forgetlab.dynamics import simulate
from forgetlab.gaussian import factorise
from forgetlab.mixture import TwoModeMixture
from forgetlab.simconfig import SimulationConfig
from forgetlab.trajectory import Trajectory

STATEMENT = (
    "Forward KL on D_lambda = lambda R + (1 - lambda) p_new: with R = p_old the optimum is "
    "exactly (lambda, a, b), so the retained mass equals the replay fraction; with R = the "
    "frozen initial model it is the forward-KL projection of a three-component mixture "
    "(retained mass ~ lambda beta_0); with R = the current model (stop-gradient) replay "
    "contributes nothing (E_q[grad log q] = 0): plain SFT with the learning rate times "
    "(1 - lambda), and mass forgetting persists."
)

COV = [[1.0, 0.4], [0.4, 0.8]]
SEPARATION = 4.0
BETA0 = 0.6
LAMBDAS = (0.1, 0.3, 0.5, 0.7)
STEP = 1.0
FLOOR = 1e-8


def _configs(replay: str, steps: int, stride: int, lr_factor: float = 1.0,
             lambdas: tuple[float, ...] = LAMBDAS) -> list[SimulationConfig]:
    return [
        sim_config(
            exact_metrics=False,
            method="sft", knobs={"replay": replay, "replay_fraction": lam}, steps=steps,
            stride=stride, learning_rate=STEP * (1.0 - lam if lr_factor < 0 else lr_factor),
            problem={"dim": 2, "cov": COV, "separation": SEPARATION, "beta0": BETA0,
                     "new_mean_start": 0.5},
        )
        for lam in lambdas
    ]


def _theta(traj: Trajectory) -> np.ndarray:
    """(logit beta, whitened m_o, whitened m_n) per record, ``[C, T, 1 + 2d]``."""
    white = factorise(np.asarray(COV), len(COV)).whiten
    return np.concatenate([logit(traj.weight_old[:, 0])[..., None],
                           white(traj.mean_old[:, 0]), white(traj.mean_new[:, 0])], -1)


def _iteration_bound(traj: Trajectory) -> np.ndarray:
    theta = _theta(traj)
    moves = np.linalg.norm(np.diff(theta[:, -5:], axis=1), axis=-1)  # last 4 moves
    last = moves[:, -1]
    ratio = np.clip(np.max(moves[:, 1:] / np.maximum(moves[:, :-1], 1e-300), axis=1), 0.0, 0.99)
    return ratio / (1.0 - ratio) * last + FLOOR


def _distance(traj: Trajectory, opt: TwoModeMixture) -> np.ndarray:
    """||theta_T - theta_opt|| in (logit, Mahalanobis) coordinates, ``[C]``."""
    theta = _theta(traj)[:, -1]
    white = factorise(np.asarray(COV), len(COV)).whiten
    ref = np.concatenate([logit(opt.weight_old)[..., None], white(opt.mean_old),
                          white(opt.mean_new)], -1)
    return np.linalg.norm(theta - ref, axis=-1)


def _brute_frozen(res: ClaimResult, initial: TwoModeMixture, b: np.ndarray, lam: np.ndarray,
                  opt: TwoModeMixture) -> None:
    """Frozen-model optimum: engine EM against a brute-force optimiser; lambda beta_0 error."""
    k = len(lam)
    w0 = float(initial.weight_old)
    weights = np.stack([lam * w0, lam * (1 - w0), 1 - lam], -1)
    means = np.stack([np.broadcast_to(initial.mean_old, (k, 2)),
                      np.broadcast_to(initial.mean_new, (k, 2)), np.broadcast_to(b, (k, 2))], 1)
    start = reference.Mix.of(lam * w0, np.broadcast_to(initial.mean_old, (k, 2)),
                             np.broadcast_to(b, (k, 2)), COV)
    # a coarser grid (0.1 sd) keeps the optimiser fast; the agreement it reaches is 1e-10
    brute = reference.forward_kl_optimum(weights, means, COV, start, spacing=0.1)
    for j, value in enumerate(lam):
        err = max(abs(brute.beta[j] - opt.weight_old[j]),
                  float(np.max(np.abs(brute.m_o[j] - opt.mean_old[j]))),
                  float(np.max(np.abs(brute.m_n[j] - opt.mean_new[j]))))
        res.check(f"R = q_0, lambda={value:g}: max |frozen-model optimum (engine EM) - "
                  f"brute-force optimiser|", 0.0, err, 1e-7, "iteration error",
                  predicted_by="optimiser run", measured_by="exact engine", independent=True)
        approx = value * BETA0
        res.notes.append(
            f"R = q_0, lambda={value:g}: brute-force optimum beta {brute.beta[j]:.6f}, "
            f"separated approximation lambda beta_0 = {approx:.4f}, its error "
            f"{brute.beta[j] - approx:+.4f} ({(brute.beta[j] - approx) / approx:+.1%})")


def run(ctx: ClaimContext) -> ClaimResult:
    """Old-data replay, frozen-model replay and self-replay."""
    steps = ctx.profile.pick(400, 1500)
    stride = ctx.profile.pick(10, 25)
    res = new_result(ctx, STATEMENT, cov=COV, separation=SEPARATION, beta0=BETA0,
                     replay_fractions=LAMBDAS, learning_rate=STEP, steps=steps, stride=stride,
                     weight_coordinate="logit", optimizer="gd")
    fig = res.figure(2, title="C6: forward KL with replay")
    axes = fig.panels
    lam = np.asarray(LAMBDAS)
    problem = _configs("old", 1, 1)[0].problem
    target, initial = problem.target(), problem.initial()
    a, b = target.mean_old, target.mean_new

    old = simulate(_configs("old", steps, stride))
    raw = theory.old_data_optimum(a, b, lam)
    opt_old = TwoModeMixture(raw.weight_old, raw.mean_old, raw.mean_new, COV)
    dist, tol = _distance(old, opt_old), _iteration_bound(old)
    for k, value in enumerate(lam):
        res.check(f"R = p_old, lambda={value:g}: ||theta_T - (lambda, a, b)||", 0.0, dist[k],
                  tol[k], "iteration error",
                  predicted_by="closed form", measured_by="population run", independent=True)

    frozen = simulate(_configs("initial", steps, stride))
    opt_frozen, grad_norm = theory.frozen_model_optimum(initial, b, lam)
    # the predicted optimum is itself iterated: its distance to the true one is about
    # ||gradient there|| / smallest curvature (Fisher information in natural coordinates)
    curvature = theory.local_geometry(opt_frozen, 1.0, "natural").lambda_min
    pred_err = grad_norm / np.maximum(curvature, 1e-3)
    dist, tol = _distance(frozen, opt_frozen), _iteration_bound(frozen)
    for k, value in enumerate(lam):
        res.check(f"R = q_0, lambda={value:g}: ||theta_T - frozen-model optimum||", 0.0, dist[k],
                  tol[k] + float(pred_err[k]), "iteration error",
                  predicted_by="exact engine", measured_by="population run", independent=False)
        res.notes.append(
            f"R = q_0, lambda={value:g}: predicted beta_inf {opt_frozen.weight_old[k]:.6f}, "
            f"measured {frozen.weight_old[k, 0, -1]:.6f}, separated approximation lambda beta_0 "
            f"= {value * BETA0:.6f}")

    _brute_frozen(res, initial, b, lam, opt_frozen)

    current = simulate(_configs("current", steps, stride))
    plain = simulate(_configs("none", steps, stride, lr_factor=-1.0))
    scale = theory.current_model_scale(lam)
    res.parameters["current_model_lr_scale"] = scale
    diff = float(np.max(np.abs(current.weight_old - plain.weight_old)))
    res.check("R = q_theta (stop-gradient): max |beta path - SFT path with lr s(1-lambda)|", 0.0,
              diff, 1e-12, "floating point",
              predicted_by="population run", measured_by="population run", independent=False)
    res.check("R = q_theta: largest final beta / beta_0 (mass still decays: < 1)", 1.0,
              float(np.max(current.weight_old[:, 0, -1]) / BETA0), 0.0, "floating point",
              kind="upper_bound",
              predicted_by="closed form", measured_by="population run", independent=True)

    fine = ctx.profile.pick(lam, np.linspace(0.02, 0.9, 12))
    fine_opt = opt_frozen if fine is lam else theory.frozen_model_optimum(initial, b, fine)[0]
    axes[0].series(lam, lam, old.weight_old[:, 0, -1], color_index=0,
                  name="R = p_old: beta = lambda")
    axes[0].series(fine, fine_opt.weight_old, None, color_index=1, name="R = q_0")
    axes[0].series(lam, None, frozen.weight_old[:, 0, -1], color_index=1, name="R = q_0")
    axes[0].line(fine, fine * BETA0, "lambda beta_0", color="gray", style=":")
    axes[0].series(lam, None, current.weight_old[:, 0, -1], color_index=2,
                  name="R = q_theta")
    axes[0].label("replay fraction lambda [fraction of the data]",
          f"old weight after {steps} steps [probability]", "retained mass against replay")
    for k, value in enumerate(lam):
        axes[1].series(plain.steps, plain.weight_old[k, 0], current.weight_old[k, 0],
                      color_index=k, name=f"lambda={value:g}",
                      labels=("SFT, lr s(1-lambda)", "self-replay"))
    axes[1].xscale = "symlog:10"
    axes[1].label("step t [iterations]", "old weight beta(t) [probability]",
          "self-replay = SFT with a smaller step")
    return res
