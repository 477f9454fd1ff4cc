"""Brute-force references for the claims, independent of the population engine.

Everything here integrates the densities themselves on a dense tensor grid with
``scipy.integrate.simpson`` (d = 1 or 2), using only numpy code written for this module: no
function of :mod:`forgetlab.population`, :mod:`forgetlab.quadrature` or :mod:`forgetlab.theory`
is called, so a bug there cannot hide in both sides of a check. A parameter set is
``(beta, m_o, m_n)`` with batch shape ``[K]``, means ``[K, d]``, one covariance ``[d, d]``.

- q(x) = beta phi(x; m_o, Sigma) + (1 - beta) phi(x; m_n, Sigma), r_o = beta phi_o / q;
- scores: d log q / d beta = (phi_o - phi_n) / q, d/dm_o = r_o P (x - m_o),
  d/dm_n = r_n P (x - m_n), P = Sigma^{-1};
- forward KL to data D: gradient -E_D[score]; reverse KL to p: gradient E_q[(log q - log p) score]
  (E_q[score] = 0); Fisher E_q[score score^T]; E_{N(mu, Sigma)}[r_o];
- the old mass of a tilt q e^{f} / Z in d = 1 (:func:`tilted_log_odds`): for a reward with
  jumps (a 0/1 verifier) the grid rule does not apply, so each component's Z_c = E_{phi_c}[e^f]
  is integrated by adaptive ``scipy.integrate.quad`` on the pieces between the jumps.

The grid spans every mean +- ``WIDTH`` standard deviations along each axis with nodes every
``SPACING`` standard deviations; Simpson's rule on such a grid is accurate to about 1e-13 for
these smooth integrands (checked against ``scipy.integrate.quad`` in the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import quad, simpson
from scipy.special import expit, logit, logsumexp

Array = NDArray[np.float64]
WIDTH = 10.0
SPACING = {1: 0.04, 2: 0.06}  # grid spacing in standard deviations, by dimension


@dataclass(frozen=True)
class Mix:
    """A batch of two-mode mixtures: weight ``[K]``, means ``[K, d]``, covariance ``[d, d]``."""

    beta: Array
    m_o: Array
    m_n: Array
    cov: Array

    @classmethod
    def of(cls, beta: ArrayLike, m_o: ArrayLike, m_n: ArrayLike, cov: ArrayLike) -> Mix:
        """Broadcast to a common batch ``[K]`` (scalars and 1-D means become K = 1)."""
        b = np.atleast_1d(np.asarray(beta, dtype=float))
        mo = np.atleast_2d(np.asarray(m_o, dtype=float))
        mn = np.atleast_2d(np.asarray(m_n, dtype=float))
        k = max(len(b), len(mo), len(mn))
        d = mo.shape[-1]
        c = np.atleast_2d(np.asarray(cov, dtype=float))
        c = c * np.eye(d) if c.shape == (1, 1) and d > 1 else c
        return cls(np.broadcast_to(b, (k,)).copy(), np.broadcast_to(mo, (k, d)).copy(),
                   np.broadcast_to(mn, (k, d)).copy(), c)

    @property
    def dim(self) -> int:
        """Dimension d."""
        return self.m_o.shape[-1]


def _log_phi(x: Array, mean: Array, cov: Array) -> Array:
    """log N(x; mean, cov) for x ``[K, G, d]``, mean ``[K, d]``: ``[K, G]``."""
    prec = np.linalg.inv(cov)
    diff = x - mean[:, None, :]
    quad = np.einsum("kgi,ij,kgj->kg", diff, prec, diff)
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (quad + logdet + cov.shape[0] * np.log(2.0 * np.pi))


def _grid(centers: Array, cov: Array, spacing: float | None = None
          ) -> tuple[Array, list[Array]]:
    """Tensor grid ``[K, G, d]`` covering every center +- WIDTH sd, and its axes ``[K, n]``:
    nodes every ``spacing`` (default SPACING[d]) standard deviations, at least 101, odd."""
    sd = np.sqrt(np.diag(cov))
    lo = centers.min(axis=1) - WIDTH * sd  # [K, d]
    hi = centers.max(axis=1) + WIDTH * sd
    span = float(np.max((hi - lo) / sd))
    h = spacing if spacing is not None else SPACING[cov.shape[0]]
    points = max(101, 2 * int(np.ceil(span / h / 2)) + 1)
    axes = [np.linspace(lo[:, i], hi[:, i], points, axis=-1) for i in range(cov.shape[0])]
    if len(axes) == 1:
        return axes[0][..., None], axes
    gx, gy = axes[0][:, :, None], axes[1][:, None, :]
    x = np.stack(np.broadcast_arrays(gx, gy), axis=-1).reshape(len(centers), -1, 2)
    return x, axes


def _integrate(values: Array, axes: list[Array]) -> Array:
    """Simpson's rule over the grid; values ``[K, G, ...]`` -> ``[K, ...]``."""
    k, n = values.shape[0], axes[0].shape[-1]
    steps = [ax[:, 1] - ax[:, 0] for ax in axes]  # uniform spacing per batch entry, [K]
    extra = values.shape[2:]
    v = values.reshape(k, *([n] * len(axes)), *extra)
    for i in reversed(range(len(axes))):
        h = steps[i].reshape(k, *([1] * (v.ndim - 2)))
        v = simpson(v, dx=1.0, axis=1 + i) * h
    return v


def _parts(q: Mix, x: Array) -> tuple[Array, Array, Array, Array]:
    """log q, r_o, the scores ``[K, G, 1 + 2d]`` and log phi_o - log q on the grid."""
    lo = np.log(q.beta)[:, None] + _log_phi(x, q.m_o, q.cov)
    ln = np.log1p(-q.beta)[:, None] + _log_phi(x, q.m_n, q.cov)
    log_q = np.logaddexp(lo, ln)
    r_o = np.exp(lo - log_q)
    prec = np.linalg.inv(q.cov)
    s_beta = r_o / q.beta[:, None] - (1.0 - r_o) / (1.0 - q.beta[:, None])
    s_mo = r_o[..., None] * ((x - q.m_o[:, None, :]) @ prec)
    s_mn = (1.0 - r_o)[..., None] * ((x - q.m_n[:, None, :]) @ prec)
    return log_q, r_o, np.concatenate([s_beta[..., None], s_mo, s_mn], axis=-1), lo - log_q


def _log_mix(beta: Array, m_o: Array, m_n: Array, cov: Array, x: Array) -> tuple[Array, Array]:
    """log of the mixture beta phi(m_o) + (1 - beta) phi(m_n) on the grid (beta in [0, 1]), and
    log of its first term beta phi(m_o)."""
    with np.errstate(divide="ignore"):
        parts = np.stack([np.log(beta)[:, None] + _log_phi(x, m_o, cov),
                          np.log1p(-beta)[:, None] + _log_phi(x, m_n, cov)])
    return logsumexp(parts, axis=0), parts[0]


def tilted_log_odds(beta: float, m_o: float, m_n: float, log_tilt: Callable[[float], float],
                    jumps: tuple[float, ...] = (), sd: float = 1.0) -> float:
    """logit of the old mass of q e^{f} / Z, q = beta N(m_o, sd^2) + (1 - beta) N(m_n, sd^2),
    f = ``log_tilt`` (d = 1): logit beta + log Z_o - log Z_n, Z_c = int phi_c e^f, each
    integrated by ``quad`` on (-inf, jump_1), ..., (jump_J, inf) (f smooth between jumps)."""
    edges = [-np.inf, *sorted(jumps), np.inf]

    def log_z(m: float) -> float:
        def integrand(x: float) -> float:
            return float(np.exp(log_tilt(x) - 0.5 * ((x - m) / sd) ** 2)
                         / (sd * np.sqrt(2.0 * np.pi)))

        pieces = [quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-12, limit=200)[0]
                  for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        return float(np.log(np.sum(pieces)))

    return float(logit(beta) + log_z(m_o) - log_z(m_n))


def _centers(*means: Array) -> Array:
    return np.stack(means, axis=1)  # [K, C, d]


def _data_density(weights: Array, means: Array, cov: Array, x: Array) -> Array:
    """sum_c w_c N(x; mu_c, Sigma) on the grid; weights ``[K, C]``, means ``[K, C, d]``."""
    parts = [weights[:, c, None] * np.exp(_log_phi(x, means[:, c], cov))
             for c in range(weights.shape[1])]
    return np.sum(parts, axis=0)


def data_gradient(q: Mix, weights: ArrayLike, means: ArrayLike,
                  spacing: float | None = None) -> tuple[Array, Array]:
    """Cross entropy -E_D[log q] ``[K]`` and its gradient ``[K, 1 + 2d]`` for the data
    D = sum_c w_c N(mu_c, Sigma) (any number of components)."""
    w = np.asarray(weights, float)
    mu = np.asarray(means, float)
    x, axes = _grid(np.concatenate([_centers(q.m_o, q.m_n), mu], axis=1), q.cov, spacing)
    dens = _data_density(w, mu, q.cov, x)
    log_q, _, score, _ = _parts(q, x)
    return -_integrate(dens * log_q, axes), -_integrate(dens[..., None] * score, axes)


def forward_kl_gradient(q: Mix, w: ArrayLike, a: ArrayLike, b: ArrayLike) -> Array:
    """-E_D[grad log q], D = w N(a) + (1 - w) N(b): ``[K, 1 + 2d]`` (beta, m_o, m_n)."""
    a_, b_ = (np.broadcast_to(np.asarray(v, float), q.m_o.shape) for v in (a, b))
    w_ = np.broadcast_to(np.asarray(w, float), q.beta.shape)
    return data_gradient(q, np.stack([w_, 1.0 - w_], -1), np.stack([a_, b_], 1))[1]


def reverse_kl_gradient(q: Mix, alpha: ArrayLike, a: ArrayLike, b: ArrayLike) -> Array:
    """E_q[(log q - log p) grad log q], p = alpha N(a) + (1 - alpha) N(b): ``[K, 1 + 2d]``."""
    axes, log_q, score, log_p, _ = _against_target(q, alpha, a, b)
    return _integrate((np.exp(log_q) * (log_q - log_p))[..., None] * score, axes)


def _against_target(q: Mix, alpha: ArrayLike, a: ArrayLike, b: ArrayLike
                    ) -> tuple[list[Array], Array, Array, Array, Array]:
    """On a grid covering q and p = alpha N(a) + (1 - alpha) N(b): its axes, log q, the scores
    of q, log p and log(alpha N(x; a, Sigma))."""
    a_, b_ = (np.broadcast_to(np.asarray(v, float), q.m_o.shape) for v in (a, b))
    al = np.broadcast_to(np.asarray(alpha, float), q.beta.shape)
    x, axes = _grid(_centers(q.m_o, q.m_n, a_, b_), q.cov)
    log_q, _, score, _ = _parts(q, x)
    log_p, log_p_old = _log_mix(al, a_, b_, q.cov, x)
    return axes, log_q, score, log_p, log_p_old


def responsibility(q: Mix, mean: ArrayLike) -> Array:
    """E_{x ~ N(mean, Sigma)}[r_o(x)]: ``[K]``."""
    mu = np.broadcast_to(np.asarray(mean, float), q.m_o.shape)
    x, axes = _grid(_centers(q.m_o, q.m_n, mu), q.cov)
    _, r_o, _, _ = _parts(q, x)
    return _integrate(np.exp(_log_phi(x, mu, q.cov)) * r_o, axes)


def target_mass(q: Mix, alpha: ArrayLike, a: ArrayLike, b: ArrayLike) -> Array:
    """Label-free retention E_q[pi_o*(x)], pi_o* the target's old responsibility: ``[K]``."""
    axes, log_q, _, log_p, log_p_old = _against_target(q, alpha, a, b)
    return _integrate(np.exp(log_q) * np.exp(log_p_old - log_p), axes)


def fisher(q: Mix) -> Array:
    """E_q[score score^T] in (beta, m_o, m_n): ``[K, 1 + 2d, 1 + 2d]``."""
    x, axes = _grid(_centers(q.m_o, q.m_n), q.cov)
    log_q, _, score, _ = _parts(q, x)
    outer = score[..., :, None] * score[..., None, :]
    return _integrate(np.exp(log_q)[..., None, None] * outer, axes)


def forward_kl_optimum(weights: ArrayLike, means: ArrayLike, cov: ArrayLike,
                       start: Mix, spacing: float | None = None) -> Mix:
    """argmin over two-mode q of -E_D[log q] by scipy.optimize (BFGS on (logit beta, m_o,
    m_n), the brute-force cross entropy and gradient), one problem per batch entry."""
    from scipy.optimize import minimize

    w, mu = np.atleast_2d(np.asarray(weights, float)), np.asarray(means, float)
    c = np.atleast_2d(np.asarray(cov, float))
    d = start.dim
    out = []
    for k in range(len(start.beta)):
        def fun(theta: Array, k: int = k) -> tuple[float, Array]:
            beta = expit(theta[0])
            q = Mix.of(beta, theta[1:d + 1], theta[d + 1:], c)
            h, g = data_gradient(q, w[k:k + 1], mu[k:k + 1], spacing=spacing)
            return float(h[0]), np.concatenate([[g[0, 0] * beta * (1 - beta)], g[0, 1:]])

        x0 = np.concatenate([[logit(start.beta[k])], start.m_o[k], start.m_n[k]])
        sol = minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-11,
                                                                  "maxiter": 2000})
        out.append(sol.x)
    th = np.stack(out)
    return Mix.of(expit(th[:, 0]), th[:, 1:d + 1], th[:, d + 1:], c)


@dataclass(frozen=True)
class Path:
    """A brute-force gradient-descent run, every step recorded: beta ``[K, T+1]``, means
    ``[K, T+1, d]``."""

    beta: Array
    m_o: Array
    m_n: Array


def descend(q0: Mix, gradient: Callable[[Mix], Array], steps: int, step_size: float,
            mean_scale: float = 1.0) -> Path:
    """Plain gradient descent in (logit beta, m_o, m_n), the population runs' coordinates.

    eta <- eta - s beta (1 - beta) g_beta, m <- m - s * mean_scale * g_m (no preconditioning;
    mean_scale = 0 freezes the means). Written independently of :mod:`forgetlab.dynamics`.
    """
    d = q0.dim
    eta, m_o, m_n = logit(q0.beta), q0.m_o.copy(), q0.m_n.copy()
    rec_b, rec_o, rec_n = [q0.beta.copy()], [m_o.copy()], [m_n.copy()]
    for _ in range(steps):
        beta = expit(eta)
        g = gradient(Mix(beta, m_o, m_n, q0.cov))
        eta = eta - step_size * beta * (1.0 - beta) * g[:, 0]
        m_o = m_o - step_size * mean_scale * g[:, 1:d + 1]
        m_n = m_n - step_size * mean_scale * g[:, d + 1:]
        rec_b.append(expit(eta))
        rec_o.append(m_o.copy())
        rec_n.append(m_n.copy())
    return Path(np.stack(rec_b, 1), np.stack(rec_o, 1), np.stack(rec_n, 1))
