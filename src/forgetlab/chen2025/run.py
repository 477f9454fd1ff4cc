"""Runs of the Chen et al. (2025) toy: its presets trained, and Drop and Gain read from them.

A run trains S independent seeds at once: parameters ``[S, P]``, standard normals ``[S, n]`` per
step, one ``numpy.random.Generator`` per seed spawned from ``SeedSequence(seed)``, so seed s
gives the same trajectory whatever the number of seeds.  Each step is projected gradient
descent, theta <- clip(theta - lr * grad), with the old component's rate times 0.005, run by the
one loop of :mod:`forgetlab.optim`.  A seed whose update is not finite is stopped: frozen at
its last finite parameters from then on, and reported in ``diverged_step``.

The summary reads the seed-mean curves at the first step where the mean Gain >= 0.9 (the
paper's reading point) and gives the standard error of Drop and Gain across seeds there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from forgetlab._validation import as_count, as_finite
from forgetlab.chen2025 import exact, model
from forgetlab.chen2025.overlap import grid_for, grid_overlap_accuracy
from forgetlab.chen2025.preset import DEFAULT_SEEDS, PRESETS, paper_settings
from forgetlab.optim import Descent, Direction, Params, descend
from forgetlab.parallel import available_cores, thread_map

Array = NDArray[np.float64]
Grad = Callable[[Array, Array], Array]
_T = TypeVar("_T")

VARIANTS = ("two-mode", "single-mode")
METHODS = ("forward_kl", "reverse_kl", "exact_reverse_kl")
GAIN_THRESHOLD = 0.9
NOISE_BLOCK = 8
SEED_BLOCK = 32


#: (variant, method, floors) -> finite-batch gradient.  Single-mode forward KL never uses the
#: floored density, so both entries are the same function.
_FINITE_GRADS: dict[tuple[str, str, bool], Grad] = {
    ("two-mode", "forward_kl", False): model.forward_kl_grad_two_mode,
    ("two-mode", "reverse_kl", False): model.reverse_kl_grad_two_mode,
    ("single-mode", "forward_kl", False): model.forward_kl_grad_single_mode,
    ("single-mode", "reverse_kl", False): model.reverse_kl_grad_single_mode,
    ("two-mode", "forward_kl", True): model.forward_kl_grad_two_mode_floored,
    ("two-mode", "reverse_kl", True): model.reverse_kl_grad_two_mode_floored,
    ("single-mode", "forward_kl", True): model.forward_kl_grad_single_mode,
    ("single-mode", "reverse_kl", True): model.reverse_kl_grad_single_mode_floored,
}


@dataclass(frozen=True)
class ChenSummary:
    """Drop and Gain of the seed-mean curves at ``stop_step`` (the first step with Gain >= 0.9;
    ``None`` when never reached, and then Drop and Gain are read at the last step)."""

    stop_step: int | None
    drop: float
    gain: float
    drop_se: float
    gain_se: float
    seeds: int
    diverged: int


@dataclass(frozen=True)
class ChenResult:
    """Trajectories of one (variant, method, learning rate) run over S seeds.

    ``params [S, T+1, P]`` (names in ``param_names``), ``acc_old`` and ``acc_new [S, T+1]``,
    ``diverged_step [S]`` (-1 for seeds that never diverged).
    """

    variant: str
    method: str
    learning_rate: float
    samples: int
    seed: int
    param_names: tuple[str, ...]
    params: Array
    acc_old: Array
    acc_new: Array
    diverged_step: NDArray[np.int64]
    floors: bool = False

    @property
    def drop(self) -> Array:
        """acc_old(0) - acc_old(t), ``[S, T+1]``."""
        return self.acc_old[:, :1] - self.acc_old

    @property
    def gain(self) -> Array:
        """acc_new(t) - acc_new(0), ``[S, T+1]``."""
        return self.acc_new - self.acc_new[:, :1]

    def summary(self, threshold: float = GAIN_THRESHOLD) -> ChenSummary:
        """Seed-mean Drop and Gain at the first step where the seed-mean Gain >= ``threshold``."""
        gain, drop = self.gain, self.drop
        reached = np.flatnonzero(gain.mean(axis=0) >= threshold)
        stop = int(reached[0]) if reached.size else None
        at = stop if stop is not None else gain.shape[1] - 1
        n = gain.shape[0]

        def se(v: Array) -> float:
            return float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0

        return ChenSummary(
            stop_step=stop,
            drop=float(drop[:, at].mean()),
            gain=float(gain[:, at].mean()),
            drop_se=se(drop[:, at]),
            gain_se=se(gain[:, at]),
            seeds=n,
            diverged=int((self.diverged_step >= 0).sum()),
        )


def _noise_blocks(gens: list[np.random.Generator], steps: int, samples: int) -> Iterator[Array]:
    """Standard normals ``[S, k, n]`` for up to NOISE_BLOCK steps at a time, one stream per seed."""
    buf = np.empty((len(gens), NOISE_BLOCK, samples))
    for start in range(0, steps, NOISE_BLOCK):
        k = min(NOISE_BLOCK, steps - start)
        for s, gen in enumerate(gens):
            gen.standard_normal(out=buf[s, :k])
        yield buf[:, :k]


def _train_serial(
    grad: Grad, init: Array, lr: float, gens: list[np.random.Generator], steps: int, samples: int
) -> tuple[Array, NDArray[np.int64]]:
    """:func:`train` in this thread, SEED_BLOCK seeds at a time (per-step arrays of that many
    seeds stay in cache; seeds are independent, so the numbers do not depend on it)."""
    n_seeds = len(gens)
    traj = np.empty((n_seeds, steps + 1, init.size))
    diverged = np.full(n_seeds, -1, dtype=np.int64)
    for lo in range(0, n_seeds, SEED_BLOCK):
        hi = min(n_seeds, lo + SEED_BLOCK)
        _train_block(grad, init, lr, gens[lo:hi], samples, traj[lo:hi], diverged[lo:hi])
    return traj, diverged


def _train_block(
    grad: Grad,
    init: Array,
    lr: float,
    gens: list[np.random.Generator],
    samples: int,
    traj: Array,
    diverged: NDArray[np.int64],
) -> None:
    """Projected descent for the seeds of ``gens``, written into ``traj [S, T+1, P]`` and
    ``diverged [S]``."""
    theta = np.tile(init, (len(gens), 1))
    traj[:, 0] = theta
    blocks = _noise_blocks(gens, traj.shape[1] - 1, samples)
    block = np.empty((len(gens), 0, samples))

    def direction(t: int, coords: Params, params: Params) -> Params:
        nonlocal block
        if t % NOISE_BLOCK == 0:
            block = next(blocks)
        return (grad(params[0], block[:, t % NOISE_BLOCK]),)

    def observe(t: int, params: Params, running: NDArray[np.bool_]) -> None:
        traj[:, t] = params[0]

    diverged[:] = _descend(direction, theta, traj.shape[1] - 1, lr, observe)


def _descend(direction: Direction, theta: Array, steps: int, lr: float,
             observe: Callable[[int, Params, NDArray[np.bool_]], None]) -> NDArray[np.int64]:
    """Projected gradient descent theta <- project(theta - lr_k grad) from ``theta [S, P]``,
    a seed stopped when its parameters stop being finite: ``diverged [S]``."""
    return descend(direction, (theta,), (theta,), steps,
                   Descent((model.learning_rates(lr, theta.shape[-1]),)), tuple,
                   lambda p, c: np.asarray(np.isfinite(p[0]).all(axis=-1)), observe,
                   lambda c: (model.project(c[0]),))


def train(
    grad: Grad,
    init: Array,
    lr: float,
    gens: list[np.random.Generator],
    steps: int,
    samples: int,
    workers: int = 1,
) -> tuple[Array, NDArray[np.int64]]:
    """Projected gradient descent for every seed at once: ``(params [S, T+1, P], diverged [S])``.

    ``workers > 1`` splits the seeds into that many contiguous groups run in threads (numpy
    releases the GIL in its array loops and samplers); seeds are independent, so the numbers
    are identical for every ``workers``.
    """
    parts = _in_threads(
        lambda g: _train_serial(grad, init, lr, [gens[i] for i in g], steps, samples),
        len(gens),
        workers,
    )
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _in_threads(work: Callable[[NDArray[np.int64]], _T], n_seeds: int, workers: int) -> list[_T]:
    """``work(group)`` for ``workers`` contiguous groups of seed indices, in threads, in order."""
    groups = [g for g in np.array_split(np.arange(n_seeds), max(1, workers)) if g.size]
    return thread_map(work, groups, workers)


def _train_exact(init: Array, lr: float, steps: int) -> tuple[Array, NDArray[np.int64]]:
    """Deterministic descent on the exact KL(q || p): ``([T+1, 5], diverged [1])``."""
    traj = np.empty((steps + 1, init.size))
    traj[0] = init

    def observe(t: int, params: Params, running: NDArray[np.bool_]) -> None:
        traj[t] = params[0][0]

    diverged = _descend(lambda t, c, p: (exact.reverse_kl_grad_two_mode(p[0]),),
                        init[None].copy(), steps, lr, observe)
    return traj, diverged


def run_chen2025(
    variant: str = "two-mode",
    method: str = "forward_kl",
    learning_rate: float | None = None,
    steps: int | None = None,
    seeds: int = DEFAULT_SEEDS,
    seed: int = 0,
    samples: int = 1000,
    workers: int | None = None,
    floors: bool = True,
) -> ChenResult:
    """Train the Chen et al. learner and record its overlap metrics at every step.

    ``variant``: "two-mode" or "single-mode"; ``method``: "forward_kl" (SFT on the new mode),
    "reverse_kl" (their RL estimator) or "exact_reverse_kl" (descent on the exact KL(q || p),
    two-mode only; deterministic, identical for every seed).  ``learning_rate`` and ``steps``
    default to the paper's (:func:`~forgetlab.chen2025.preset.paper_settings`).  ``seeds``
    independent runs of ``samples`` draws per step, generators spawned from
    ``SeedSequence(seed)``; ``workers`` threads share the seeds and the overlap metric (same
    numbers for any value; default: the available cores).
    ``floors=True`` is the published arithmetic (the 1e-12 floors of
    :mod:`forgetlab.chen2025.model`, the trapezoid rule in the overlap metric); ``False`` drops
    the floors and sums the metric's grid (the ``-clean`` presets).  The exact reverse KL has no
    floors; for it ``floors`` selects only the metric's rule.

    >>> run_chen2025("two-mode", "reverse_kl", seeds=4).summary().stop_step is not None
    True
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "exact_reverse_kl" and variant != "two-mode":
        raise ValueError("method 'exact_reverse_kl' is defined for variant 'two-mode' only")
    paper_lr, paper_steps = paper_settings(variant, method)
    lr = paper_lr if learning_rate is None else learning_rate
    lr = float(as_finite(lr, "learning_rate", low=0.0, open_low=True))
    steps = as_count(paper_steps if steps is None else steps, "steps", 1)
    seeds = as_count(seeds, "seeds", 1)
    seed = as_count(seed, "seed", 0)
    samples = as_count(samples, "samples", 1)
    workers = available_cores() if workers is None else as_count(workers, "workers", 1)
    two = variant == "two-mode"
    init = np.array(model.INIT_TWO_MODE if two else model.INIT_SINGLE_MODE)
    grid = grid_for(init.size)
    if method == "exact_reverse_kl":
        traj, stopped = _train_exact(init, lr, steps)
        acc = grid_overlap_accuracy(traj, grid, trapezoid=floors)
        params = np.broadcast_to(traj, (seeds, steps + 1, 5)).copy()
        acc_old, acc_new = (np.broadcast_to(a, (seeds, steps + 1)).copy() for a in acc)
        diverged = np.broadcast_to(stopped, seeds).copy()
    else:
        gens = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(seeds)]
        grad = _FINITE_GRADS[variant, method, floors]

        def work(group: NDArray[np.int64]) -> tuple[Array, NDArray[np.int64], Array, Array]:
            p, div = _train_serial(grad, init, lr, [gens[i] for i in group], steps, samples)
            return (p, div, *grid_overlap_accuracy(p, grid, trapezoid=floors))

        parts = _in_threads(work, seeds, workers)
        params, diverged, acc_old, acc_new = (
            np.concatenate([p[k] for p in parts]) for k in range(4)
        )
    return ChenResult(
        variant=variant,
        method=method,
        learning_rate=lr,
        samples=samples,
        seed=seed,
        param_names=model.TWO_MODE_NAMES if two else model.SINGLE_MODE_NAMES,
        params=params,
        acc_old=acc_old,
        acc_new=acc_new,
        diverged_step=diverged,
        floors=floors,
    )


def run_preset(
    preset: str,
    seeds: int = DEFAULT_SEEDS,
    seed: int = 0,
    steps: int | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ChenResult]:
    """One :class:`ChenResult` per (method, learning rate) of the paper's settings for ``preset``
    (a key of :data:`PRESETS`); ``steps`` overrides the paper's count.  ``progress(k)`` is
    called after the k-th run."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    steps = p.steps if steps is None else steps
    out = []
    for m, lr in p.runs:
        out.append(run_chen2025(p.variant, m, lr, steps, seeds, seed, workers=workers,
                                floors=p.floors))
        if progress is not None:
            progress(len(out))
    return out
