"""The published arithmetic of the Chen et al. toy, one seed at a time, written plainly.

This is the independent reference of the vectorised engine (:mod:`forgetlab.chen2025.model`
and :mod:`forgetlab.chen2025.run`) and the baseline of ``bench/chen2025.py``: per step it
draws the samples with ``gen.normal``, evaluates every density per sample with
``scipy.stats.norm.pdf``, forms the responsibilities, importance weights, reward and scores
sample by sample, takes their means, updates the parameters, projects them, and scores the new
parameters with the overlap metric by ``np.trapezoid`` on the paper's grid.  No algebra of the
engine (the quadratic-in-z forms, the moment sums) is used here.

``eps`` is the published floor (1e-12) or 0 for the ``-clean`` arithmetic; with ``eps = 0`` the
trapezoid rule is replaced by a plain grid sum, as in the clean engine.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from forgetlab.chen2025 import model
from forgetlab.chen2025.overlap import grid_for

Array = NDArray[np.float64]

_P_OLD = (model.TARGET_WEIGHT_OLD, *model.TARGET_OLD)
_P_NEW = (1.0 - model.TARGET_WEIGHT_OLD, *model.TARGET_NEW)


def _area(values: Array, grid: Array, eps: float) -> float:
    return float(np.trapezoid(values, grid)) if eps else float(values.sum())


def _targets(grid: Array, eps: float) -> list[tuple[Array, float]]:
    """The weighted target components on the grid and their areas, computed once per run."""
    out = []
    for w, m, s in (_P_OLD, _P_NEW):
        p = w * norm.pdf(grid, m, s)
        out.append((p, _area(p, grid, eps)))
    return out


def _accuracies(
    grid: Array, targets: list[tuple[Array, float]], q_old: Array, q_new: Array, eps: float
) -> tuple[float, float]:
    (p_old, a_old), (p_new, a_new) = targets
    return (
        _area(np.minimum(p_old, q_old), grid, eps) / a_old,
        _area(np.minimum(p_new, q_new), grid, eps) / a_new,
    )


def _draw(method: str, gen: np.random.Generator, mu: float, s: float, samples: int) -> Array:
    """The step's samples: from the new data N(3.5, 0.7^2) for forward_kl, else from the
    learner's (new) mode N(mu, s^2)."""
    if method == "forward_kl":
        return gen.normal(model.TARGET_NEW[0], model.TARGET_NEW[1], size=samples)
    return gen.normal(mu, s, size=samples)


def two_mode(
    method: str, lr: float, gen: np.random.Generator, steps: int, samples: int, eps: float
) -> tuple[Array, Array, Array]:
    """One seed of the two-mode toy: ``(params [T+1, 5], acc_old [T+1], acc_new [T+1])``.

    forward_kl: x ~ N(3.5, 0.7^2), descend mean -log q.  reverse_kl: x ~ N(mu2, s2^2), ascend
    mean R w dlog q with R = log(p_new(x) / q2(x) / 0.1 + eps), w = q / (q2 + eps).
    """
    pi1, mu1, s1, mu2, s2 = model.INIT_TWO_MODE
    slow = model.OLD_LR_FACTOR
    grid = grid_for(5)
    targets = _targets(grid, eps)
    hist, acc_old, acc_new = [], [], []
    for t in range(steps + 1):
        hist.append((pi1, mu1, s1, mu2, s2))
        a_old, a_new = _accuracies(
            grid, targets, pi1 * norm.pdf(grid, mu1, s1), (1 - pi1) * norm.pdf(grid, mu2, s2), eps
        )
        acc_old.append(a_old)
        acc_new.append(a_new)
        if t == steps:
            break
        x = _draw(method, gen, mu2, s2, samples)
        dens1, dens2 = norm.pdf(x, mu1, s1), norm.pdf(x, mu2, s2)
        comp1, comp2 = pi1 * dens1, (1 - pi1) * dens2
        q = comp1 + comp2 + eps
        resp1 = comp1 / q
        d_pi1 = (dens1 - dens2) / q
        d_mu1 = resp1 * (x - mu1) / s1**2
        d_s1 = resp1 * ((x - mu1) ** 2 / s1**3 - 1 / s1)
        if method == "forward_kl":
            resp2 = comp2 / q
            per_sample = [-d_pi1, -d_mu1, -d_s1]
            per_sample += [-resp2 * (x - mu2) / s2**2, -resp2 * ((x - mu2) ** 2 / s2**3 - 1 / s2)]
            step = [-lr * np.mean(g) for g in per_sample]
        else:
            weight = q / (comp2 + eps)
            resp2 = 1 - resp1  # the published code's new-component responsibility
            reward = np.log(norm.pdf(x, *model.TARGET_NEW) / comp2 / model.REWARD_SCALE + eps)
            per_sample = [d_pi1, d_mu1, d_s1]
            per_sample += [resp2 * (x - mu2) / s2**2, resp2 * ((x - mu2) ** 2 / s2**3 - 1 / s2)]
            step = [lr * np.mean(reward * weight * g) for g in per_sample]
        pi1 += slow * step[0]
        mu1 += slow * step[1]
        s1 += slow * step[2]
        mu2 += step[3]
        s2 += step[4]
        pi1 = min(max(pi1, model.WEIGHT_CLIP), 1 - model.WEIGHT_CLIP)
        s1, s2 = max(s1, model.STD_FLOOR), max(s2, model.STD_FLOOR)
    return np.array(hist), np.array(acc_old), np.array(acc_new)


def single_mode(
    method: str, lr: float, gen: np.random.Generator, steps: int, samples: int, eps: float
) -> tuple[Array, Array, Array]:
    """One seed of the single-mode toy: ``(params [T+1, 2], acc_old [T+1], acc_new [T+1])``.

    forward_kl: x ~ N(3.5, 0.7^2), descend mean -log N(x; mu, s^2).  reverse_kl: x ~ N(mu, s^2),
    ascend mean R dlog q with R = log(p_new(x) / (N(x; mu, s^2) + eps) / 0.1 + eps).
    """
    mu, s = model.INIT_SINGLE_MODE
    grid = grid_for(2)
    targets = _targets(grid, eps)
    hist, acc_old, acc_new = [], [], []
    for t in range(steps + 1):
        hist.append((mu, s))
        q_grid = norm.pdf(grid, mu, s)
        a_old, a_new = _accuracies(grid, targets, q_grid, q_grid, eps)
        acc_old.append(a_old)
        acc_new.append(a_new)
        if t == steps:
            break
        x = _draw(method, gen, mu, s, samples)
        if method == "forward_kl":
            signal = np.ones(samples)  # descent on -log q: the mean score itself
        else:
            q = norm.pdf(x, mu, s) + eps
            signal = np.log(norm.pdf(x, *model.TARGET_NEW) / q / model.REWARD_SCALE + eps)
        d_mu, d_s = (x - mu) / s**2, (x - mu) ** 2 / s**3 - 1 / s
        mu += lr * float(np.mean(signal * d_mu))
        s += lr * float(np.mean(signal * d_s))
        s = max(s, model.STD_FLOOR)
    return np.array(hist), np.array(acc_old), np.array(acc_new)
