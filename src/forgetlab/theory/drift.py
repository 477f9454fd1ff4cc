"""Claim C4: old-component drift under reverse KL is gated by the overlap.

Exact gradient (Stein's lemma), P = Sigma^{-1}:
  grad_{m_o} L_R = beta P [(m_o - a) + eps_q (m_n - m_o) - eps_* (b - a)].
Write u = m_o - a and g = eps_q (m_n - m_o) - eps_* (b - a). A Sigma-preconditioned step
m_o <- m_o - s Sigma grad_{m_o} L_R gives u_{t+1} = (1 - s beta_t) u_t - s beta_t g_t, so with
u_0 = 0 and s beta_t <= 1 (and for the gradient flow) the drift delta = D(m_o, a) obeys

  sup_t delta(t) <= sup_t ||g_t||_Sigma <= sup_t [eps_q Delta_q + eps_* Delta]        (exact)
                 <= sup_t (1/2) [r_q Delta_q e^{-Delta_q^2/8}
                                 + r_* e^{k_t/2} Delta e^{-Delta^2/8}]            (lemma)
                 <= Delta_max e^{-Delta_min^2/8} max_t max{r_q(t), r_* e^{k_t/2}},  (closed form)

with r_q = sqrt((1 - beta)/beta), r_* = sqrt((1 - alpha)/alpha),
Delta_min = min(min_t Delta_q(t), Delta) and Delta_max = max(max_t Delta_q(t), Delta). The
lemma is the overlap gate eps_soft <= (1/2) sqrt(w_n/w_o) BC (ab/(a+b) <= sqrt(ab)/2). eps_* is
the target's misassignment under phi(.; m_o), not phi(.; a): the projection of m_o shifts the
target's log odds by k_t = (b - a)^T Sigma^{-1} (m_o(t) - a) (|k_t| <= Delta delta(t)), which
gives the factor e^{k_t/2}; it equals 1 while the old mean has not moved toward b.
When the learner's new mean passes close to the old mode, Delta_min is small and the bound is
set by the learner's own overlap along the path.

:func:`forgetlab.dynamics.reverse_kl_flow` produces the trajectory the bound speaks about:
exact population gradient descent on L_R, logit weight (eta <- eta - s beta (1 - beta) dL/dbeta)
and Sigma-preconditioned means (m <- m - s Sigma grad_m L).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from forgetlab.mixture import TwoModeMixture, log_odds
from forgetlab.population import soft_misassignments

Array = NDArray[np.float64]


class DriftBound(NamedTuple):
    """The three nested bounds on sup_t D(m_o(t), a) and the separations they use, ``[...]``."""

    exact: Array
    bhattacharyya: Array
    closed_form: Array
    delta_min: Array
    delta_max: Array


def drift_bound(trajectory: TwoModeMixture, target: TwoModeMixture) -> DriftBound:
    """Bounds on the drift along ``trajectory`` (time on axis 0: batch ``[T, ...]``).

    ``target`` has batch shape ``[...]`` (or broadcasts against it). Every field is ``[...]``.
    """
    trajectory.require_learner("trajectory")
    target.require_learner("target")
    if trajectory.weight_old.ndim < 1:
        raise ValueError("trajectory must have a leading time axis (batch shape [T, ...])")
    mis = soft_misassignments(trajectory, target)
    dq = trajectory.separation()
    delta = np.broadcast_to(target.separation(), dq.shape)
    exact = np.max(mis["eps_q"] * dq + mis["eps_star"] * delta, axis=0)
    beta = trajectory.weight_old
    alpha = np.broadcast_to(target.weight_old, beta.shape)
    root_q = np.exp(0.5 * log_odds(beta))
    shift = np.einsum("...d,...d->...", target.precision_times(
        (target.mean_new - target.mean_old)[..., None, :])[..., 0, :],
        trajectory.mean_old - target.mean_old)
    root_p = np.exp(0.5 * (log_odds(alpha) + shift))
    lemma = 0.5 * (root_q * dq * np.exp(-dq**2 / 8.0) + root_p * delta * np.exp(-delta**2 / 8.0))
    d_min = np.minimum(np.min(dq, axis=0), delta[0])
    d_max = np.maximum(np.max(dq, axis=0), delta[0])
    root_max = np.maximum(np.max(root_q, axis=0), np.max(root_p, axis=0))
    closed = d_max * np.exp(-d_min**2 / 8.0) * root_max
    return DriftBound(exact, np.max(lemma, axis=0), closed, d_min, d_max)

