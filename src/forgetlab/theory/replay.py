"""Claims C6 and C7: replay under forward KL (fixed points) and reverse KL (weights, starvation).

C6, forward KL on D_lambda = lambda R + (1 - lambda) p_new (minimise E_D[-log q]):

- R = p_old = N(a): D_lambda is itself in the two-mode family, so the optimum is exactly
  (beta, m_o, m_n) = (lambda, a, b) (:func:`old_data_optimum`).
- R = frozen q_0 = beta0 N(a) + (1 - beta0) N(m_n(0)): D_lambda has three components (a, m_n(0), b
  with masses lambda beta0, lambda (1 - beta0), 1 - lambda) and the optimum is its forward-KL
  projection onto the two-mode family (:func:`frozen_model_optimum`: EM to convergence from
  every grouping of the three components, keeping the best). For separated modes and m_n(0)
  grouped with b the retained mass is lambda beta0.
- R = current q (stop-gradient): E_q[grad log q] = 0, so the replay term contributes nothing;
  the update is plain SFT with the learning rate scaled by 1 - lambda (:func:`current_model_scale`).

C7, reverse KL with behaviour b_lambda = (1 - lambda) q + lambda R, weights w = q / b_lambda:

- 0 <= w <= 1 / (1 - lambda) (:func:`importance_weight_bound`);
- second moment E_b[w^2 f^2] = E_q[w f^2] <= E_q[f^2] / (1 - lambda); for f = 1 the factor
  E_q[w] lies in [1, 1/(1 - lambda)] and is exact for R = the learner's own old component
  (:func:`importance_second_moment`);
- starvation, no old-component draw in B samples: on-policy (1 - beta)^B; with R = p_old each
  draw is old with probability lambda + (1 - lambda) beta, so ((1 - lambda)(1 - beta))^B
  <= e^{-lambda B} (:func:`starvation_probability`, :func:`starvation_bound`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from forgetlab._validation import as_finite, as_means
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.population import (
    expected_responsibility,
    expected_scores,
    forward_kl_gradient,
    kl_divergence,
)

Array = NDArray[np.float64]


def _replay(replay: ArrayLike) -> Array:
    return as_finite(replay, "replay", low=0.0, high=1.0, open_high=True)


# -- C6 ---------------------------------------------------------------------------------
def old_data_optimum(mean_old: ArrayLike, mean_new: ArrayLike, replay: ArrayLike) -> MixtureParams:
    """Forward-KL optimum with replay of old data: exactly (lambda, a, b)."""
    lam = _replay(replay)
    a, b = as_means(mean_old, mean_new, names=("mean_old", "mean_new"))
    batch = np.broadcast_shapes(lam.shape, a.shape[:-1], b.shape[:-1])
    dim = a.shape[-1]
    return MixtureParams(np.broadcast_to(lam, batch).copy(),
                         np.broadcast_to(a, (*batch, dim)).copy(),
                         np.broadcast_to(b, (*batch, dim)).copy())


def current_model_scale(replay: ArrayLike) -> Array:
    """Replay of the current model (stop-gradient) scales the SFT gradient by 1 - lambda."""
    return 1.0 - _replay(replay)


def _data_components(initial: TwoModeMixture, new_mean: Array, lam: Array
                     ) -> tuple[Array, Array]:
    """Means ``[..., 3, d]`` and masses ``[..., 3]`` of lambda q_0 + (1 - lambda) N(b)."""
    beta0 = initial.weight_old
    means = np.stack(np.broadcast_arrays(initial.mean_old, initial.mean_new, new_mean), axis=-2)
    masses = np.stack(np.broadcast_arrays(lam * beta0, lam * (1.0 - beta0), 1.0 - lam), axis=-1)
    return means, masses


def _em_step(q: TwoModeMixture, means: Array, masses: Array, floor: float
             ) -> tuple[TwoModeMixture, Array]:
    """beta' = sum_k w_k E_k[r_o]; m_o' = m_o + Sigma sum_k w_k E_k[r_o P(x - m_o)] / beta'
    (and likewise m_n), with P = Sigma^{-1}; E_k under N(means_k, Sigma). Also returns the
    norm of the exact gradient of E_D[-log q] at q (raw weight), -sum_k w_k E_k[score]."""
    scores = expected_scores(q, means)
    resp = expected_responsibility(_expand(q), means)
    beta = np.clip(np.sum(masses * resp, axis=-1), floor, 1.0 - 2.0**-53)
    s_b = np.sum(masses * scores.weight_old, axis=-1)
    s_o = np.einsum("...k,...kd->...d", masses, scores.mean_old)
    s_n = np.einsum("...k,...kd->...d", masses, scores.mean_new)
    m_o = q.mean_old + np.einsum("...ij,...j->...i", q.cov, s_o) / beta[..., None]
    m_n = q.mean_new + np.einsum("...ij,...j->...i", q.cov, s_n) / (1.0 - beta)[..., None]
    grad = np.sqrt(s_b**2 + np.sum(s_o**2, axis=-1) + np.sum(s_n**2, axis=-1))
    return TwoModeMixture(beta, m_o, m_n, q.cov), grad


def _pack(q: TwoModeMixture) -> Array:
    """(logit beta, m_o, m_n) as one vector ``[..., 1 + 2d]``."""
    eta = -q.log_odds()
    return np.concatenate([eta[..., None], q.mean_old, q.mean_new], axis=-1)


def _unpack(psi: Array, cov: Array) -> TwoModeMixture:
    dim = cov.shape[-1]
    beta = np.clip(1.0 / (1.0 + np.exp(-np.clip(psi[..., 0], -700.0, 700.0))),
                   1e-300, 1.0 - 2.0**-53)
    return TwoModeMixture(beta, psi[..., 1:dim + 1], psi[..., dim + 1:], cov)


def _squarem(q: TwoModeMixture, means: Array, masses: Array, tol: float, gtol: float,
             max_iter: int) -> TwoModeMixture:
    """EM to a fixed point, accelerated by SQUAREM (squared extrapolation, step length
    -||r|| / ||v|| clipped to <= -1, r = F(x) - x, v = F(F(x)) - 2 F(x) + x), keeping the
    plain double EM step wherever the extrapolation does not increase E_D[log q]. Stops when
    every exact gradient norm is <= gtol or no parameter moves by more than tol."""
    cov = q.cov

    def em(psi: Array) -> tuple[Array, Array]:
        nxt, grad = _em_step(_unpack(psi, cov), means, masses, 1e-300)
        return _pack(nxt), grad

    psi = _pack(q)
    for _ in range(max(1, int(max_iter) // 3)):
        p1, grad = em(psi)
        if np.all(grad <= gtol):
            break
        p2, _ = em(p1)
        r, v = p1 - psi, p2 - 2.0 * p1 + psi
        nr, nv = np.linalg.norm(r, axis=-1), np.linalg.norm(v, axis=-1)
        step = -np.where(nv > 0, nr / np.where(nv > 0, nv, 1.0), 1.0)
        step = np.minimum(step, -1.0)[..., None]
        jump, _ = em(psi - 2.0 * step * r + step**2 * v)
        better = (_expected_log_lik(_unpack(jump, cov), means, masses)
                  >= _expected_log_lik(_unpack(p2, cov), means, masses))
        nxt = np.where((better & np.all(np.isfinite(jump), axis=-1))[..., None], jump, p2)
        moved = float(np.max(np.abs(nxt - psi)))
        psi = nxt
        if moved <= tol:
            break
    return _unpack(psi, cov)


def _expand(q: TwoModeMixture) -> TwoModeMixture:
    """The same mixtures with a trailing batch axis of size 1 (to broadcast over K means)."""
    return TwoModeMixture(q.weight_old[..., None], q.mean_old[..., None, :],
                          q.mean_new[..., None, :], q.cov[..., None, :, :])


def _expected_log_lik(q: TwoModeMixture, means: Array, masses: Array) -> Array:
    """sum_k w_k E_k[log q] up to the constant -H(N(0, Sigma)): -sum_k w_k KL(N_k || q)."""
    singles = TwoModeMixture(1.0, means, means, q.cov[..., None, :, :])
    return -np.sum(masses * kl_divergence(singles, _expand(q)), axis=-1)


def frozen_model_optimum(
    initial: TwoModeMixture,
    new_mean: ArrayLike,
    replay: ArrayLike,
    tol: float = 1e-12,
    gtol: float = 1e-13,
    max_iter: int = 20_000,
) -> tuple[TwoModeMixture, Array]:
    """Forward-KL projection of lambda q_0 + (1 - lambda) N(b, Sigma) onto the two-mode family.

    EM (exact expectations, accelerated by SQUAREM) from the three groupings of the components
    {a}, {m_n(0)}, {b} into (old, new) with a always in the old group; the stationary point
    with the largest E_D[log q] is returned, with the norm of the exact forward-KL gradient
    there (a check that it is stationary). Labels are canonical: the old component is the one
    nearer a.
    With lambda = 0 the data is p_new, the infimum is at beta = 0 (claim C2) and (0, a, b) is
    returned with gradient norm 0 (the limit of the gradient there).
    Shapes: batch ``[...]`` of ``initial`` broadcast with ``new_mean`` ``[..., d]`` and
    ``replay`` ``[...]``. Stops when every start's exact gradient norm is <= ``gtol``, no
    parameter moves by more than ``tol``, or after ``max_iter`` EM evaluations (nearly
    coincident components make the likelihood flat; the returned gradient norm says how
    stationary the point is).
    """
    initial.require_learner("initial")
    lam = _replay(replay)
    (b,) = as_means(new_mean, names=("new_mean",))
    if b.shape[-1] != initial.dim:
        raise ValueError(f"new_mean has d={b.shape[-1]}, the model has d={initial.dim}")
    # lambda = 0: D = p_new, whose infimum is at beta = 0 (claim C2); solve a placeholder
    # problem there and return (0, a, b), where the gradient tends to 0.
    none = lam == 0.0
    means, masses = _data_components(initial, b, np.where(none, 0.5, lam))
    # Starts: old group {a}, {a, m_n(0)}, {a, b}; axis -1 of the batch indexes the grouping.
    groups = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=float)  # [G, 3]
    w = masses[..., None, :] * groups
    w_new = masses[..., None, :] * (1.0 - groups)
    mu = means[..., None, :, :]
    beta = np.sum(w, axis=-1)
    m_o = np.einsum("...gk,...gkd->...gd", w, np.broadcast_to(mu, (*w.shape, b.shape[-1])))
    m_n = np.einsum("...gk,...gkd->...gd", w_new, np.broadcast_to(mu, (*w.shape, b.shape[-1])))
    m_o = m_o / beta[..., None]
    m_n = m_n / (1.0 - beta)[..., None]
    cov = initial.cov[..., None, :, :]
    q = TwoModeMixture(np.clip(beta, 1e-12, 1 - 1e-12), m_o, m_n, cov)
    q = _squarem(q, means[..., None, :, :], masses[..., None, :], tol, gtol, max_iter)
    g_means, g_masses = means[..., None, :, :], masses[..., None, :]
    best = np.argmax(_expected_log_lik(q, g_means, g_masses), axis=-1)
    weight = np.take_along_axis(q.weight_old, best[..., None], axis=-1)[..., 0]
    m_o = np.take_along_axis(q.mean_old, best[..., None, None], axis=-2)[..., 0, :]
    m_n = np.take_along_axis(q.mean_new, best[..., None, None], axis=-2)[..., 0, :]
    # Canonical labels: the old component is the one nearer a (Mahalanobis).
    swap = (np.sum(initial.whiten((m_n - initial.mean_old)[..., None, :])[..., 0, :] ** 2, -1)
            < np.sum(initial.whiten((m_o - initial.mean_old)[..., None, :])[..., 0, :] ** 2, -1))
    weight = np.where(swap, 1.0 - weight, weight)
    m_o, m_n = np.where(swap[..., None], m_n, m_o), np.where(swap[..., None], m_o, m_n)
    opt = TwoModeMixture(weight, m_o, m_n, initial.cov)
    grad = _gradient_norm(opt, initial, b, np.where(none, 0.5, lam))
    none = np.broadcast_to(none, weight.shape)
    a = np.broadcast_to(initial.mean_old, m_o.shape)
    opt = TwoModeMixture(np.where(none, 0.0, weight), np.where(none[..., None], a, m_o),
                         np.where(none[..., None], np.broadcast_to(b, m_n.shape), m_n),
                         initial.cov)
    return opt, np.where(none, 0.0, grad)


def _gradient_norm(q: TwoModeMixture, initial: TwoModeMixture, b: Array, lam: Array) -> Array:
    """||grad E_D[-log q]|| for D = lambda q_0 + (1 - lambda) N(b) (exact engine)."""
    g_replay = forward_kl_gradient(q, initial)
    g_new = forward_kl_gradient(q, TwoModeMixture(0.0, b, b, q.cov))
    sq = (lam * g_replay.weight_old + (1.0 - lam) * g_new.weight_old) ** 2
    lam_d = lam[..., None]
    for field in ("mean_old", "mean_new"):
        g = lam_d * getattr(g_replay, field) + (1.0 - lam_d) * getattr(g_new, field)
        sq = sq + np.sum(g**2, axis=-1)
    return np.sqrt(sq)


# -- C7 ---------------------------------------------------------------------------------
def importance_weight_bound(replay: ArrayLike) -> Array:
    """Largest importance weight q / ((1 - lambda) q + lambda R): 1 / (1 - lambda)."""
    return 1.0 / (1.0 - _replay(replay))


def importance_second_moment(learner: TwoModeMixture, replay: ArrayLike) -> Array:
    """E_b[w^2] = E_q[w] for R = N(m_o, Sigma) (= p_old when m_o = a), exact, ``[...]``.

    b = beta' phi_o + (1 - beta') phi_n with beta' = (1 - lambda) beta + lambda, and
    w = (beta / beta') r'_o + ((1 - beta) / (1 - beta')) r'_n (r' the responsibilities of b), so
    E_q[w] = sum_c w_c E_{phi_c}[w] needs only E_{phi_c}[r'_o]. Lies in [1, 1/(1 - lambda)].
    """
    learner.require_learner()
    lam = _replay(replay)
    beta = learner.weight_old
    beta_b = (1.0 - lam) * beta + lam
    behaviour = learner.with_params(beta_b, learner.mean_old, learner.mean_new)
    lo, hi = beta / beta_b, (1.0 - beta) / (1.0 - beta_b)
    r_o = expected_responsibility(behaviour, learner.mean_old)
    r_n = expected_responsibility(behaviour, learner.mean_new)
    return beta * (hi + (lo - hi) * r_o) + (1.0 - beta) * (hi + (lo - hi) * r_n)


def starvation_probability(
    weight_old: ArrayLike, batch_size: ArrayLike, replay: ArrayLike = 0.0, log: bool = False
) -> Array:
    """P(no old-component draw in a batch of B) = ((1 - lambda)(1 - beta))^B with R = p_old.

    replay = 0 gives the on-policy (1 - beta)^B. weight_old in [0, 1], B an integer >= 1,
    replay in [0, 1). Returns the log when ``log`` (exact in log space for tiny values).
    """
    beta = as_finite(weight_old, "weight_old", low=0.0, high=1.0)
    size = as_finite(batch_size, "batch_size", low=1.0)
    if np.any(size != np.round(size)):
        raise ValueError("batch_size must be an integer >= 1")
    lam = _replay(replay)
    with np.errstate(divide="ignore"):
        out = size * (np.log1p(-lam) + np.log1p(-beta))
    return out if log else np.exp(out)


def starvation_bound(batch_size: ArrayLike, replay: ArrayLike) -> Array:
    """e^{-lambda B} >= ((1 - lambda)(1 - beta))^B for every beta."""
    size = as_finite(batch_size, "batch_size", low=1.0)
    return np.exp(-_replay(replay) * size)
