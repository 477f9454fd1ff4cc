"""The K-mode equal-covariance Gaussian mixture: one mode per task of a continual chain.

q(x) = sum_k w_k phi(x; m_k), phi(.; mu) = N(mu, Sigma), K >= 2 (K = 1 is allowed for data),
weights w = softmax(eta) carried as logits eta (eta_0 is the reference, so the free
coordinates are eta_1 .. eta_{K-1}).

Responsibilities r_k(x) = w_k phi(x; m_k) / q(x) = softmax_k(l(x)) with the logits
l_k(x) = log w_k + m_k^T Sigma^{-1} x - m_k^T Sigma^{-1} m_k / 2 (the quadratic term
-x^T Sigma^{-1} x / 2 is shared by every mode and cancels). Per-sample scores:
  d/deta_k log q = r_k - w_k,      d/dm_k log q = r_k Sigma^{-1} (x - m_k).

Pairwise closed forms (every pair (j, k) of modes, ``[K, K]`` matrices, diagonal 0 or 1):
- Mahalanobis distances D_jk = D(m_j, m_k) and Bhattacharyya coefficients BC_jk = exp(-D_jk^2/8);
- hard (Bayes-rule, pair j against k) misassignment of a draw of mode j to mode k:
  H_jk = Phi(-D_jk / 2 + log(w_k / w_j) / D_jk) (:func:`forgetlab.gaussian.hard_misassignment`);
- the lemma bound on the soft misassignment eps_jk = E_{phi_j}[r_k] of the full K-mode
  posterior: r_k <= w_k phi_k / (w_j phi_j + w_k phi_k) and ab/(a+b) <= sqrt(ab)/2 give
  eps_jk <= (1/2) sqrt(w_k / w_j) BC_jk (the overlap gate; the soft values themselves come from
  the exact engine :mod:`forgetlab.kpopulation`).

Shapes: weights ``[K]``, means ``[K, d]`` (a list of scalars means d = 1), covariance a scalar,
a ``[d]`` diagonal or a ``[d, d]`` matrix; samples ``[..., n, d]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_softmax, logsumexp, softmax

from forgetlab._validation import as_finite
from forgetlab.gaussian import Factorised, factorise, hard_misassignment

Array = NDArray[np.float64]


class KModeMixture:
    """sum_k w_k N(m_k, Sigma) with one shared covariance (no batch axes).

    Parameters
    ----------
    weights : w ``[K]`` in [0, 1], summing to 1 (zeros allowed: a mode not yet learned, or data).
    means : ``[K, d]``.
    cov : a scalar variance, a ``[d]`` diagonal, a ``[d, d]`` SPD matrix or its
        :class:`~forgetlab.gaussian.Factorised`.
    """

    def __init__(self, weights: ArrayLike, means: ArrayLike,
                 cov: ArrayLike | Factorised = 1.0) -> None:
        w = as_finite(weights, "weights", low=0.0, high=1.0)
        if w.ndim != 1 or w.size < 1:
            raise ValueError(f"weights must be a vector of K >= 1 numbers, got shape {w.shape}")
        if abs(float(w.sum()) - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, got {float(w.sum()):.12g}")
        m = as_finite(means, "means")
        if m.ndim == 1:
            m = m[:, None]
        if m.ndim != 2 or m.shape[0] != w.size:
            raise ValueError(f"means must have shape [K={w.size}, d], got {m.shape}")
        self.weights: Array = w / w.sum()
        self.means: Array = m
        self.factor = factorise(cov, m.shape[1])  # validated and factorised once per Sigma
        self.cov: Array = self.factor.cov
        self.chol: Array = self.factor.chol
        self.chol_inv: Array = self.factor.chol_inv

    def __repr__(self) -> str:
        return (f"KModeMixture(K={self.n_modes}, dim={self.dim}, weights="
                f"{np.array2string(self.weights, precision=4)})")

    @classmethod
    def from_logits(cls, logits: ArrayLike, means: ArrayLike, cov: ArrayLike = 1.0
                    ) -> KModeMixture:
        """The mixture with weights softmax(logits)."""
        return cls(softmax(as_finite(logits, "logits")), means, cov)

    @property
    def n_modes(self) -> int:
        """K."""
        return int(self.weights.size)

    @property
    def dim(self) -> int:
        """d."""
        return int(self.means.shape[1])

    @property
    def logits(self) -> Array:
        """eta = log w - log w_0 (-inf for a zero weight)."""
        with np.errstate(divide="ignore"):
            lw = np.log(self.weights)
        return lw - lw[0]

    def with_params(self, weights: ArrayLike, means: ArrayLike) -> KModeMixture:
        """The same covariance with new weights and means."""
        return KModeMixture(weights, means, self.factor)

    def whiten(self, x: ArrayLike) -> Array:
        """z = L^{-1} x for x ``[..., d]``."""
        return self.factor.whiten(np.asarray(x, dtype=float))

    # -- pairwise closed forms ----------------------------------------------------------
    def distances(self) -> Array:
        """D_jk = D(m_j, m_k), ``[K, K]``."""
        z = self.whiten(self.means)
        return np.linalg.norm(z[:, None, :] - z[None, :, :], axis=-1)

    def bhattacharyya(self) -> Array:
        """BC_jk = exp(-D_jk^2 / 8), ``[K, K]`` (1 on the diagonal)."""
        return np.exp(-self.distances() ** 2 / 8.0)

    def hard_misassignments(self) -> Array:
        """H_jk = P_{x ~ phi_j}[w_k phi_k(x) > w_j phi_j(x)] (pair j against k), ``[K, K]``.

        Needs every weight > 0; the diagonal is 0.
        """
        w = as_finite(self.weights, "weights", low=0.0, open_low=True)
        out = hard_misassignment(w[:, None] + 0 * w[None, :], w[None, :] + 0 * w[:, None],
                                 self.distances() + np.eye(self.n_modes))
        np.fill_diagonal(out, 0.0)
        return out

    def misassignment_bounds(self) -> Array:
        """Lemma bound B_jk = (1/2) sqrt(w_k / w_j) BC_jk >= E_{phi_j}[r_k], ``[K, K]``.

        Rows of zero-weight modes are +inf (no bound); the diagonal is 1 (r_j <= 1).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            log_w = np.log(self.weights)
            out = 0.5 * np.exp(0.5 * (log_w[None, :] - log_w[:, None])
                               - self.distances() ** 2 / 8.0)
        out[~np.isfinite(out)] = np.inf
        out[self.weights == 0, :] = np.inf
        out[:, self.weights == 0] = 0.0
        np.fill_diagonal(out, 1.0)
        return out

    # -- densities ----------------------------------------------------------------------
    def component_log_probs(self, x: ArrayLike) -> Array:
        """log phi(x; m_k), ``[..., n, K]`` for x ``[..., n, d]``."""
        z = self.whiten(x)[..., None, :] - self.whiten(self.means)
        return float(self.factor.log_normaliser()) - 0.5 * np.sum(z * z, axis=-1)

    def _joint(self, x: ArrayLike) -> Array:
        with np.errstate(divide="ignore"):
            return np.log(self.weights) + self.component_log_probs(x)

    def log_prob(self, x: ArrayLike) -> Array:
        """log q(x), ``[..., n]``."""
        return logsumexp(self._joint(x), axis=-1)

    def responsibilities(self, x: ArrayLike) -> Array:
        """r_k(x), ``[..., n, K]`` (rows sum to 1)."""
        return np.exp(log_softmax(self._joint(x), axis=-1))

    def scores(self, x: ArrayLike) -> tuple[Array, Array]:
        """Per-sample (d/deta log q ``[..., n, K]``, d/dm log q ``[..., n, K, d]``).

        d/deta_k = r_k - w_k (all K logits; the column of eta_0 is the reference's),
        d/dm_k = r_k Sigma^{-1} (x - m_k).
        """
        x = np.asarray(x, dtype=float)
        r = self.responsibilities(x)
        prec = self.factor.precision
        diff = (x[..., None, :] - self.means) @ prec
        return r - self.weights, r[..., None] * diff

    # -- sampling -----------------------------------------------------------------------
    def sample_with_labels(self, n: int, rng: np.random.Generator
                           ) -> tuple[Array, NDArray[np.int64]]:
        """n draws ``[n, d]`` and their mode labels ``[n]``."""
        if int(n) != n or n < 0:
            raise ValueError(f"n (number of samples) must be a non-negative integer, got {n}")
        labels = rng.choice(self.n_modes, size=int(n), p=self.weights)
        noise = rng.standard_normal((int(n), self.dim))
        return self.means[labels] + noise @ self.chol.T, labels

    def sample(self, n: int, rng: np.random.Generator) -> Array:
        """n draws, ``[n, d]``."""
        return self.sample_with_labels(n, rng)[0]
