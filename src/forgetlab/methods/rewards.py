"""Rewards on the mixture's output space for RL-style methods.

A reward maps samples x ``[C, S, n, d]`` of a :class:`~forgetlab.methods.base.Problem` to
``[C, S, n]``:

* ``"target"``: r(x) = log p*(x), the target log-density (reverse KL to p* when combined with
  the entropy term, tau = 1 and no reference model);
* ``"verifiable"``: r(x) = 1{D(x, b) <= radius} (new-task success), or with ``credit_old``
  r(x) = 1{D(x, b) <= radius or D(x, a) <= radius} (a reward that also credits correct old
  behaviour); D is the Mahalanobis distance;
* ``"callable"``: any user function ``fn(x) -> [C, S, n]`` (finite values).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from forgetlab.methods.base import Method, Problem
from forgetlab.vocabulary import MIXTURE_REWARDS

Array = NDArray[np.float64]
RewardFn = Callable[[Problem, Array], Array]
REWARD_KINDS = MIXTURE_REWARDS


def target_log_density(problem: Problem, x: Array) -> Array:
    """r(x) = log p*(x), ``[C, S, n]``."""
    return problem.target.log_prob(x)


def verifiable(problem: Problem, x: Array, radius: float | Array, credit_old: bool = False
               ) -> Array:
    """1{D(x, b) <= radius}, or also 1 where D(x, a) <= radius when ``credit_old``."""
    r = np.asarray(radius, dtype=float)
    target = problem.target
    points = np.moveaxis(x, -2, 0)  # [n, C, S, d]: the sample axis ahead of the batch axes
    success = target.factor.distance(points, target.mean_new) <= r
    if credit_old:
        success |= target.factor.distance(points, target.mean_old) <= r
    return np.moveaxis(success, 0, -1).astype(float)


def make_reward(kind: str, radius: float | Array = 1.0, credit_old: bool = False,
                fn: Callable[[Array], Array] | None = None) -> RewardFn:
    """The reward function for ``kind`` (one of ``REWARD_KINDS``); ValueError otherwise."""
    if kind == "target":
        return target_log_density
    if kind == "verifiable":
        return lambda problem, x: verifiable(problem, x, radius, credit_old)
    if kind == "callable":
        if fn is None or not callable(fn):
            raise ValueError("reward_fn must be a callable x [C, S, n, d] -> [C, S, n] "
                             "when reward = 'callable'")
        return lambda problem, x: _checked(fn(x), x)
    raise ValueError(f"reward must be one of {', '.join(REWARD_KINDS)}, got {kind!r}")


def _checked(r: Array, x: Array) -> Array:
    out = np.broadcast_to(np.asarray(r, dtype=float), x.shape[:-1])
    if not np.all(np.isfinite(out)):
        raise ValueError("reward_fn returned non-finite values")
    return out


def reward_of(method: Method) -> RewardFn:
    """The reward function a method's reward knobs select (``reward``, ``radius``,
    ``credit_old``, ``reward_fn``: :mod:`forgetlab.vocabulary`)."""
    return make_reward(method.knob("reward"), method.knob("radius"), method.knob("credit_old"),
                       method.knob("reward_fn"))
