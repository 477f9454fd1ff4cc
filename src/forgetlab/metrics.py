"""Forgetting measures on a learner (theory section 3), vectorised over runs.

* mass: the retained old weight beta, its ratio to beta_0 and to alpha;
* drift delta = D(m_o, a) (Mahalanobis), with quality loss KL(p_old || phi(.; m_o)) = delta^2 / 2;
* learner separation Delta_q = D(m_o, m_n) and new-mode error D(m_n, b);
* soft misassignments eps_q, rho_q, eps_*, rho_* and KL(q || p*), KL(p* || q) (exact engine);
* starvation: batches with no old-component draw are counted by
  :class:`~forgetlab.trajectory.Recorder`; their probability ((1 - lambda)(1 - beta))^B is the
  prediction :func:`forgetlab.theory.replay.starvation_probability`;
* Chen et al.'s per-mode overlap acc_k = integral min(p_k, q_k) / integral p_k of the weighted
  components (p_old = alpha phi(.; a), q_old = beta phi(.; m_o), likewise for the new mode),
  in closed form; drop = acc_old(0) - acc_old(t), gain = acc_new(t) - acc_new(0).

Shapes: learner parameters ``[C, S]`` (means ``[C, S, d]``), target ``[C, 1]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import ndtr

from forgetlab import population
from forgetlab.mixture import TwoModeMixture

Array = NDArray[np.float64]

GEOMETRY_FIELDS = ("drift", "separation", "new_mode_error", "acc_old", "acc_new")
EXACT_FIELDS = ("eps_q", "rho_q", "eps_star", "rho_star", "kl_reverse", "kl_forward")


def drift(learner: TwoModeMixture, target: TwoModeMixture) -> Array:
    """delta = D(m_o, a), ``[C, S]``."""
    return learner.factor.distance(learner.mean_old, target.mean_old)


def overlap_accuracy(w_p: Array, w_q: Array, dist: Array) -> Array:
    """integral min(w_p phi(x; mu_p), w_q phi(x; mu_q)) dx / w_p for a shared Sigma.

    Along the discriminant direction, with D = D(mu_p, mu_q) and
    t = D/2 + log(w_p / w_q) / D, the integral is w_p Phi(-t) + w_q Phi(t - D) (D = 0 gives
    min(w_p, w_q)). Weights in (0, 1], D >= 0, broadcast together.
    """
    d = np.maximum(dist, 1e-300)
    with np.errstate(over="ignore"):
        t = 0.5 * d + (np.log(w_p) - np.log(w_q)) / d
    return np.minimum((w_p * ndtr(-t) + w_q * ndtr(t - d)) / w_p, 1.0)


def snapshot(learner: TwoModeMixture, target: TwoModeMixture, exact: bool = True
             ) -> dict[str, Array]:
    """The recorded measures of one time point, each ``[C, S]``: the geometry (closed form)
    and, when ``exact``, the misassignments and KLs from the population engine."""
    geometry = {
        "drift": drift(learner, target),
        "separation": learner.separation(),
        "new_mode_error": learner.factor.distance(learner.mean_new, target.mean_new),
        "acc_old": overlap_accuracy(target.weight_old, learner.weight_old,
                                    drift(learner, target)),
        "acc_new": overlap_accuracy(1.0 - target.weight_old, 1.0 - learner.weight_old,
                                    learner.factor.distance(learner.mean_new, target.mean_new)),
    }
    if not exact:
        return geometry
    soft = population.soft_misassignments(learner, target)
    return {
        **geometry,
        "eps_q": soft["eps_q"], "rho_q": soft["rho_q"],
        "eps_star": soft["eps_star"], "rho_star": soft["rho_star"],
        "kl_reverse": population.kl_divergence(learner, target),
        "kl_forward": population.kl_divergence(target, learner),
    }


def summary(weight_old: Array, weight_min: Array, drift_path: Array, drift_sup: Array,
            beta0: Array, alpha: Array) -> pd.DataFrame:
    """Per configuration, over seeds: final and worst-case (smallest over every step) old mass,
    final and worst-case (largest over every step) drift. Paths ``[C, S, T]`` (running minimum
    and supremum included), beta_0 and alpha ``[C]``."""
    final_beta = weight_old[..., -1]
    return pd.DataFrame({
        "config": np.arange(weight_old.shape[0]),
        "beta_final": final_beta.mean(axis=1),
        "beta_final_sd": final_beta.std(axis=1),
        "beta_worst": weight_min[..., -1].min(axis=1),
        "mass_ratio_beta0": final_beta.mean(axis=1) / beta0,
        "mass_ratio_alpha": final_beta.mean(axis=1) / alpha,
        "drift_final": drift_path[..., -1].mean(axis=1),
        "drift_worst": drift_sup[..., -1].max(axis=1),
    })
