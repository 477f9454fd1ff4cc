"""Claim C2: forward KL on new-task data drives the old weight to zero.

Objective L_F(theta) = KL(p_new || q_theta), p_new = N(b, Sigma). With the means held at
(m_o, m_n) = (a, b) only the old weight beta moves. Exact identities (R = phi_o / phi_n):

  rho(beta) = E_{p_new}[r_o],
  d/dbeta E_{p_new}[log q] = E_{p_new}[(phi_o - phi_n) / q] = (rho - beta) / (beta (1 - beta)),
  d/deta  E_{p_new}[log q] = rho - beta                      (eta = logit beta),
  rho - beta = beta (1 - beta) f(beta),  f(beta) = E_{p_new}[(R - 1) / (1 + beta (R - 1))].

f is strictly decreasing with f(0) = E[R - 1] = 0, so rho(beta) < beta on (0, 1): beta falls
monotonically to the unique fixed point 0 (q = p_new); the EM map is beta <- rho(beta).

Decay near 0 (the project's derivation; it refines the working statement "1/t in logit
coordinates"). With Delta = D(a, b), x = e^{Delta^2} and the moments E[(R - 1)^2] = chi^2 =
x - 1 =: c1 and E[(R - 1)^3] = (x - 1)^2 (x + 2) =: c2, f(beta) = -c1 beta + c2 beta^2 + ...
as beta -> 0. Two regimes follow.

* Separated transient, beta >> e^{-Delta^2/2}: rho << beta, so in logit gradient flow with step
  s, deta/dt = -s beta, i.e. 1/beta - logit(beta) = 1/beta0 - logit(beta0) + s t and
  beta_t ~ 1/(s t): the 1/t law (:func:`separated_weight`).
* Asymptotic, beta << e^{-3 Delta^2/2} (where the expansion holds): deta/dt = -s c1 beta^2, so
  beta_t ~ (2 s c1 t)^{-1/2} (1 + (x^2 + x) / sqrt(2 s c1 t)): polynomial, but t^{-1/2}, not
  1/t. The EM map gives beta_{t+1} = beta_t - c1 beta_t^2 + ..., i.e. beta_t ~ 1/(c1 t).
  Gradient flow in the raw weight gives dbeta/dt = -s c1 beta: exponential with rate s c1.

For well-separated modes (Delta >~ 4) the asymptotic regime starts below e^{-3 Delta^2/2}
(< 1e-10) and only the 1/t law is seen in practice (:func:`regime_thresholds`).
Shapes: learners batch ``[...]``; every function broadcasts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, logit

from forgetlab._validation import as_finite
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import expected_responsibility

Array = NDArray[np.float64]


def _new_mean(learner: TwoModeMixture, new_mean: ArrayLike | None) -> ArrayLike:
    return learner.mean_new if new_mean is None else new_mean


def rho(learner: TwoModeMixture, new_mean: ArrayLike | None = None) -> Array:
    """rho(beta) = E_{x ~ N(b, Sigma)}[r_o(x)], ``[...]`` (b = ``new_mean``, default m_n)."""
    return expected_responsibility(learner, _new_mean(learner, new_mean))


def weight_gradient(
    learner: TwoModeMixture,
    new_mean: ArrayLike | None = None,
    coordinate: Literal["raw", "logit"] = "raw",
) -> Array:
    """d/dbeta E_{p_new}[log q] = (rho - beta) / (beta (1 - beta)); ``logit``: rho - beta."""
    if coordinate not in ("raw", "logit"):
        raise ValueError(f"coordinate must be 'raw' or 'logit', got {coordinate!r}")
    beta = learner.weight_old
    diff = rho(learner, new_mean) - beta
    return diff if coordinate == "logit" else diff / (beta * (1.0 - beta))


def em_map(learner: TwoModeMixture, new_mean: ArrayLike | None = None) -> Array:
    """One EM step on the weight: beta <- rho(beta), ``[...]``."""
    return rho(learner, new_mean)


def decay_constants(separation: ArrayLike) -> tuple[Array, Array]:
    """(log c1, log c2): c1 = chi^2 = e^{Delta^2} - 1, c2 = (e^{Delta^2} - 1)^2 (e^{Delta^2} + 2).

    rho(beta) - beta = -c1 beta^2 + (c1 + c2) beta^3 + O(beta^4) as beta -> 0 (means at a, b).
    """
    d2 = as_finite(separation, "separation", low=0.0, open_low=True) ** 2
    log_c1 = d2 + np.log(-np.expm1(-d2))
    return log_c1, 2.0 * log_c1 + np.logaddexp(d2, np.log(2.0))


def asymptotic_weight(
    t: ArrayLike,
    separation: ArrayLike,
    step_size: float = 1.0,
    method: Literal["gd", "em"] = "gd",
    corrected: bool = False,
) -> Array:
    """Leading law of beta_t as t -> infinity (means at a, b).

    gd (logit, step s): (2 s c1 t)^{-1/2}, times (1 + (x^2 + x) / sqrt(2 s c1 t)) when
    ``corrected`` (x = e^{Delta^2}); em: 1 / (c1 t). Broadcasts t against separation.
    """
    if method not in ("gd", "em"):
        raise ValueError(f"method must be 'gd' or 'em', got {method!r}")
    time = as_finite(t, "t", low=0.0, open_low=True)
    s = float(as_finite(step_size, "step_size", low=0.0, open_low=True))
    log_c1, _ = decay_constants(separation)
    d2 = np.asarray(separation, dtype=float) ** 2
    if method == "em":
        return np.exp(-log_c1 - np.log(time))
    log_scale = 0.5 * (np.log(2.0 * s * time) + log_c1)
    out = np.exp(-log_scale)
    if corrected:  # the factor can exceed float64 (large Delta): cap its log at 700
        out = np.exp(-log_scale + np.logaddexp(0.0, np.minimum(
            d2 + np.logaddexp(0.0, d2) - log_scale, 700.0)))
    return out


def separated_weight(t: ArrayLike, beta0: ArrayLike, step_size: float = 1.0) -> Array:
    """beta(t) of the logit flow deta/dt = -s beta (rho = 0, the separated transient).

    Solves 1/beta - logit(beta) = 1/beta0 - logit(beta0) + s t (Newton in eta; the left side
    1 + e^{-eta} - eta is strictly decreasing). beta(t) ~ 1 / (s t) for large t.
    """
    b0 = as_finite(beta0, "beta0", low=0.0, high=1.0, open_low=True, open_high=True)
    time = as_finite(t, "t", low=0.0)
    s = float(as_finite(step_size, "step_size", low=0.0, open_low=True))
    eta0 = logit(b0)
    target = 1.0 + np.exp(-eta0) - eta0 + s * time
    # g is convex and decreasing, so Newton converges monotonically from either start.
    eta = np.where(target >= 2.0, -np.log(np.maximum(target, 2.0)), eta0)
    for _ in range(100):
        g = 1.0 + np.exp(-eta) - eta - target
        step = g / (-np.exp(-eta) - 1.0)
        eta = eta - step
        if np.all(np.abs(step) <= 1e-15 * np.maximum(1.0, np.abs(eta))):
            break
    return expit(eta)


def regime_thresholds(separation: ArrayLike) -> tuple[Array, Array]:
    """(beta_transient, beta_asymptotic) = (e^{-Delta^2/2}, e^{-3 Delta^2/2}).

    The 1/t law holds for beta >> beta_transient, the t^{-1/2} law for beta << beta_asymptotic.
    """
    d2 = as_finite(separation, "separation", low=0.0, open_low=True) ** 2
    return np.exp(-0.5 * d2), np.exp(-1.5 * d2)
