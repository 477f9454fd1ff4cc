"""The one optimiser loop: gradients turned into parameter paths, for every model in the package.

Parameters are a tuple of arrays (a :class:`~forgetlab.mixture.MixtureParams`, or a 1-tuple
holding a flat parameter vector), each with a leading run shape ``[...]`` (configurations,
seeds) shared by all of them. :class:`Descent` is an optax-like ``(init, update)`` stepper with
one learning rate s per array (broadcast against it):

* ``"gd"``: theta <- theta - s g;
* ``"adam"``: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, t <- t + 1,
  theta <- theta - s m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).

:func:`descend` runs it: per step the caller's ``direction`` gives the gradient in the optimised
coordinates (or, with no stepper, the next coordinates themselves: a fixed-point map such as
EM), ``project`` clips them to the feasible set, ``to_params`` maps them to the parameters (a
change of variables), and
``sane`` says which runs are still finite and in range. A run that fails ``sane`` is stopped:
it keeps its last sane values from then on and ``diverged [...]`` holds the step whose update
failed (-1 while it runs). Nothing outside the sane range is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Params = tuple[Array, ...]
DESCENTS = ("gd", "adam")


class AdamState(NamedTuple):
    """Adam's step count and first and second moments, one array per parameter array."""

    steps_taken: int
    first: Params
    second: Params


@dataclass(frozen=True)
class Descent:
    """Gradient descent (``"gd"``) or Adam on a tuple of arrays; ``learning_rates`` holds one
    rate per array, shaped to broadcast against it (e.g. ``[C, 1]`` for ``[C, S]`` and
    ``[C, 1, 1]`` for ``[C, S, d]``)."""

    learning_rates: Sequence[Array | float]
    kind: str = "gd"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in DESCENTS:
            raise ValueError(f"optimizer must be one of {', '.join(DESCENTS)}, got {self.kind!r}")

    def init(self, params: Sequence[Array]) -> AdamState | None:
        """The optimiser state for ``params``: zero moments for Adam, nothing for gd."""
        if self.kind == "gd":
            return None
        zeros = tuple(np.zeros_like(p) for p in params)
        return AdamState(0, zeros, zeros)

    def update(self, params: Sequence[Array], grads: Sequence[Array],
               state: AdamState | None) -> tuple[Params, AdamState | None]:
        """One step from ``params`` along ``grads``: ``(new params, new state)``."""
        rates = self.learning_rates
        if state is None:
            return tuple(p - s * g for p, s, g in zip(params, rates, grads, strict=True)), None
        b1, b2 = self.beta1, self.beta2
        t = state.steps_taken + 1
        first = tuple(b1 * m + (1 - b1) * g for m, g in zip(state.first, grads, strict=True))
        second = tuple(b2 * v + (1 - b2) * g * g
                       for v, g in zip(state.second, grads, strict=True))
        new = tuple(np.asarray(p - s * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + self.eps))
                    for p, s, m, v in zip(params, rates, first, second, strict=True))
        return new, AdamState(t, first, second)


def hold(stopped: NDArray[np.bool_], old: Sequence[Array], new: Sequence[Array]) -> Params:
    """``new`` with the runs where ``stopped [...]`` is true reset to ``old`` (trailing axes of
    each array broadcast)."""
    return tuple(np.where(stopped.reshape(stopped.shape + (1,) * (n.ndim - stopped.ndim)), o, n)
                 for o, n in zip(old, new, strict=True))


Direction = Callable[[int, Params, Params], Sequence[Array]]


def descend(direction: Direction, coords: Sequence[Array], params: Sequence[Array], steps: int,
            descent: Descent | None, to_params: Callable[[Params], Params],
            sane: Callable[[Params, Params], NDArray[np.bool_]],
            observe: Callable[[int, Params, NDArray[np.bool_]], None] | None = None,
            project: Callable[[Params], Params] | None = None) -> NDArray[np.int64]:
    """Run ``steps`` steps from ``coords`` (whose parameters are ``params``); returns
    ``diverged [...]``.

    Step t: ``g = direction(t, coords, params)``; the new coordinates are
    ``descent.update(coords, g)`` (or ``g`` itself when ``descent`` is None), passed through
    ``project`` when given (a clip to the feasible set); the new parameters
    ``to_params(new coordinates)``. ``sane(params, coords)`` is ``[...]`` bool; runs failing it
    are stopped (module docstring). ``observe(t + 1, params, running)`` is called after every
    step with the mask of runs still going. Floating-point warnings of ``direction``, the
    update, ``project`` and ``to_params`` are silenced: a failing run is stopped instead.
    """
    coords, params = tuple(coords), tuple(params)
    state = None if descent is None else descent.init(coords)
    running = np.ones(sane(params, coords).shape, dtype=bool)
    diverged = np.full(running.shape, -1, dtype=np.int64)
    for t in range(steps):
        with np.errstate(all="ignore"):
            grads = direction(t, coords, params)
            if descent is None:
                new_coords = tuple(grads)
            else:
                new_coords, state = descent.update(coords, grads, state)
            if project is not None:
                new_coords = project(new_coords)
            new_params = to_params(new_coords)
        failed = ~sane(new_params, new_coords)
        if failed.any():
            diverged[failed & running] = t + 1
            running = diverged < 0
        if not running.all():
            stopped = ~running
            new_coords, new_params = (hold(stopped, coords, new_coords),
                                      hold(stopped, params, new_params))
        coords, params = new_coords, new_params
        if observe is not None:
            observe(t + 1, params, running)
    return diverged
