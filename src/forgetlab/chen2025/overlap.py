"""Chen et al.'s per-mode overlap accuracy on a grid, and the drop and gain read from it.

(Not :func:`forgetlab.metrics.overlap_accuracy`, the closed form of the equal-covariance
mixture: this one is a grid sum for learners with unequal variances.)

acc_k = sum_g min(p_k(x_g), q_k(x_g)) / sum_g p_k(x_g) on an evenly spaced grid (the spacing
cancels), with p_k the weighted target components 0.75 N(-3, 1) and 0.25 N(3.5, 0.7^2), q_k the
weighted learner components pi1 N(mu1, s1^2) and (1 - pi1) N(mu2, s2^2); the single-mode learner
N(mu, s^2) is compared unweighted (q_k = q for both k).  Two-mode grid: [-8, 8], 500 points;
single-mode: [-10, 10], 500 points.

Drop(t) = acc_old(0) - acc_old(t),  Gain(t) = acc_new(t) - acc_new(0).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from forgetlab.chen2025.model import TARGET_NEW, TARGET_OLD, TARGET_WEIGHT_OLD

Array = NDArray[np.float64]

GRID_TWO_MODE = (-8.0, 8.0, 500)
GRID_SINGLE_MODE = (-10.0, 10.0, 500)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_CHUNK = 2**16


def _normal_pdf(x: Array, mu: Array | float, s: Array | float) -> Array:
    with np.errstate(over="ignore"):  # a far-away component (a diverged run) is exactly 0
        return np.exp(-0.5 * ((x - mu) / s) ** 2) * (_INV_SQRT_2PI / s)


def target_components(grid: Array) -> tuple[Array, Array]:
    """The weighted target components (p_old, p_new) on ``grid [G]``."""
    p_old = TARGET_WEIGHT_OLD * _normal_pdf(grid, *TARGET_OLD)
    p_new = (1.0 - TARGET_WEIGHT_OLD) * _normal_pdf(grid, *TARGET_NEW)
    return p_old, p_new


def _component_into(out: Array, grid: Array, mu: Array, s: Array, weight: Array | None) -> Array:
    """``weight N(grid; mu, s^2)`` into ``out [k, G]`` for ``mu, s, weight [k, 1]``, without
    temporaries."""
    with np.errstate(over="ignore"):  # a far-away component (a diverged run) is exactly 0
        np.subtract(grid, mu, out=out)
        out /= s
        np.square(out, out=out)
        out *= -0.5
        np.exp(out, out=out)
    out *= _INV_SQRT_2PI / s
    if weight is not None:
        out *= weight
    return out


def _rule_sum(values: Array, trapezoid: bool) -> Array:
    """sum_g values[..., g], or the trapezoid sum (end points halved) when ``trapezoid``."""
    total = values.sum(-1)
    if trapezoid:
        total -= 0.5 * (values[..., 0] + values[..., -1])
    return total


def grid_overlap_accuracy(theta: Array, grid: Array, trapezoid: bool = False
                          ) -> tuple[Array, Array]:
    """(acc_old, acc_new), each ``[...]``, for learner parameters ``theta [..., P]`` (P = 5 or 2).

    ``trapezoid=False`` sums the grid (the spacing cancels); ``True`` is the trapezoid rule of
    the published code (np.trapz of both integrals), which differs by the halved end points.
    Evaluated in cache-sized chunks of the leading axes, so memory stays bounded.
    """
    targets = target_components(grid)
    norms = [_rule_sum(p, trapezoid) for p in targets]
    flat = theta.reshape(-1, theta.shape[-1])
    acc = np.empty((2, flat.shape[0]))
    step = max(1, _CHUNK // grid.size)
    buf = np.empty((min(step, flat.shape[0]), grid.size))
    two = flat.shape[1] == 5
    for start in range(0, flat.shape[0], step):
        block = flat[start : start + step]
        out = buf[: block.shape[0]]
        for k, (p, norm) in enumerate(zip(targets, norms, strict=True)):
            if two:
                w = block[:, 0:1] if k == 0 else 1.0 - block[:, 0:1]
                _component_into(out, grid, block[:, 1 + 2 * k, None], block[:, 2 + 2 * k, None], w)
            elif k == 0:
                _component_into(out, grid, block[:, 0:1], block[:, 1:2], None)
                q = out.copy()
            else:
                out[...] = q
            np.minimum(p, out, out=out)
            acc[k, start : start + step] = _rule_sum(out, trapezoid) / norm
    return acc[0].reshape(theta.shape[:-1]), acc[1].reshape(theta.shape[:-1])


def grid_for(n_params: int) -> Array:
    """The paper's grid for the two-mode (P = 5) or single-mode (P = 2) learner."""
    low, high, points = GRID_TWO_MODE if n_params == 5 else GRID_SINGLE_MODE
    return np.linspace(low, high, points)
