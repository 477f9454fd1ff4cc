"""One-dimensional Gaussian expectations of logistic-type functions, to near machine precision.

Every population expectation of the two-mode mixture reduces (see :mod:`forgetlab.population`)
to E[f(u)] with u ~ N(m, s^2) and f one of

- ``"sigmoid"``:          f(u) = sigma(u) = 1 / (1 + e^{-u})
- ``"sigmoid_prime"``:    f(u) = sigma'(u) = sigma(u) sigma(-u)
- ``"softplus"``:         f(u) = log(1 + e^u)
- ``"sigmoid_sq_prime"``: f(u) = sigma(u)^2 sigma(-u) = sigma(u) sigma'(u)

All four are positive and log-concave, (log f)' lies in a fixed interval [lo, hi] inside [-1, 2],
and their only singularities are poles or branch points at u = i pi (2k + 1). Fixed
Gauss-Hermite rules fail when s is large (the logistic is sharp compared with the Gaussian), so
the expectation is computed in log space, with t = (u - m) / s ~ N(0, 1):

1. the maximiser t* of g(t) = log f(m + s t) - t^2 / 2 solves s (log f)'(m + s t) = t, hence
   t* lies in [s lo, s hi]; bisection on g' (g is concave) to within 0.05 (an error in t* only
   lowers the level below and so widens the interval);
2. an interval [t_L, t_R] outside which g < g(t*) - 50: from t* -+ 1, two tangent (Newton)
   steps towards the level g(t*) - 50 (a concave g lies below its tangents, so each step lands
   outside the level set), capped by t* -+ 10.01 (g <= g(t*) - (t - t*)^2 / 2); the neglected
   tails are below e^{-50} relative;
3. composite 16-point Gauss-Legendre quadrature on panels whose breakpoints are 4 uniform
   panels of [t_L, t_R] (each <= 5 wide: the Gaussian factor converges below 1e-20) together
   with a geometric grid around the kink u = 0 (u = +-c 4^k, k = 0..6, c = pi / 2) where it
   splits a panel: a panel [r, 4r] in u sees the singularities at distance >= r (Bernstein
   ellipse parameter >= 3, so 16 nodes reach 3^-32 ~ 5e-16 of the panel's share), the central
   [-c, c] has the poles +-i pi on its ellipse of parameter 2 + sqrt(5) (4.24^-32 ~ 1e-20;
   with c = 3 pi / 4, parameter 3, E[sigma sigma'] was off by 1.6e-13); a grid point at
   |u| >= 2 W (W a uniform panel's width in u) splits nothing that is not already that short
   and is dropped, as are the points outside [t_L, t_R];
4. log E[f] = top + log sum_i w_i e^{g(t_i) - top} - log sqrt(2 pi) over all nodes, top the
   largest exponent (the weights multiply after the exp). The sigmoid-type integrands are
   written f(u) = e^{a(u)} (1 + e^{-|u|})^{-p} with a piecewise linear (p = 1, 2, 3): the
   exponent is a(u_i) - t_i^2 / 2 (within p log 2 of log f, so nothing underflows) and the
   factor (1 + e^{-|u|})^{-p}, in [2^-p, 1] and correct to a few ulps, multiplies after it, so
   a node costs two exps and no log; softplus likewise is f(u) = e^{min(u, 0)} h(u) with
   h(u) = log1p(w) / w for u < 0 and u + log1p(w) for u >= 0, w = e^{-|u|} (h in [log 2, 1]
   for u < 0, in [log 2, u + 1) for u >= 0, each to a few ulps): two exps and a log1p a node,
   no log of a log.

The number of panels differs between configurations (4 to 10, 8.8 on average for m within
+-30 and s <= 10); rows with equal counts are evaluated together, so the work is vectorised
over any batch of (m, s), in blocks of 1024. s = 0 gives f(m) exactly; m = +-inf gives the
limits. Accuracy against adaptive quadrature (tests/test_quadrature): log E[f] within about
1e-15 of its magnitude for |m| <= 3000, 0 <= s <= 80 and up to s = 600, |m| = 2e5 (that is
1e-13 relative error of E[f] where |log E[f]| ~ 700, the rounding of the log itself); 3.6e-15
relative error of E[f] where |log E[f]| < 30.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, log_expit

from forgetlab._validation import as_finite

Array = NDArray[np.float64]

_LOG_SQRT_2PI = 0.5 * float(np.log(2.0 * np.pi))
_DROP = 50.0  # log-integrand drop that bounds the integration interval
_HALF_WIDTH = float(np.sqrt(2.0 * _DROP)) + 0.01
_N_UNIFORM = 4  # uniform panels on [t_L, t_R] (width <= 5: the Gaussian part converges)
# geometric grid around u = 0: +-c 4^k, k = 0..6, c = pi / 2 (the panel [-c, c] has the poles
# +-i pi on its Bernstein ellipse of parameter 2 + sqrt(5) ~ 4.24)
_KINK_OFFSETS = 0.5 * np.pi * 4.0 ** np.arange(0, 7)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)
_CHUNK = 1024  # configurations per vectorised block (its temporaries stay in cache)
_T_STAR_TOL = 0.05  # bisection tolerance for the mode t* (its error only widens the interval)
_TANGENT_STEPS = 2  # tangent steps for each end of the interval
_START_OFFSETS = np.array([[-1.0], [1.0]])  # the tangent steps start at t* -+ 1 ...
_LIMIT_OFFSETS = np.array([[-_HALF_WIDTH], [_HALF_WIDTH]])  # ... and stop by t* -+ sqrt(2 drop)


def _log1p_exp_neg_abs(u: Array) -> Array:
    """log(1 + e^{-|u|}), in [0, log 2]: its absolute error (~1e-16) is the relative error of
    f, so the plain log of 1 + e^{-|u|} serves (SIMD exp and log, no log1p)."""
    return np.log(1.0 + np.exp(-np.abs(u)))


def _log_softplus(u: Array) -> Array:
    """log(log(1 + e^u)), accurate for u -> -inf (where it is u - e^u / 2 + O(e^{2u}))."""
    safe = np.maximum(u, -30.0)
    softplus = np.maximum(safe, 0.0) + np.log1p(np.exp(-np.abs(safe)))
    return np.where(u < -30.0, u - 0.5 * np.exp(np.minimum(u, 0.0)), np.log(softplus))


def _dlog_softplus(u: Array) -> Array:
    """(log softplus)'(u) = sigma(u) / softplus(u)."""
    return np.exp(log_expit(u) - _log_softplus(u))


def _times_softplus_factor(g: Array, u: Array) -> None:
    """g *= h(u) = softplus(u) / e^{min(u, 0)} in place (``u`` is overwritten): with
    w = e^{-|u|}, h = log1p(w) / w for u < 0 (1 where w underflows) and u + log1p(w) else."""
    negative = u < 0
    w = np.exp(-np.abs(u))
    lw = np.log1p(w)
    np.add(u, lw, out=u)
    np.divide(lw, w, out=u, where=negative & (w > 0))
    u[negative & (w == 0)] = 1.0
    g *= u


def _power_factor(power: int) -> Callable[[Array, Array], None]:
    """g *= (1 + e^{-|u|})^{-power} in place (``u`` is overwritten), one division a power."""

    def times(g: Array, u: Array) -> None:
        np.abs(u, out=u)
        np.negative(u, out=u)
        np.exp(u, out=u)
        u += 1.0
        for _ in range(power):
            g /= u

    return times


class _Integrand(NamedTuple):
    log_f: Callable[[Array], Array]
    dlog_f: Callable[[Array], Array]
    slope: tuple[float, float]  # (log f)' lies in [lo, hi]
    limits: tuple[float, float]  # log E[f] as m -> -inf and m -> +inf
    # (a, times) with f(u) = e^{a(u)} h(u), a piecewise linear, h within a bounded factor of
    # e^0 (sigmoids: h = (1 + e^{-|u|})^{-p}); times(g, u) multiplies g by h(u) in place
    split: tuple[Callable[[Array], Array], Callable[[Array, Array], None]] | None = None


def _split_integrand(a: Callable[[Array], Array], power: int, dlog_f: Callable[[Array], Array],
                     slope: tuple[float, float], limits: tuple[float, float]) -> _Integrand:
    """The integrand with log f(u) = a(u) - power * log(1 + e^{-|u|})."""
    return _Integrand(lambda u: a(u) - power * _log1p_exp_neg_abs(u), dlog_f, slope, limits,
                      (a, _power_factor(power)))


INTEGRANDS: dict[str, _Integrand] = {
    "sigmoid": _split_integrand(lambda u: np.minimum(u, 0.0), 1, lambda u: expit(-u),
                                (0.0, 1.0), (-np.inf, 0.0)),
    "sigmoid_prime": _split_integrand(
        lambda u: -np.abs(u), 2, lambda u: expit(-u) - expit(u), (-1.0, 1.0),
        (-np.inf, -np.inf)),
    "softplus": _Integrand(_log_softplus, _dlog_softplus, (0.0, 1.0), (-np.inf, np.inf),
                           (lambda u: np.minimum(u, 0.0), _times_softplus_factor)),
    "sigmoid_sq_prime": _split_integrand(
        lambda u: 2.0 * np.minimum(u, 0.0) + np.minimum(-u, 0.0), 3,
        lambda u: 2.0 * expit(-u) - expit(u), (-1.0, 2.0), (-np.inf, -np.inf)),
}


def _bisect(fun: Callable[[Array], Array], lo: Array, hi: Array,
            iters: Array) -> tuple[Array, Array]:
    """Bracket [lo, hi] of the sign change of a function that is positive at lo, <= 0 at hi,
    after ``iters[i]`` halvings of row i (a row's result does not depend on its batch)."""
    every_row = int(np.min(iters, initial=0))  # halvings that every row takes
    for k in range(int(np.max(iters, initial=0))):
        mid = 0.5 * (lo + hi)
        pos = fun(mid) > 0
        if k < every_row:
            lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
        else:
            active = k < iters
            lo = np.where(active & pos, mid, lo)
            hi = np.where(active & ~pos, mid, hi)
    return lo, hi


def _outer_ends(g: Callable[[Array], Array], dg: Callable[[Array], Array], level: Array,
                start: Array, limit: Array) -> Array:
    """Points beyond which g < ``level`` on the side of ``limit``, for concave g (elementwise,
    so both ends of every row's interval are found together).

    g lies below each tangent, so the tangent's crossing of ``level`` is always on the far
    side of g's: two tangent (Newton) steps give a valid, nearly tight end; concavity also
    gives g(t) <= g(t*) - (t - t*)^2 / 2, so ``limit`` = t* +- sqrt(2 drop) is valid too.
    """
    t = start
    side = np.sign(limit - start)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(_TANGENT_STEPS):
            slope = dg(t)
            step = (level - g(t)) / slope
            # a usable tangent points away from the mode (slope of the opposite sign to the side)
            ok = np.isfinite(step) & (slope * side < 0)
            t = np.where(ok, t + step, limit)
    return np.where(side * (t - limit) < 0, t, limit)


def _panel_sums(spec: _Integrand, m: Array, s: Array, breaks: Array) -> Array:
    """log of the Gauss-Legendre sum of e^{g(t)} over the panels between sorted ``breaks``
    ``[n, P]``, dropping the empty panels (clipped break points) row by row: rows with equal
    numbers of panels are evaluated together.

    Max-shifted sum: log sum_p (w_p / 2) sum_j W_j e^{g(t_pj) - top} + top, top = max g at the
    nodes (the weights applied after the exp). For a split integrand (f = e^{a(u)} h(u), h
    within a bounded factor of 1) top is the max of a(u) - t^2 / 2 and the factor h(u)
    multiplies after the exp: no log of f per node."""
    a, b = breaks[:, :-1], breaks[:, 1:]
    keep = b > a
    count = keep.sum(axis=1)
    nodes = 0.5 * (_NODES + 1.0)
    out = np.empty(len(m))
    same = bool(np.all(count == count[0]))  # usual for one configuration: no row selection
    for k in (count[:1] if same else np.unique(count)):
        rows = slice(None) if same else np.flatnonzero(count == k)
        sel = keep[rows] if k < keep.shape[1] else None
        lo = a[rows] if sel is None else a[rows][sel].reshape(-1, k)
        width = (b[rows] if sel is None else b[rows][sel].reshape(-1, k)) - lo
        t = lo[..., None] + width[..., None] * nodes  # [r, k, nodes]
        u = m[rows, None, None] + s[rows, None, None] * t
        g = spec.log_f(u) if spec.split is None else spec.split[0](u)
        t *= t
        t *= 0.5
        g -= t
        top = g.max(axis=(1, 2))
        g -= top[:, None, None]
        np.exp(g, out=g)
        if spec.split is not None:  # the factor h(u), after the exp
            spec.split[1](g, u)
        sums = np.einsum("rkj,j,rk->r", g, _WEIGHTS, width)
        out[rows] = top + np.log(0.5 * sums)
    return out


def _log_expect_block(spec: _Integrand, m: Array, s: Array) -> Array:
    """log E[f(m + s t)], t ~ N(0, 1), for finite 1-D arrays m, s > 0 of equal length."""

    def g(t: Array) -> Array:  # t: [n] or [2, n] (both ends of each row's interval)
        return spec.log_f(m + s * t) - 0.5 * t * t

    def dg(t: Array) -> Array:
        return s * spec.dlog_f(m + s * t) - t

    lo, hi = spec.slope
    width = s * (hi - lo) + 2e-9
    iters = np.maximum(1, np.ceil(np.log2(width / _T_STAR_TOL)))
    t_lo, t_hi = _bisect(dg, s * lo - 1e-9, s * hi + 1e-9, iters)
    t_star = 0.5 * (t_lo + t_hi)
    level = g(t_star) - _DROP  # g(t*) <= max g: any error only widens the interval
    ends = _outer_ends(g, dg, level, t_star + _START_OFFSETS, t_star + _LIMIT_OFFSETS)
    left, right = ends[0][:, None], ends[1][:, None]
    m_col, s_col = m[:, None], s[:, None]
    uniform = left + (right - left) * (np.arange(_N_UNIFORM + 1) / _N_UNIFORM)
    offsets = np.concatenate([_KINK_OFFSETS, -_KINK_OFFSETS])
    kink = (offsets - m_col) / s_col
    # a kink point at |u| >= 2 W (W: a uniform panel's width in u) splits no panel that is
    # not already short enough (centre distance / half-width >= 2 > 5/3, the [r, 4r] ratio)
    far = np.abs(offsets) >= 2.0 * s_col * (right - left) / _N_UNIFORM
    kink = np.where(far, left, kink)
    breaks = np.sort(np.concatenate([uniform, np.clip(kink, left, right)], axis=1), axis=1)
    return _panel_sums(spec, m, s, breaks) - _LOG_SQRT_2PI


def log_gaussian_expectation(kind: str, mean: ArrayLike, std: ArrayLike) -> Array:
    """log E[f(u)], u ~ N(mean, std^2), f named by ``kind`` (see the module docstring).

    ``mean`` may be +-inf (the limit is returned); ``std`` must be finite and >= 0. Shapes
    broadcast; the result has the broadcast shape. Accuracy: see the module docstring.
    """
    if kind not in INTEGRANDS:
        raise ValueError(f"kind must be one of {sorted(INTEGRANDS)}, got {kind!r}")
    spec = INTEGRANDS[kind]
    m = np.asarray(mean, dtype=float)
    if np.isnan(m).any():
        raise ValueError("mean must not be NaN")
    s = as_finite(std, "std", low=0.0)
    if m.shape != s.shape:
        m, s = np.broadcast_arrays(m, s)
    shape = m.shape
    m_flat, s_flat = m.ravel(), s.ravel()
    finite = np.isfinite(m_flat)
    out = np.where(m_flat > 0, spec.limits[1], spec.limits[0])
    point = finite & (s_flat == 0.0)  # a point mass: E[f] = f(m)
    if point.any():
        out[point] = spec.log_f(m_flat[point])
    idx = np.flatnonzero(finite & ~point)
    for start in range(0, idx.size, _CHUNK):
        sel = idx[start:start + _CHUNK]
        out[sel] = _log_expect_block(spec, m_flat[sel], s_flat[sel])
    return out.reshape(shape)


def gaussian_expectation(kind: str, mean: ArrayLike, std: ArrayLike) -> Array:
    """E[f(u)], u ~ N(mean, std^2) (exp of :func:`log_gaussian_expectation`)."""
    return np.exp(log_gaussian_expectation(kind, mean, std))
