"""Closed forms for Gaussians that share a covariance Sigma.

With the Cholesky factor Sigma = L L^T, whitening z = L^{-1} x makes every Gaussian isotropic,
and the Mahalanobis distance D(u, v) = ||Sigma^{-1/2}(u - v)|| = ||L^{-1}(u - v)|| becomes
Euclidean. :class:`Factorised` holds Sigma, L, L^{-1} and Sigma^{-1} once per covariance and is
where the engine's whitening, distances and Gaussian normalisers are computed (the claims'
independent references compute their own).
For phi(.; mu) = N(mu, Sigma):

- KL(phi(.;u) || phi(.;v)) = D(u, v)^2 / 2
- chi^2(phi(.;u) || phi(.;v)) = exp(D(u, v)^2) - 1
- Bhattacharyya coefficient BC(u, v) = exp(-D(u, v)^2 / 8), distance D_B = D^2 / 8,
  squared Hellinger distance 1 - BC.
- General (unequal covariances):
  D_B = (1/8) dmu^T S^{-1} dmu + (1/2) log(det S / sqrt(det S1 det S2)), S = (S1 + S2) / 2.
- Ball probability: P_{x~N(m, Sigma)}[D(x, c) <= rho] = F_{ncx2(d, D(m, c)^2)}(rho^2), the
  noncentral chi-square CDF (:func:`noncentral_chi2_cdf`).
- Hard (Bayes-rule) misassignment of a draw of the old component, weights (w_o, w_n), separation
  D: P[w_n phi_n(x) > w_o phi_o(x)] = Phi(-D/2 + log(w_n / w_o) / D).

Shapes: means are ``[..., d]``; a covariance is a scalar variance, a ``[d]`` diagonal or a
``[..., d, d]`` matrix. Scalars are accepted for d = 1.
"""

from __future__ import annotations

import weakref

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import log_ndtr, ndtr

from forgetlab._validation import as_covariance, as_finite, as_means

Array = NDArray[np.float64]
_LOG_2PI = float(np.log(2.0 * np.pi))


def cholesky(cov: ArrayLike, dim: int) -> Array:
    """Lower Cholesky factor L of a validated covariance (``[..., d, d]``), Sigma = L L^T."""
    return np.asarray(np.linalg.cholesky(as_covariance(cov, dim)), dtype=np.float64)


class Factorised:
    """A validated covariance Sigma ``[..., d, d]`` with its Cholesky factor L and L^{-1},
    computed once and shared (read-only) by every object of the same covariance.

    Mixtures built from one :class:`Factorised` (or from a covariance array that
    :func:`factorise` recognises) never validate or factorise again, so a training step costs
    O(d^2) per configuration, not O(d^3).
    """

    __slots__ = ("cov", "chol", "chol_inv", "_precision", "_parent", "__weakref__")

    def __init__(self, cov: ArrayLike, dim: int) -> None:
        self.cov = as_covariance(cov, dim)
        self.chol = np.asarray(np.linalg.cholesky(self.cov), dtype=np.float64)
        self.chol_inv: Array = np.asarray(np.linalg.inv(self.chol), dtype=np.float64)
        for arr in (self.cov, self.chol, self.chol_inv):
            arr.flags.writeable = False
        self._precision: Array | None = None
        self._parent: Factorised | None = None
        _remember(_FACTORS, _MAX_FACTORS, _root(self.cov), self)

    @property
    def precision(self) -> Array:
        """Sigma^{-1} = L^{-T} L^{-1} (formed once, on first use): one matrix product per
        vector instead of two triangular ones."""
        if self._precision is None:
            if self._parent is not None:
                self._precision = np.broadcast_to(self._parent.precision, self.cov.shape)
            else:
                prec = np.swapaxes(self.chol_inv, -1, -2) @ self.chol_inv
                prec = 0.5 * (prec + np.swapaxes(prec, -1, -2))
                prec.flags.writeable = False
                self._precision = prec
        return self._precision

    def precision_times(self, vec: Array) -> Array:
        """Sigma^{-1} v for v ``[..., d]`` (batch axes broadcast against the covariance's)."""
        prec = self.precision
        if prec.ndim == 2:
            return (vec.reshape(-1, vec.shape[-1]) @ prec).reshape(vec.shape)
        return np.einsum("...ij,...j->...i", prec, vec)

    def whiten(self, x: Array) -> Array:
        """z = L^{-1} x for rows x ``[..., n, d]`` (the covariance's batch axes against
        ``[...]``); one matrix product when the covariance has no batch axes."""
        return _times_transpose(x, self.chol_inv)

    def precision_rows(self, v: Array) -> Array:
        """Sigma^{-1} v for rows v ``[..., n, d]`` (batch as :meth:`whiten`), through the same
        precision matrix as :meth:`precision_times` (it is symmetric: rows times Sigma^{-1})."""
        return _times_transpose(v, self.precision)

    def log_normaliser(self) -> Array:
        """log of the N(., Sigma) normaliser, -d/2 log(2 pi) - log|L|, ``[...]``."""
        log_det = np.sum(np.log(np.diagonal(self.chol, axis1=-2, axis2=-1)), axis=-1)
        return -0.5 * self.dim * _LOG_2PI - log_det

    def colour(self, z: Array) -> Array:
        """x = L z for rows z ``[..., n, d]``, the inverse of :meth:`whiten`."""
        return _times_transpose(z, self.chol)

    def distance(self, u: ArrayLike, v: ArrayLike) -> Array:
        """D(u, v) = ||L^{-1}(u - v)|| for u, v ``[..., d]`` broadcast together and against the
        covariance's batch axes; shape ``[...]``."""
        diff = np.asarray(u, dtype=float) - np.asarray(v, dtype=float)
        return np.linalg.norm(self.whiten(diff[..., None, :])[..., 0, :], axis=-1)

    @property
    def dim(self) -> int:
        """d."""
        return int(self.cov.shape[-1])

    def broadcast(self, shape: tuple[int, ...]) -> Factorised:
        """The same factorisation viewed with batch shape ``shape[:-2]`` (no copy)."""
        out = object.__new__(Factorised)
        out.cov, out.chol, out.chol_inv = (np.broadcast_to(a, shape)
                                           for a in (self.cov, self.chol, self.chol_inv))
        out._precision, out._parent = None, self
        return out

    def same(self, other: Factorised) -> bool:
        """Whether ``other`` holds the same covariance: the same object, or equal entries
        (exactly: O(d^2) per distinct matrix; up to 1e-10 relative only when they differ)."""
        if other is self:
            return True
        if self.dim != other.dim:
            return False
        try:
            if bool(np.all(self.cov == other.cov)):
                return True
        except ValueError:  # batch shapes that do not broadcast
            return False
        return bool(np.allclose(self.cov, other.cov, rtol=1e-10, atol=0.0))


def _times_transpose(x: Array, mat: Array) -> Array:
    """x M^T for rows x ``[..., n, d]`` and M ``[..., d, d]``, using the unbroadcast M (one
    matrix product when M is shared: a batched matmul loops over configurations; for d = 1 a
    broadcast product, the same numbers)."""
    if mat.ndim == 2 and x.shape[-1] == 1:
        return x * mat[0, 0]
    if x.ndim >= 2 and x.shape[-1] == 1:
        return x * mat
    if mat.ndim == 2:
        return (x.reshape(-1, x.shape[-1]) @ mat.T).reshape(x.shape)
    return x @ np.swapaxes(mat, -1, -2)


def _root(arr: Array) -> Array:
    """The array that owns the memory of a view (``arr`` itself if it owns it)."""
    while isinstance(arr.base, np.ndarray):
        arr = arr.base
    return arr


_FACTORS: dict[int, tuple[weakref.ref[Array], weakref.ref[Factorised]]] = {}
_MAX_FACTORS = 256


def factorise(cov: ArrayLike | Factorised, dim: int) -> Factorised:
    """A :class:`Factorised` for ``cov`` (validated, with L and L^{-1}), reusing an earlier
    factorisation when ``cov`` is that factorisation's covariance, a broadcast view of it, or
    the very array it was built from, with unchanged entries (checked: O(d^2) per matrix, no
    O(d^3) work); otherwise validate and factorise (the same numbers either way)."""
    if isinstance(cov, Factorised):
        if cov.dim != dim:
            raise ValueError(f"cov has d={cov.dim}, the means have d={dim}")
        return cov
    arr = cov if isinstance(cov, np.ndarray) else None
    if arr is not None and arr.dtype == np.float64 and arr.ndim >= 2:
        hit = _FACTORS.get(id(_root(arr)))
        known = hit[1]() if hit is not None and hit[0]() is _root(arr) else None
        if known is not None and arr.shape[-2:] == (dim, dim):
            try:
                shape = np.broadcast_shapes(known.cov.shape, arr.shape)
            except ValueError:
                shape = ()
            if shape == arr.shape and bool(np.all(known.cov == arr)):
                return known if known.cov.shape == shape else known.broadcast(shape)
    factor = Factorised(cov, dim)
    if arr is not None:
        _remember(_FACTORS, _MAX_FACTORS, _root(arr), factor)
    return factor


def _remember(table: dict[int, tuple[weakref.ref, weakref.ref]], size: int,  # type: ignore[type-arg]
              key: object, value: object) -> None:
    """table[id(key)] = weak references to (key, value), dropping dead and old entries."""
    if len(table) >= size:
        for k in [k for k, (a, b) in table.items() if a() is None or b() is None]:
            del table[k]
        while len(table) >= size:
            table.pop(next(iter(table)))
    table[id(key)] = (weakref.ref(key), weakref.ref(value))


def mahalanobis(u: ArrayLike, v: ArrayLike, cov: ArrayLike,
                names: tuple[str, str] = ("u", "v")) -> Array:
    """D(u, v) = ||Sigma^{-1/2}(u - v)||, shape ``[...]``; errors name the means ``names``."""
    u_arr, v_arr = as_means(u, v, names=names)
    return factorise(np.asarray(cov, dtype=float), u_arr.shape[-1]).distance(u_arr, v_arr)


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


def noncentral_chi2_cdf(x: ArrayLike, df: ArrayLike, nc: ArrayLike) -> Array:
    """F_{ncx2(df, nc)}(x) = P[||z + a||^2 <= x] for z ~ N(0, I_df), ||a||^2 = nc.

    scipy.stats is imported on the first call, not with this module: it costs about a second,
    which every process resolving a configuration (a sweep's workers) would pay.
    """
    from scipy.stats import ncx2

    return np.asarray(ncx2.cdf(x, df, nc), dtype=float)
