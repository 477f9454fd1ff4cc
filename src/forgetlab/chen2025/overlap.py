"""Chen et al.'s per-mode overlap accuracy on a grid, and the drop and gain read from it.

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
_CHUNK = 2**22


def _normal_pdf(x: Array, mu: Array | float, s: Array | float) -> Array:
    with np.errstate(over="ignore"):  # a far-away component (a diverged run) is exactly 0
        return np.exp(-0.5 * ((x - mu) / s) ** 2) * (_INV_SQRT_2PI / s)


def target_components(grid: Array) -> tuple[Array, Array]:
    """The weighted target components (p_old, p_new) on ``grid [G]``."""
    p_old = TARGET_WEIGHT_OLD * _normal_pdf(grid, *TARGET_OLD)
    p_new = (1.0 - TARGET_WEIGHT_OLD) * _normal_pdf(grid, *TARGET_NEW)
    return p_old, p_new


def learner_components(theta: Array, grid: Array) -> tuple[Array, Array]:
    """The learner's (q_old, q_new) on ``grid [G]``, ``[..., G]`` each, for ``theta [..., P]``."""
    if theta.shape[-1] == 5:
        pi1, mu1, s1, mu2, s2 = (theta[..., k, None] for k in range(5))
        return pi1 * _normal_pdf(grid, mu1, s1), (1.0 - pi1) * _normal_pdf(grid, mu2, s2)
    q = _normal_pdf(grid, theta[..., 0, None], theta[..., 1, None])
    return q, q


def overlap_accuracy(theta: Array, grid: Array) -> tuple[Array, Array]:
    """(acc_old, acc_new), each ``[...]``, for learner parameters ``theta [..., P]`` (P = 5 or 2).

    Evaluated in chunks of the leading axes so memory stays bounded for long trajectories.
    """
    p_old, p_new = target_components(grid)
    flat = theta.reshape(-1, theta.shape[-1])
    acc = np.empty((2, flat.shape[0]))
    step = max(1, _CHUNK // grid.size)
    for start in range(0, flat.shape[0], step):
        q_old, q_new = learner_components(flat[start : start + step], grid)
        acc[0, start : start + step] = np.minimum(p_old, q_old).sum(-1) / p_old.sum()
        acc[1, start : start + step] = np.minimum(p_new, q_new).sum(-1) / p_new.sum()
    return acc[0].reshape(theta.shape[:-1]), acc[1].reshape(theta.shape[:-1])


def grid_for(n_params: int) -> Array:
    """The paper's grid for the two-mode (P = 5) or single-mode (P = 2) learner."""
    low, high, points = GRID_TWO_MODE if n_params == 5 else GRID_SINGLE_MODE
    return np.linspace(low, high, points)
