"""Exact population expectations for two-mode mixtures that share one covariance Sigma.

For q = beta phi(.; m_o) + (1 - beta) phi(.; m_n) the log-density is, up to the quadratic term
-x^T Sigma^{-1} x / 2 shared by every mixture of the same covariance,

  A_q(x) = l_o(x) + softplus(u(x)) = l_n(x) + softplus(-u(x)),
  l_c(x) = log w_c + m_c^T Sigma^{-1} x - m_c^T Sigma^{-1} m_c / 2,
  u(x) = log((1 - beta) / beta) + nu^T (x - (m_o + m_n) / 2),  nu = Sigma^{-1} (m_n - m_o),

and the responsibilities are r_n = sigmoid(u), r_o = sigmoid(-u). Under a component
x ~ N(mu, Sigma) the projection u is N(u(mu), Delta_q^2), Delta_q = D(m_o, m_n), so:

- linear terms have exact Gaussian expectations;
- Stein's lemma, E[(x - mu) f(u)] = Sigma nu E[f'(u)] and
  E[f(u) Sigma^{-1}(x - mu)(x - mu)^T Sigma^{-1}] = E[f] Sigma^{-1} + E[f''] nu nu^T,
  turns every first and second moment into 1-D expectations;
- the 1-D expectations E[f(u)] (f = sigmoid, sigmoid', softplus, sigmoid sigmoid') come from
  :mod:`forgetlab.quadrature` in log space, accurate to about 1e-14 relative.

Within a difference A_q - A_p the representation (l_o or l_n) is chosen under each component so
that the softplus argument has a non-positive mean: nothing large cancels, tiny probabilities
stay in log space, and weights 0 or 1 (a single Gaussian) are exact.

Conventions: batch axes lead and broadcast between arguments; gradients are with respect to
(weight_old, mean_old, mean_new) in the raw weight coordinate (multiply the weight component by
beta (1 - beta) for the logit eta). Learners need beta in (0, 1); data and targets may have 0 or 1.
All mixtures passed together must share the covariance.
"""

from __future__ import annotations

import weakref

import numpy as np
from numpy.typing import ArrayLike, NDArray

from forgetlab._validation import as_finite, as_means
from forgetlab.gaussian import hard_misassignment, mahalanobis
from forgetlab.mixture import MixtureParams, TwoModeMixture, log_odds
from forgetlab.quadrature import log_gaussian_expectation as _log_e

Array = NDArray[np.float64]


# -- helpers ------------------------------------------------------------------------------
def _prec(mix: TwoModeMixture, vec: Array) -> Array:
    """Sigma^{-1} vec for vec ``[..., d]``, broadcast against the batch (one product with the
    cached precision matrix)."""
    out = mix.factor.precision_times(np.asarray(vec, dtype=float))
    shape = (*np.broadcast_shapes(out.shape[:-1], mix.batch_shape), mix.dim)
    return out if out.shape == shape else np.broadcast_to(out, shape)


def _prec_rows(mix: TwoModeMixture, rows: Array) -> Array:
    """Sigma^{-1} x_k for rows ``[..., K, d]`` against the batch ``[...]``."""
    rows = np.asarray(rows, dtype=float)
    prec = mix.factor.precision
    if prec.ndim == 2:
        out = (rows.reshape(-1, rows.shape[-1]) @ prec).reshape(rows.shape)
    else:
        out = np.einsum("...ij,...kj->...ki", prec, rows)
    shape = (*np.broadcast_shapes(out.shape[:-2], mix.batch_shape), *out.shape[-2:])
    return out if out.shape == shape else np.broadcast_to(out, shape)


_DISCRIMINANTS: weakref.WeakKeyDictionary[TwoModeMixture, Array] = weakref.WeakKeyDictionary()


def _nu(mix: TwoModeMixture) -> Array:
    """nu = Sigma^{-1} (m_n - m_o), ``[..., d]``, computed once per mixture."""
    nu = _DISCRIMINANTS.get(mix)
    if nu is None:
        nu = _DISCRIMINANTS[mix] = _prec(mix, mix.mean_new - mix.mean_old)
    return nu


def _u_mean(mix: TwoModeMixture, mu: Array) -> Array:
    """u(mu) = lambda + nu^T (mu - (m_o + m_n)/2) for mu ``[..., K, d]``; returns ``[..., K]``."""
    nu = _nu(mix)
    mid = 0.5 * (mix.mean_old + mix.mean_new)
    proj = np.einsum("...d,...kd->...k", nu, mu - mid[..., None, :])
    return mix.log_odds()[..., None] + proj


def _log_density_parts(mix: TwoModeMixture, mu: Array) -> tuple[Array, Array, Array]:
    """Under N(mu, Sigma), mu ``[..., K, d]``: A_mix = l_c + softplus(+-u), with the base c chosen
    so that the softplus argument has mean -|u(mu)|. Returns (log w_c, m_c, -|u(mu)|)."""
    m_u = _u_mean(mix, mu)
    use_new = m_u > 0
    with np.errstate(divide="ignore"):
        log_w = np.where(use_new, np.log1p(-mix.weight_old)[..., None],
                         np.log(mix.weight_old)[..., None])
    base = np.where(use_new[..., None], mix.mean_new[..., None, :], mix.mean_old[..., None, :])
    return log_w, base, -np.abs(m_u)


def _expected_log_ratio(q: TwoModeMixture, p: TwoModeMixture, mu: Array) -> Array:
    """E_{x ~ N(mu, Sigma)}[log q(x) - log p(x)], mu ``[..., K, d]``, result ``[..., K]``.

    = log(w_q / w_p) + (m_q - m_p)^T Sigma^{-1} (mu - (m_q + m_p)/2) + E[sp_q] - E[sp_p].
    """
    lw_q, base_q, arg_q = _log_density_parts(q, mu)
    lw_p, base_p, arg_p = _log_density_parts(p, mu)
    # E[softplus] of both in one call (a row does not depend on its batch)
    arg_q, arg_p, s_q, s_p = np.broadcast_arrays(arg_q, arg_p, q.separation()[..., None],
                                                 p.separation()[..., None])
    tail_q, tail_p = np.exp(_log_e("softplus", np.stack([arg_q, arg_p]), np.stack([s_q, s_p])))
    diff = _prec_rows(q, base_q - base_p)
    lin = np.einsum("...kd,...kd->...k", diff, mu - 0.5 * (base_q + base_p))
    return (lw_q - lw_p) + lin + (tail_q - tail_p)


# -- misassignment ------------------------------------------------------------------------
def expected_responsibility(learner: TwoModeMixture, mean: ArrayLike, log: bool = False) -> Array:
    """E_{x ~ N(mean, Sigma)}[r_o(x)] with the learner's Sigma and responsibilities.

    ``mean`` is ``[..., d]`` and broadcasts against the learner's batch shape (to evaluate K
    means per learner give the learner a trailing batch axis of size 1). Returns ``[...]``,
    the log when ``log``.
    """
    learner.require_learner()
    (mu,) = as_means(mean, names=("mean",))
    if mu.shape[-1] != learner.dim:
        raise ValueError(f"mean has d={mu.shape[-1]}, the learner has d={learner.dim}")
    m_u = _u_mean(learner, mu[..., None, :])[..., 0]
    out = _log_e("sigmoid", -m_u, learner.separation())
    return out if log else np.exp(out)


def misassignment(
    weight_old: ArrayLike,
    mean_old: ArrayLike,
    mean_new: ArrayLike,
    cov: ArrayLike,
    kind: str = "soft",
    log: bool = False,
) -> Array:
    """Probability that a draw of the old component N(mean_old, Sigma) goes to the new one.

    soft: eps = E_{phi_o}[r_n(x)] = E[sigmoid(lambda - D^2/2 + D t)], t ~ N(0, 1),
    lambda = log(w_n / w_o), w_n = 1 - w_o, D = D(mean_old, mean_new); weight_old in [0, 1].
    hard: Phi(-D/2 + lambda / D) (Bayes-rule assignment); weight_old in (0, 1).
    Returns ``[...]`` (the log when ``log``).
    """
    if kind not in ("soft", "hard"):
        raise ValueError(f"kind must be 'soft' or 'hard', got {kind!r}")
    hard = kind == "hard"
    w_o = as_finite(weight_old, "weight_old", low=0.0, high=1.0, open_low=hard, open_high=hard)
    dist = mahalanobis(mean_old, mean_new, cov, names=("mean_old", "mean_new"))
    if hard:
        return hard_misassignment(w_o, 1.0 - w_o, dist, log=log)
    lam = log_odds(w_o)
    out = _log_e("sigmoid", lam - 0.5 * dist**2, dist)
    return out if log else np.exp(out)


def misassignment_bound(
    weight_old: ArrayLike, mean_old: ArrayLike, mean_new: ArrayLike, cov: ArrayLike
) -> Array:
    """Overlap gate (1/2) sqrt(w_n / w_o) BC, BC = exp(-D^2/8): soft misassignment <= bound."""
    w_o = as_finite(weight_old, "weight_old", low=0.0, high=1.0, open_low=True)
    dist = mahalanobis(mean_old, mean_new, cov, names=("mean_old", "mean_new"))
    log_ratio = log_odds(w_o)
    return 0.5 * np.exp(0.5 * log_ratio - dist**2 / 8.0)


def soft_misassignments(learner: TwoModeMixture, target: TwoModeMixture) -> dict[str, Array]:
    """Learner and target soft misassignments (theory section 2), each ``[...]``.

    eps_q = E_{phi(.;m_o)}[r_n], rho_q = E_{phi(.;m_n)}[r_o],
    eps_star = E_{phi(.;m_o)}[pi_n*], rho_star = E_{phi(.;m_n)}[pi_o*]
    (pi* the target's responsibilities; target weights 0 or 1 give 0 or 1).
    """
    learner.require_learner()
    learner.require_same_covariance(target, "target")
    lam = learner.log_odds()
    dq = learner.separation()
    mu = np.stack([learner.mean_old, learner.mean_new], axis=-2)
    u_p = _u_mean(target, mu)
    dp = target.separation()[..., None]
    # pairs in one call each (a row does not depend on its batch)
    eps_q, rho_q = np.exp(_log_e("sigmoid", np.stack([lam - 0.5 * dq**2, -lam - 0.5 * dq**2]), dq))
    eps_star, rho_star = np.exp(_log_e("sigmoid", np.stack([u_p[..., 0], -u_p[..., 1]]),
                                       dp[..., 0]))
    return {"eps_q": eps_q, "rho_q": rho_q, "eps_star": eps_star, "rho_star": rho_star}


# -- expected scores and gradients --------------------------------------------------------
def expected_scores(learner: TwoModeMixture, means: ArrayLike) -> MixtureParams:
    """E_{x ~ N(means_k, Sigma)}[grad log q(x)] for a stack of means ``[..., K, d]``.

    weight: E[r_o]/beta - E[r_n]/(1 - beta); mean_old: E[r_o] Sigma^{-1}(mu_k - m_o) - S nu;
    mean_new: E[r_n] Sigma^{-1}(mu_k - m_n) + S nu, with S = E[sigmoid'(u)] (Stein's lemma).
    Fields are ``[..., K]``, ``[..., K, d]``, ``[..., K, d]``.
    """
    learner.require_learner()
    mu = as_finite(means, "means")
    if mu.ndim < 2 or mu.shape[-1] != learner.dim:
        raise ValueError(f"means must have shape [..., K, d={learner.dim}], got {mu.shape}")
    m_u = _u_mean(learner, mu)
    s = learner.separation()[..., None]
    log_ro, log_rn = _log_e("sigmoid", np.stack([-m_u, m_u]), s)
    slope = np.exp(_log_e("sigmoid_prime", m_u, s))[..., None]
    beta = learner.weight_old[..., None]
    d_beta = np.exp(log_ro - np.log(beta)) - np.exp(log_rn - np.log1p(-beta))
    nu = _nu(learner)[..., None, :]
    d_mo = np.exp(log_ro)[..., None] * _prec_rows(learner, mu - learner.mean_old[..., None, :])
    d_mn = np.exp(log_rn)[..., None] * _prec_rows(learner, mu - learner.mean_new[..., None, :])
    return MixtureParams(d_beta, d_mo - slope * nu, d_mn + slope * nu)


def forward_kl_gradient(learner: TwoModeMixture, data: TwoModeMixture) -> MixtureParams:
    """Gradient of E_data[-log q] (= KL(data || q) + const) in (weight_old, mean_old, mean_new).

    -(w E_{phi(.;a)}[score] + (1 - w) E_{phi(.;b)}[score]) for data = w phi(.;a) + (1-w) phi(.;b);
    w may be 0 or 1. Shapes ``[...]``, ``[..., d]``, ``[..., d]``.
    """
    learner.require_learner()
    learner.require_same_covariance(data, "data")
    scores = expected_scores(learner, np.stack([data.mean_old, data.mean_new], axis=-2))
    w = np.stack([data.weight_old, 1.0 - data.weight_old], axis=-1)
    return MixtureParams(
        -np.sum(w * scores.weight_old, axis=-1),
        -np.sum(w[..., None] * scores.mean_old, axis=-2),
        -np.sum(w[..., None] * scores.mean_new, axis=-2),
    )


def reverse_kl_gradient(learner: TwoModeMixture, target: TwoModeMixture) -> MixtureParams:
    """Gradient of KL(q || p*) in (weight_old, mean_old, mean_new) (theory C3, C4).

    d/dbeta = E_{phi(.;m_o)}[log q/p*] - E_{phi(.;m_n)}[log q/p*],
    d/dm_o = beta Sigma^{-1} [(m_o - a) + eps_q (m_n - m_o) - eps_* (b - a)],
    d/dm_n = (1 - beta) Sigma^{-1} [(m_n - b) + rho_q (m_o - m_n) - rho_* (a - b)].
    """
    learner.require_learner()
    learner.require_same_covariance(target, "target")
    # one pass over Sigma^{-1} for the three vectors (what bounds the cost in high dimension)
    rows = _prec_rows(learner, np.stack([learner.mean_old - target.mean_old,
                                         learner.mean_new - target.mean_new,
                                         learner.mean_new - learner.mean_old], axis=-2))
    if learner not in _DISCRIMINANTS:
        _DISCRIMINANTS[learner] = rows[..., 2, :]
    mis = soft_misassignments(learner, target)
    log_ratio = _expected_log_ratio(
        learner, target, np.stack([learner.mean_old, learner.mean_new], axis=-2))
    nu_q, nu_p = _nu(learner), _nu(target)
    beta = learner.weight_old[..., None]

    def col(key: str) -> Array:
        return mis[key][..., None]

    g_mo = rows[..., 0, :] + col("eps_q") * nu_q - col("eps_star") * nu_p
    g_mn = rows[..., 1, :] - col("rho_q") * nu_q + col("rho_star") * nu_p
    return MixtureParams(log_ratio[..., 0] - log_ratio[..., 1], beta * g_mo, (1.0 - beta) * g_mn)


# -- divergences and geometry --------------------------------------------------------------
def kl_divergence(p: TwoModeMixture, q: TwoModeMixture) -> Array:
    """KL(p || q) = sum_c w_c E_{phi(.;m_c)}[log p - log q] exactly, ``[...]``.

    Either argument may be the learner; weights 0 or 1 are allowed (KL is finite for mixtures
    of one covariance).
    """
    p.require_same_covariance(q, "q")
    vals = _expected_log_ratio(p, q, np.stack([p.mean_old, p.mean_new], axis=-2))
    w = np.stack([p.weight_old, 1.0 - p.weight_old], axis=-1)
    return np.maximum(np.sum(w * vals, axis=-1), 0.0)


def fisher_information(learner: TwoModeMixture) -> Array:
    """F = E_q[score score^T], ``[..., 1+2d, 1+2d]``, order (beta, m_o[0..d-1], m_n[0..d-1]).

    With P = Sigma^{-1}, nu = P (m_n - m_o), S_c = E_{phi_c}[sigmoid'(u)] and
    K_c = E_{phi_c}[sigmoid'(u)(sigmoid(u) - sigmoid(-u))] (= E[d^2 r_o / du^2]):
      F_bb = (1 - eps_q - rho_q) / (beta (1 - beta)),
      F_bo = -S_o nu / (1 - beta),  F_bn = -S_n nu / beta,
      F_oo = beta ((1 - eps_q) P + K_o nu nu^T),
      F_on = beta (eps_q P - (K_o + S_o) nu nu^T),
      F_nn = (1 - beta) ((1 - rho_q) P - K_n nu nu^T).
    """
    learner.require_learner()
    beta = learner.weight_old
    lam = learner.log_odds()
    dq = learner.separation()
    dim = learner.dim
    m_o, m_n = lam - 0.5 * dq**2, lam + 0.5 * dq**2  # means of u under phi_o, phi_n
    eps, rho = np.exp(_log_e("sigmoid", np.stack([m_o, -m_n]), dq))
    s_o, s_n = np.exp(_log_e("sigmoid_prime", np.stack([m_o, m_n]), dq))
    k_o_pos, k_o_neg, k_n_pos, k_n_neg = np.exp(
        _log_e("sigmoid_sq_prime", np.stack([m_o, -m_o, m_n, -m_n]), dq))
    k_o, k_n = k_o_pos - k_o_neg, k_n_pos - k_n_neg
    prec = learner.precision_times(np.eye(dim))  # Sigma^{-1}, broadcast to the batch
    nu = _nu(learner)
    nn = nu[..., :, None] * nu[..., None, :]

    def sc(x: Array) -> Array:
        return x[..., None, None]

    out = np.empty((*learner.batch_shape, 1 + 2 * dim, 1 + 2 * dim))
    out[..., 0, 0] = (1.0 - eps - rho) / (beta * (1.0 - beta))
    out[..., 0, 1:dim + 1] = out[..., 1:dim + 1, 0] = -(s_o / (1.0 - beta))[..., None] * nu
    out[..., 0, dim + 1:] = out[..., dim + 1:, 0] = -(s_n / beta)[..., None] * nu
    out[..., 1:dim + 1, 1:dim + 1] = sc(beta) * (sc(1.0 - eps) * prec + sc(k_o) * nn)
    f_on = sc(beta) * (sc(eps) * prec - sc(k_o + s_o) * nn)
    out[..., 1:dim + 1, dim + 1:] = f_on
    out[..., dim + 1:, 1:dim + 1] = np.swapaxes(f_on, -1, -2)
    out[..., dim + 1:, dim + 1:] = sc(1.0 - beta) * (sc(1.0 - rho) * prec - sc(k_n) * nn)
    return out
