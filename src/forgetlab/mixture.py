"""The two-mode equal-covariance Gaussian mixture: old task and new task as two modes.

q(x) = beta phi(x; m_o) + (1 - beta) phi(x; m_n), phi(.; mu) = N(mu, Sigma).

Responsibilities r_o(x) = beta phi(x; m_o) / q(x), r_n = 1 - r_o; with equal covariances
r_n(x) = sigmoid(log((1-beta)/beta) + (m_n - m_o)^T Sigma^{-1} (x - (m_o + m_n)/2)).

Per-sample scores (gradients of log q):
  d/dbeta  log q = (phi_o - phi_n) / q = r_o / beta - r_n / (1 - beta),
  d/deta   log q = r_o - beta                      (eta = logit beta),
  d/dm_o   log q = r_o Sigma^{-1} (x - m_o),
  d/dm_n   log q = r_n Sigma^{-1} (x - m_n).

Every field carries leading batch axes: weight ``[...]``, means ``[..., d]``, covariance
``[..., d, d]``; samples are ``[..., n, d]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from forgetlab._validation import as_finite, as_means
from forgetlab.gaussian import Factorised, factorise

Array = NDArray[np.float64]


def log_odds(beta: ArrayLike) -> Array:
    """lambda = log((1 - beta) / beta) = log1p(-beta) - log(beta): -inf at beta = 1, +inf at 0."""
    b = np.asarray(beta, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log1p(-b) - np.log(b)


class MixtureParams(NamedTuple):
    """A value per parameter of the mixture: weights, gradients or scores.

    ``weight_old`` has the batch shape (plus a sample axis for scores), ``mean_old`` and
    ``mean_new`` add a trailing ``d`` axis.
    """

    weight_old: Array
    mean_old: Array
    mean_new: Array


class TwoModeMixture:
    """beta N(m_o, Sigma) + (1 - beta) N(m_n, Sigma), batched over leading axes.

    Parameters
    ----------
    weight_old : beta in [0, 1], shape ``[...]`` (0 or 1 give a single Gaussian, e.g. data).
    mean_old, mean_new : shape ``[..., d]`` (a scalar means d = 1).
    cov : a scalar variance, a ``[d]`` diagonal or a ``[..., d, d]`` symmetric positive
        definite matrix, shared by both components.
    """

    def __init__(
        self, weight_old: ArrayLike, mean_old: ArrayLike, mean_new: ArrayLike,
        cov: ArrayLike | Factorised = 1.0
    ) -> None:
        beta = as_finite(weight_old, "weight_old", low=0.0, high=1.0)
        m_o, m_n = as_means(mean_old, mean_new, names=("mean_old", "mean_new"))
        dim = m_o.shape[-1]
        factor = factorise(cov, dim)
        self.factor = factor  # validated and factorised once, shared by with_params/swapped
        sigma = factor.cov
        batch = np.broadcast_shapes(beta.shape, m_o.shape[:-1], m_n.shape[:-1], sigma.shape[:-2])
        self.weight_old: Array = np.broadcast_to(beta, batch)
        self.mean_old: Array = np.broadcast_to(m_o, (*batch, dim))
        self.mean_new: Array = np.broadcast_to(m_n, (*batch, dim))
        self.cov: Array = np.broadcast_to(sigma, (*batch, dim, dim))
        self.chol: Array = np.broadcast_to(factor.chol, (*batch, dim, dim))
        self._separation: Array | None = None

    def __repr__(self) -> str:
        return (f"TwoModeMixture(batch_shape={self.batch_shape}, dim={self.dim}, "
                f"weight_old={np.array2string(self.weight_old, precision=4, threshold=6)})")

    @property
    def dim(self) -> int:
        """Dimension d of the output space."""
        return int(self.mean_old.shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading axes shared by all fields."""
        return tuple(self.weight_old.shape)

    @property
    def params(self) -> MixtureParams:
        """(weight_old, mean_old, mean_new)."""
        return MixtureParams(self.weight_old, self.mean_old, self.mean_new)

    def with_params(self, weight_old: ArrayLike, mean_old: ArrayLike, mean_new: ArrayLike
                    ) -> TwoModeMixture:
        """The same covariance with new parameters."""
        return TwoModeMixture(weight_old, mean_old, mean_new, self.factor)

    def swapped(self) -> TwoModeMixture:
        """The same distribution with the labels exchanged: (1 - beta, m_n, m_o)."""
        return TwoModeMixture(1.0 - self.weight_old, self.mean_new, self.mean_old, self.factor)

    def same_covariance(self, other: TwoModeMixture) -> bool:
        """Whether ``other`` has this mixture's covariance (O(d^2) at most; O(1) when both were
        built from the same :class:`~forgetlab.gaussian.Factorised`)."""
        return self.factor.same(other.factor)

    def require_same_covariance(self, other: TwoModeMixture, name: str) -> None:
        """Check that ``other`` (called ``name`` in the error) has this mixture's d and
        covariance; ValueError otherwise."""
        if self.dim != other.dim:
            raise ValueError(f"{name} has d={other.dim}, the learner has d={self.dim}")
        if not self.same_covariance(other):
            raise ValueError(f"{name}.cov must equal the learner's cov (one shared covariance)")

    def log_odds(self) -> Array:
        """lambda = log((1 - beta) / beta), ``[...]`` (+-inf for a single Gaussian)."""
        return log_odds(self.weight_old)

    def require_learner(self, name: str = "learner") -> TwoModeMixture:
        """Check that beta lies strictly inside (0, 1), as a learner's weight must."""
        as_finite(self.weight_old, f"{name}.weight_old", low=0.0, high=1.0,
                  open_low=True, open_high=True)
        return self

    # -- geometry -----------------------------------------------------------------------
    def _to_batch(self, z: Array) -> Array:
        """z ``[..., n, d]`` broadcast against the batch shape (a copy only when it grows)."""
        shape = (*np.broadcast_shapes(z.shape[:-2], self.batch_shape), *z.shape[-2:])
        return z if z.shape == shape else np.broadcast_to(z, shape).copy()

    def whiten(self, x: ArrayLike) -> Array:
        """z = L^{-1} x, x of shape ``[..., n, d]`` broadcast against the batch."""
        return self._to_batch(self.factor.whiten(np.asarray(x, dtype=float)))

    def precision_times(self, v: ArrayLike) -> Array:
        """Sigma^{-1} v for v of shape ``[..., n, d]`` broadcast against the batch."""
        return self._to_batch(self.factor.precision_rows(np.asarray(v, dtype=float)))

    def separation(self) -> Array:
        """Delta_q = D(m_o, m_n), shape ``[...]`` (computed once per mixture)."""
        if self._separation is None:
            self._separation = self.factor.distance(self.mean_new, self.mean_old)
            if isinstance(self._separation, np.ndarray):
                self._separation.flags.writeable = False
        return self._separation

    # -- densities ----------------------------------------------------------------------
    def component_log_probs(self, x: ArrayLike) -> tuple[Array, Array]:
        """(log phi(x; m_o), log phi(x; m_n)), each ``[..., n]`` for x ``[..., n, d]``."""
        x = np.asarray(x, dtype=float)
        norm = self.factor.log_normaliser()[..., None]
        z_o = self.whiten(x - self.mean_old[..., None, :])
        z_n = self.whiten(x - self.mean_new[..., None, :])
        return (norm - 0.5 * np.sum(z_o**2, axis=-1), norm - 0.5 * np.sum(z_n**2, axis=-1))

    def _log_weights(self) -> tuple[Array, Array]:
        with np.errstate(divide="ignore"):
            return np.log(self.weight_old)[..., None], np.log1p(-self.weight_old)[..., None]

    def log_prob(self, x: ArrayLike) -> Array:
        """log q(x), ``[..., n]``."""
        lp_o, lp_n = self.component_log_probs(x)
        lw_o, lw_n = self._log_weights()
        return np.logaddexp(lw_o + lp_o, lw_n + lp_n)

    def responsibilities(self, x: ArrayLike) -> Array:
        """r_o(x) = beta phi_o(x) / q(x), ``[..., n]``; r_n = 1 - r_o."""
        lp_o, lp_n = self.component_log_probs(x)
        lw_o, lw_n = self._log_weights()
        with np.errstate(invalid="ignore"):
            return expit((lw_o + lp_o) - (lw_n + lp_n))

    def scores(self, x: ArrayLike) -> MixtureParams:
        """Per-sample gradients of log q(x) with respect to (beta, m_o, m_n) (raw weight)."""
        x = np.asarray(x, dtype=float)
        lp_o, lp_n = self.component_log_probs(x)
        lw_o, lw_n = self._log_weights()
        log_q = np.logaddexp(lw_o + lp_o, lw_n + lp_n)
        r_o = np.exp(lw_o + lp_o - log_q)
        d_beta = np.exp(lp_o - log_q) - np.exp(lp_n - log_q)
        d_mo = r_o[..., None] * self.precision_times(x - self.mean_old[..., None, :])
        d_mn = (1.0 - r_o)[..., None] * self.precision_times(x - self.mean_new[..., None, :])
        return MixtureParams(d_beta, d_mo, d_mn)

    def logit_scores(self, x: ArrayLike) -> Array:
        """d/deta log q(x) = r_o(x) - beta, eta = logit beta, ``[..., n]``."""
        return self.responsibilities(x) - self.weight_old[..., None]

    # -- sampling -----------------------------------------------------------------------
    def sample_with_labels(self, n: int, rng: np.random.Generator
                           ) -> tuple[Array, NDArray[np.bool_]]:
        """n draws per configuration, ``[..., n, d]``, and their labels (True = old component)."""
        if int(n) != n or n < 0:
            raise ValueError(f"n (number of samples) must be a non-negative integer, got {n}")
        n = int(n)
        batch = self.batch_shape
        is_old = rng.random((*batch, n)) < self.weight_old[..., None]
        means = np.where(is_old[..., None], self.mean_old[..., None, :],
                         self.mean_new[..., None, :])
        noise = rng.standard_normal((*batch, n, self.dim))
        return means + self.factor.colour(noise), is_old

    def sample(self, n: int, rng: np.random.Generator) -> Array:
        """n draws per configuration, shape ``[..., n, d]``."""
        return self.sample_with_labels(n, rng)[0]
