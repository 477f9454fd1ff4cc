"""Every closed-form quantity and prediction of claims C2 to C7 for one configuration.

:func:`theory_summary` evaluates the theory modules on a :class:`~forgetlab.config.MixtureConfig`
and returns a flat list of :class:`Quantity` records (group, key, value, meaning); the command
``forgetlab theory`` prints them as a table or as JSON (:func:`as_json`, schema in docs/cli.md).
Means are lists of d numbers; every other value is a float, an int or a bool; a value that is
not finite becomes None (JSON null). Quantities that can overflow (chi^2 = e^{Delta^2} - 1) are
given as logarithms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from forgetlab.config import MixtureConfig
from forgetlab.dynamics import reverse_kl_flow, weight_trajectory
from forgetlab.gaussian import bhattacharyya_coefficient, hellinger_squared, mahalanobis
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import (
    kl_divergence,
    misassignment,
    misassignment_bound,
    reverse_kl_gradient,
)
from forgetlab.theory import drift, forward_kl, geometry, replay, reverse_kl

SCHEMA_VERSION = 1

#: Group keys in output order, with their titles.
GROUPS: dict[str, str] = {
    "overlap": "Overlap of the target modes (section 2)",
    "C2": "C2 forward KL on new data: mass forgetting",
    "C3": "C3 reverse KL: optimum at the target",
    "C4": "C4 reverse KL: overlap-gated drift along the population flow",
    "C5": "C5 local geometry at the optimum",
    "C6": "C6 forward KL with replay: fixed points",
    "C7": "C7 reverse KL with replay: weights and starvation",
}


class Quantity(NamedTuple):
    """One reported number: its group, key (stable JSON name), value and meaning."""

    group: str
    key: str
    value: Any
    meaning: str


def _num(x: Any) -> Any:
    arr = np.asarray(x)
    if arr.dtype == bool:
        return bool(arr)
    if arr.ndim == 0:
        if np.issubdtype(arr.dtype, np.integer):
            return int(arr)
        return float(arr) if np.isfinite(arr) else None
    return [float(v) if np.isfinite(v) else None for v in arr.ravel()]


def theory_summary(config: MixtureConfig,
                   progress: Callable[[int], None] | None = None) -> list[Quantity]:
    """All predictions for ``config`` (exact engine; a few seconds for the default steps).

    ``progress``, when given, is called with the number of groups of :data:`GROUPS` finished
    so far, after each group (the last call is ``len(GROUPS)``)."""
    out: list[Quantity] = []

    def put(group: str, key: str, value: Any, meaning: str) -> None:
        out.append(Quantity(group, key, _num(value), meaning))

    def finished(group: str) -> None:
        if progress is not None:
            progress(list(GROUPS).index(group) + 1)

    p, q0 = config.target(), config.initial()
    a, b, cov = p.mean_old, p.mean_new, p.cov
    alpha, beta0, lam, size = config.alpha, config.beta0, config.replay, config.batch_size
    s, steps = config.step_size, config.steps
    delta = float(p.separation())

    # -- overlap ----------------------------------------------------------------------------
    put("overlap", "separation", delta, "Delta = D(a, b), Mahalanobis")
    put("overlap", "bhattacharyya_coefficient", bhattacharyya_coefficient(a, b, cov),
        "BC = exp(-Delta^2/8)")
    put("overlap", "hellinger_squared", hellinger_squared(a, b, cov), "H^2 = 1 - BC")
    put("overlap", "kl_between_modes", delta**2 / 2, "KL(phi_a || phi_b) = Delta^2/2")
    put("overlap", "log_chi2_between_modes", forward_kl.decay_constants(delta)[0],
        "log chi^2(phi_a || phi_b) = log(e^{Delta^2} - 1)")
    put("overlap", "misassignment_soft", misassignment(alpha, a, b, cov, "soft"),
        "eps_* = E_{phi_a}[pi_n*] (target weights)")
    put("overlap", "misassignment_hard", misassignment(alpha, a, b, cov, "hard"),
        "Phi(-Delta/2 + log((1-alpha)/alpha)/Delta)")
    put("overlap", "misassignment_bound", misassignment_bound(alpha, a, b, cov),
        "(1/2) sqrt((1-alpha)/alpha) BC >= eps_*")
    finished("overlap")

    # -- C2 -----------------------------------------------------------------------------------
    at_b = TwoModeMixture(beta0, a, b, cov)
    r0 = forward_kl.rho(at_b)
    grid = TwoModeMixture(np.geomspace(1e-6, 1 - 1e-6, 60), a, b, cov)
    below = bool(np.all(forward_kl.rho(grid) < grid.weight_old))
    gd = weight_trajectory(at_b, steps, s, "gd")[-1]
    em = weight_trajectory(at_b, steps, 1.0, "em")[-1]
    thr_transient, thr_asymptotic = forward_kl.regime_thresholds(delta)
    put("C2", "rho_beta0", r0, "rho(beta0) = E_{p_new}[r_o], learner (beta0, a, b)")
    put("C2", "weight_gradient_raw", forward_kl.weight_gradient(at_b),
        "d/dbeta E_{p_new}[log q] = (rho - beta)/(beta (1-beta))")
    put("C2", "weight_gradient_logit", forward_kl.weight_gradient(at_b, coordinate="logit"),
        "d/deta E_{p_new}[log q] = rho - beta")
    put("C2", "em_next_weight", forward_kl.em_map(at_b), "EM map beta <- rho(beta) from beta0")
    put("C2", "rho_below_beta", below, "rho(beta) < beta on 60 weights in [1e-6, 1-1e-6]")
    put("C2", "fixed_point", 0.0, "unique fixed point of the weight (q = p_new)")
    put("C2", "log_chi2", forward_kl.decay_constants(delta)[0], "log c1, c1 = e^{Delta^2} - 1")
    put("C2", "transient_threshold", thr_transient, "1/t law while beta >> e^{-Delta^2/2}")
    put("C2", "asymptotic_threshold", thr_asymptotic, "t^{-1/2} law once beta << e^{-3Delta^2/2}")
    put("C2", "weight_gd_exact", gd, "beta after `steps` logit GD steps of size s (exact)")
    put("C2", "weight_gd_transient_law", forward_kl.separated_weight(steps, beta0, s),
        "1/beta - logit beta = 1/beta0 - logit beta0 + s t")
    put("C2", "weight_gd_asymptotic_law", forward_kl.asymptotic_weight(steps, delta, s, "gd"),
        "(2 s c1 t)^{-1/2}")
    put("C2", "weight_em_exact", em, "beta after `steps` EM steps (exact)")
    put("C2", "weight_em_asymptotic_law", forward_kl.asymptotic_weight(steps, delta, 1.0, "em"),
        "1/(c1 t)")
    finished("C2")

    # -- C3 -----------------------------------------------------------------------------------
    opt, _ = reverse_kl.reverse_kl_optimum(p)
    g_opt = reverse_kl.optimum_gradient(p)
    g_norm = np.sqrt(g_opt.weight_old**2 + np.sum(g_opt.mean_old**2) + np.sum(g_opt.mean_new**2))
    put("C3", "optimum_weight_old", opt.weight_old, "alpha (the label swap gives 1 - alpha)")
    put("C3", "optimum_mean_old", opt.mean_old, "a")
    put("C3", "optimum_mean_new", opt.mean_new, "b")
    put("C3", "gradient_norm_at_optimum", g_norm, "||grad L_R(theta*)|| (exact, ~0)")
    put("C3", "kl_at_optimum", kl_divergence(p, p), "KL(p* || p*) = 0")
    put("C3", "weight_gradient_at_beta0", reverse_kl_gradient(at_b, p).weight_old,
        "d/dbeta L_R at (beta0, a, b), exact")
    put("C3", "weight_gradient_separated", reverse_kl.separated_weight_gradient(beta0, alpha),
        "logit(beta0) - logit(alpha), separated-mode limit")
    finished("C3")

    # -- C4 -----------------------------------------------------------------------------------
    flow_step = min(s, 1.0)
    path = reverse_kl_flow(q0, p, flow_step, steps)
    drifts = mahalanobis(path.mean_old, a, cov)
    bound = drift.drift_bound(path, p)
    put("C4", "flow_step_size", flow_step, "s used for the flow (min(step_size, 1))")
    put("C4", "sup_drift", np.max(drifts), "sup_t D(m_o(t), a) along the flow")
    put("C4", "final_drift", drifts[-1], "D(m_o(T), a)")
    put("C4", "bound_exact", bound.exact, "sup_t [eps_q Delta_q + eps_* Delta]")
    put("C4", "bound_bhattacharyya", bound.bhattacharyya, "the same with the overlap gate")
    put("C4", "bound_closed_form", bound.closed_form,
        "Delta_max e^{-Delta_min^2/8} max_t max{r_q, r_* e^{k_t/2}} (docs/theory.md)")
    put("C4", "delta_min", bound.delta_min, "smallest separation along the run")
    put("C4", "delta_max", bound.delta_max, "largest separation along the run")
    put("C4", "final_weight_old", path.weight_old[-1], "beta(T): no mass forgetting (-> alpha)")
    put("C4", "final_new_mode_error", mahalanobis(path.mean_new[-1], b, cov), "D(m_n(T), b)")
    finished("C4")

    # -- C5 -----------------------------------------------------------------------------------
    raw = geometry.local_geometry(p, s, "raw")
    nat = geometry.local_geometry(p, s, "natural")
    sep = geometry.separated_fisher(alpha, cov)
    put("C5", "lambda_min", raw.lambda_min, "smallest eigenvalue of F(theta*) = Hessian of L_R")
    put("C5", "lambda_max", raw.lambda_max, "largest eigenvalue of F(theta*)")
    put("C5", "condition_number", raw.condition_number, "lambda_max / lambda_min")
    put("C5", "contraction", raw.contraction, "max_i |1 - s lambda_i|, raw weight GD")
    put("C5", "natural_lambda_min", nat.lambda_min, "logit weight, Sigma-preconditioned means")
    put("C5", "natural_lambda_max", nat.lambda_max, "logit weight, Sigma-preconditioned means")
    put("C5", "natural_condition_number", nat.condition_number, "lambda_max / lambda_min")
    put("C5", "natural_contraction", nat.contraction, "max_i |1 - s lambda_i|, natural GD")
    put("C5", "separated_error", np.max(np.abs(raw.hessian - sep)),
        "max |F - blockdiag(1/(alpha(1-alpha)), alpha P, (1-alpha) P)|")
    finished("C5")

    # -- C6 -----------------------------------------------------------------------------------
    frozen, g_frozen = replay.frozen_model_optimum(q0, b, lam, max_iter=300)
    put("C6", "old_data_weight_old", replay.old_data_optimum(a, b, lam).weight_old,
        "R = p_old: optimum (lambda, a, b)")
    put("C6", "frozen_weight_old", frozen.weight_old, "R = q_0: retained mass (exact projection)")
    put("C6", "frozen_mean_old", frozen.mean_old, "R = q_0: old mean of the projection")
    put("C6", "frozen_mean_new", frozen.mean_new, "R = q_0: new mean of the projection")
    put("C6", "frozen_gradient_norm", g_frozen, "||grad E_D[-log q]|| at it (~0)")
    put("C6", "frozen_separated_weight", lam * beta0, "lambda beta0 (separated-mode value)")
    put("C6", "current_model_lr_scale", replay.current_model_scale(lam),
        "R = current q: plain SFT with lr x (1 - lambda)")
    finished("C6")

    # -- C7 -----------------------------------------------------------------------------------
    put("C7", "weight_bound", replay.importance_weight_bound(lam), "w <= 1/(1 - lambda)")
    put("C7", "second_moment_initial", replay.importance_second_moment(q0, lam),
        "E_b[w^2] = E_q[w] at q_0, R = p_old (<= 1/(1-lambda))")
    put("C7", "second_moment_target", replay.importance_second_moment(p, lam),
        "E_b[w^2] at q = p*, R = p_old")
    put("C7", "starvation_on_policy", replay.starvation_probability(beta0, size),
        "(1 - beta0)^B")
    put("C7", "starvation_replay", replay.starvation_probability(beta0, size, lam),
        "((1 - lambda)(1 - beta0))^B, R = p_old")
    put("C7", "starvation_bound", replay.starvation_bound(size, lam), "e^{-lambda B}")
    put("C7", "starvation_on_policy_small_weight", replay.starvation_probability(0.01, size),
        "(1 - 0.01)^B: on-policy at beta = 0.01")
    put("C7", "starvation_replay_small_weight", replay.starvation_probability(0.01, size, lam),
        "((1 - lambda)(1 - 0.01))^B")
    finished("C7")
    return out


def as_json(config: MixtureConfig, quantities: list[Quantity]) -> dict[str, Any]:
    """{"schema_version", "config" (resolved), "claims": {group: {key: value}}}."""
    claims: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for q in quantities:
        claims[q.group][q.key] = q.value
    return {"schema_version": SCHEMA_VERSION, "config": config.resolved(), "claims": claims}
