"""Closed forms for Gaussians that share a covariance Sigma.

With the Cholesky factor Sigma = L L^T, whitening z = L^{-1} x makes every Gaussian isotropic,
and the Mahalanobis distance D(u, v) = ||Sigma^{-1/2}(u - v)|| = ||L^{-1}(u - v)|| becomes
Euclidean. For phi(.; mu) = N(mu, Sigma):

- KL(phi(.;u) || phi(.;v)) = D(u, v)^2 / 2
- chi^2(phi(.;u) || phi(.;v)) = exp(D(u, v)^2) - 1
- Bhattacharyya coefficient BC(u, v) = exp(-D(u, v)^2 / 8), distance D_B = D^2 / 8,
  squared Hellinger distance 1 - BC.
- General (unequal covariances):
  D_B = (1/8) dmu^T S^{-1} dmu + (1/2) log(det S / sqrt(det S1 det S2)), S = (S1 + S2) / 2.
- Hard (Bayes-rule) misassignment of a draw of the old component, weights (w_o, w_n), separation
  D: P[w_n phi_n(x) > w_o phi_o(x)] = Phi(-D/2 + log(w_n / w_o) / D).

Shapes: means are ``[..., d]``; a covariance is a scalar variance, a ``[d]`` diagonal or a
``[..., d, d]`` matrix. Scalars are accepted for d = 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr, ndtr

from forgetlab._validation import as_covariance, as_finite, as_means

Array = NDArray[np.float64]


def cholesky(cov: ArrayLike, dim: int) -> Array:
    """Lower Cholesky factor L of a validated covariance (``[..., d, d]``), Sigma = L L^T."""
    return np.asarray(np.linalg.cholesky(as_covariance(cov, dim)), dtype=np.float64)


def whiten(x: ArrayLike, chol: Array) -> Array:
    """z = L^{-1} x for x of shape ``[..., d]`` and L of shape ``[..., d, d]``."""
    x = np.asarray(x, dtype=float)
    return np.linalg.solve(chol, x[..., None])[..., 0]


def mahalanobis(u: ArrayLike, v: ArrayLike, cov: ArrayLike,
                names: tuple[str, str] = ("u", "v")) -> Array:
    """D(u, v) = ||Sigma^{-1/2}(u - v)||, shape ``[...]``; errors name the means ``names``."""
    u_arr, v_arr = as_means(u, v, names=names)
    chol = cholesky(cov, u_arr.shape[-1])
    return np.linalg.norm(whiten(u_arr - v_arr, chol), axis=-1)


def gaussian_kl(u: ArrayLike, v: ArrayLike, cov: ArrayLike) -> Array:
    """KL(N(u, Sigma) || N(v, Sigma)) = D(u, v)^2 / 2."""
    return 0.5 * mahalanobis(u, v, cov) ** 2


def gaussian_chi2(u: ArrayLike, v: ArrayLike, cov: ArrayLike) -> Array:
    """chi^2(N(u, Sigma) || N(v, Sigma)) = exp(D(u, v)^2) - 1 (inf once it overflows float64)."""
    with np.errstate(over="ignore"):
        return np.expm1(mahalanobis(u, v, cov) ** 2)


def bhattacharyya_distance(u: ArrayLike, v: ArrayLike, cov: ArrayLike) -> Array:
    """D_B(u, v) = D(u, v)^2 / 8 for a shared covariance."""
    return mahalanobis(u, v, cov) ** 2 / 8.0


def bhattacharyya_coefficient(mean1: ArrayLike, mean2: ArrayLike, cov: ArrayLike) -> Array:
    """BC = integral sqrt(phi(x; mean1) phi(x; mean2)) dx = exp(-D^2 / 8), in (0, 1]."""
    return np.exp(-bhattacharyya_distance(mean1, mean2, cov))


def hellinger_squared(u: ArrayLike, v: ArrayLike, cov: ArrayLike) -> Array:
    """Squared Hellinger distance 1 - BC = -expm1(-D^2 / 8)."""
    return -np.expm1(-bhattacharyya_distance(u, v, cov))


def bhattacharyya_distance_general(
    mean1: ArrayLike, cov1: ArrayLike, mean2: ArrayLike, cov2: ArrayLike
) -> Array:
    """D_B between N(mean1, cov1) and N(mean2, cov2) with unequal covariances.

    D_B = (1/8) dmu^T S^{-1} dmu + (1/2) log(det S / sqrt(det S1 det S2)), S = (S1 + S2)/2.
    """
    m1, m2 = as_means(mean1, mean2, names=("mean1", "mean2"))
    dim = m1.shape[-1]
    s1 = as_covariance(cov1, dim, name="cov1")
    s2 = as_covariance(cov2, dim, name="cov2")
    s = 0.5 * (s1 + s2)
    dmu = m1 - m2
    quad = np.einsum("...i,...i->...", dmu, np.linalg.solve(s, dmu[..., None])[..., 0])
    logdet_s = np.linalg.slogdet(s)[1]
    logdet_1 = np.linalg.slogdet(s1)[1]
    logdet_2 = np.linalg.slogdet(s2)[1]
    return quad / 8.0 + 0.5 * (logdet_s - 0.5 * (logdet_1 + logdet_2))


def hard_misassignment(
    weight_from: ArrayLike, weight_to: ArrayLike, separation: ArrayLike, log: bool = False
) -> Array:
    """P_{x ~ phi_from}[w_to phi_to(x) > w_from phi_from(x)] = Phi(-D/2 + log(w_to/w_from)/D).

    For D = 0 the probability is 1 when w_to > w_from, else 0. Returns the log when ``log``.
    """
    w_from = as_finite(weight_from, "weight_from", low=0.0, high=1.0, open_low=True)
    w_to = as_finite(weight_to, "weight_to", low=0.0, high=1.0, open_low=True)
    dist = as_finite(separation, "separation", low=0.0)
    log_ratio = np.log(w_to) - np.log(w_from)
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = np.where(dist > 0, -dist / 2.0 + log_ratio / np.where(dist > 0, dist, 1.0), 0.0)
    arg = np.where(dist > 0, arg, np.where(log_ratio > 0, np.inf, -np.inf))
    return log_ndtr(arg) if log else ndtr(arg)
