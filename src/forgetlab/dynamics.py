"""Mixture training runs: a method's gradients turned into parameter paths, for [config, seed]
at once, and the exact population flows the theory's predictions speak about. Every run is
driven by the one loop of :mod:`forgetlab.optim`.

Coordinates: the weight is optimised as the logit eta = log(beta / (1 - beta)) (chain rule
dL/deta = beta (1 - beta) dL/dbeta) or as the raw beta (optionally clipped to [c, 1 - c]);
the means as they are. Optimisers, per parameter group g in (weight, mean_old, mean_new) with
learning rate s_g (``[C, 1]``, one per configuration): ``"gd"`` and ``"adam"``
(:class:`forgetlab.optim.Descent`), or ``"em"``: the method's own EM map (learning rates
unused).

Regimes: population (``rng=None``; exact expectations; one deterministic run per
configuration, S = 1) and finite batch (``rng`` a :class:`~forgetlab.methods.base.Streams`).

Divergence: after each step a run whose parameters are non-finite or leave the sane range
(|eta| <= max_logit, or 0 < beta < 1 in raw coordinates; D(m_o, a) and D(m_n, a) <=
max_distance) is stopped: its parameters stay at the last sane values and ``diverged_step``
records the step at which the update failed. Nothing non-finite is ever written.

Flows (:func:`reverse_kl_flow`, :func:`weight_trajectory`): exact population gradient descent
on one objective from a :class:`~forgetlab.mixture.TwoModeMixture`, logit weight clipped to
+-700 (no divergence stop needed: every step stays finite), path returned with time on axis 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, logit

from forgetlab._validation import as_finite
from forgetlab.methods import get_method
from forgetlab.methods.base import Method, Problem, State, StepOutput, Streams
from forgetlab.mixture import MixtureParams, TwoModeMixture, log_odds
from forgetlab.optim import Descent, Params, descend
from forgetlab.population import reverse_kl_gradient
from forgetlab.simconfig import SimulationConfig
from forgetlab.theory.forward_kl import rho
from forgetlab.trajectory import Recorder, Trajectory

Array = NDArray[np.float64]
OPTIMIZERS = ("gd", "adam", "em")
CACHE_ELEMENTS = 16_384  # finite batch: seeds per gradient call ~ this / (B d)
COORDINATES = ("logit", "raw")


@dataclass(frozen=True)
class Optimiser:
    """How gradients become updates. ``learning_rates`` holds one ``[C, 1]`` array (or scalar)
    per parameter group (weight, mean_old, mean_new); the means' rates act on ``[C, S, d]``."""

    kind: str = "gd"
    learning_rates: MixtureParams = MixtureParams(0.1, 0.1, 0.1)  # type: ignore[arg-type]
    coordinate: str = "logit"
    weight_clip: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.kind!r}")
        if self.coordinate not in COORDINATES:
            raise ValueError(f"weight_coordinate must be one of {', '.join(COORDINATES)}, "
                             f"got {self.coordinate!r}")

    def descent(self) -> Descent | None:
        """The stepper for the coordinates (None for EM, whose map gives the next values)."""
        if self.kind == "em":
            return None
        w, m_o, m_n = (np.asarray(lr, dtype=float) for lr in self.learning_rates)
        return Descent((w, m_o[..., None], m_n[..., None]), self.kind, self.adam_beta1,
                       self.adam_beta2, self.adam_eps)


@dataclass(frozen=True)
class Bounds:
    """The sane range; leaving it stops a run as diverged."""

    max_logit: float = 40.0
    max_distance: float = 1e3


def to_coordinates(params: MixtureParams, coordinate: str) -> MixtureParams:
    """(eta or beta, m_o, m_n)."""
    beta = params.weight_old
    w = -log_odds(beta) if coordinate == "logit" else beta
    return MixtureParams(w, params.mean_old, params.mean_new)


def from_coordinates(coords: MixtureParams, coordinate: str, weight_clip: float = 0.0
                     ) -> MixtureParams:
    """(beta, m_o, m_n) from optimiser coordinates (raw weights clipped when asked)."""
    w = coords.weight_old
    if coordinate == "logit":
        w = expit(w)
    elif weight_clip > 0:
        w = np.clip(w, weight_clip, 1.0 - weight_clip)
    return MixtureParams(w, coords.mean_old, coords.mean_new)


def coordinate_gradient(grad: MixtureParams, params: MixtureParams, coordinate: str
                        ) -> MixtureParams:
    """Chain rule to the optimiser coordinates: dL/deta = beta (1 - beta) dL/dbeta."""
    if coordinate == "raw":
        return grad
    beta = params.weight_old
    return MixtureParams(grad.weight_old * beta * (1.0 - beta), grad.mean_old, grad.mean_new)


def sane(params: MixtureParams, coords: MixtureParams, problem: Problem, opt: Optimiser,
         bounds: Bounds) -> NDArray[np.bool_]:
    """``[C, S]`` bool: finite and inside the sane range."""
    ok = np.isfinite(coords.weight_old) & np.isfinite(params.weight_old)
    ok &= np.all(np.isfinite(params.mean_old), axis=-1) & np.all(np.isfinite(params.mean_new),
                                                                 axis=-1)
    if opt.coordinate == "logit":
        ok &= np.abs(np.where(ok, coords.weight_old, 0.0)) <= bounds.max_logit
    else:
        beta = np.where(ok, params.weight_old, 0.5)
        ok &= (beta > 0.0) & (beta < 1.0)
    a = problem.target.mean_old
    safe_o = np.where(ok[..., None], params.mean_old, a)
    safe_n = np.where(ok[..., None], params.mean_new, a)
    ok &= problem.target.factor.distance(safe_o, a) <= bounds.max_distance
    ok &= problem.target.factor.distance(safe_n, a) <= bounds.max_distance
    return ok


def _seed_chunks(n_seeds: int, batch_size: int, dim: int) -> list[slice]:
    """Slices of the seed axis of at most CACHE_ELEMENTS / (B d) seeds (at least one), so that
    the per-sample arrays stay in cache."""
    chunk = max(1, CACHE_ELEMENTS // (batch_size * dim))
    return [slice(lo, lo + chunk) for lo in range(0, n_seeds, chunk)]


def _chunked_gradient(method: Method, problem: Problem, params: MixtureParams, state: State,
                      step: int, rng: Streams | None, chunks: list[slice],
                      pool: ThreadPoolExecutor | None = None) -> StepOutput:
    """``method.gradient`` over the seed slices ``chunks`` (finite batch), shared by the
    threads of ``pool`` when given; every run uses its own generator, so the numbers are those
    of one call. Methods whose state is not shaped ``[C, S, ...]`` are called once."""
    n_seeds = params.weight_old.shape[1]
    if rng is None or len(chunks) == 1 or any(
            np.ndim(v) < 2 or np.shape(v)[1] != n_seeds for v in state.values()):
        return method.gradient(problem, params, state, step, rng)
    streams = rng

    def part(sl: slice) -> StepOutput:
        return method.gradient(problem, MixtureParams(*(x[:, sl] for x in params)),
                               {k: v[:, sl] for k, v in state.items()}, step, streams.take(sl))

    outs = [part(sl) for sl in chunks] if pool is None else list(pool.map(part, chunks))

    def cat(parts: list[Array]) -> Array:
        return np.concatenate(parts, axis=1)

    return StepOutput(MixtureParams(*(cat([o.grad[i] for o in outs]) for i in range(3))),
                      {k: cat([o.state[k] for o in outs]) for k in outs[0].state},
                      {k: cat([o.diagnostics[k] for o in outs]) for k in outs[0].diagnostics})


def run(method: Method, problem: Problem, params0: MixtureParams, steps: int, stride: int,
        opt: Optimiser, rng: Streams | None = None, bounds: Bounds | None = None,
        progress: Callable[[int], None] | None = None, exact_metrics: bool = True,
        threads: int = 1) -> tuple[Recorder, NDArray[np.int64]]:
    """Train ``params0`` (``[C, S]``) for ``steps`` steps; record every ``stride`` steps.

    Returns the filled :class:`~forgetlab.trajectory.Recorder` and ``diverged_step [C, S]``
    (-1 where the run stayed sane). ``progress(t)`` is called after each recorded step;
    ``exact_metrics=False`` skips the engine's misassignments and KLs at the records.
    ``threads > 1`` shares the finite-batch gradients of the cache-sized seed slices among
    that many threads (none when there is one slice: smaller slices cost more than the threads
    gain); the numbers are the same for every ``threads``.
    """
    bounds = bounds or Bounds()
    shape = params0.weight_old.shape
    params = MixtureParams(*(np.array(p, dtype=float) for p in params0))
    state = method.init_state(problem, params)
    diag: dict[str, Array] = {}
    rec = Recorder(shape, problem.dim, steps, stride, exact_metrics)
    chunks = _seed_chunks(shape[1], problem.batch_size, problem.dim)
    parallel = threads > 1 and len(chunks) > 1 and rng is not None
    pool = ThreadPoolExecutor(min(threads, len(chunks))) if parallel else None
    recorded = set(rec.steps.tolist())
    rec.record(problem.learner(params), problem.target)

    def direction(t: int, coords: Params, current: Params) -> Params:
        nonlocal state, diag
        params_t = MixtureParams(*current)
        if opt.kind == "em":
            new_params, state, diag = method.em_update(problem, params_t, state, t, rng)
            return to_coordinates(new_params, opt.coordinate)
        out = _chunked_gradient(method, problem, params_t, state, t, rng, chunks, pool)
        state, diag = out.state, out.diagnostics
        return coordinate_gradient(out.grad, params_t, opt.coordinate)

    def observe(t: int, current: Params, running: NDArray[np.bool_]) -> None:
        learner = problem.learner(MixtureParams(*current))
        rec.observe(learner, problem.target, diag, running)
        if t in recorded:
            rec.record(learner, problem.target)
            if progress is not None:
                progress(t)

    try:
        diverged = descend(
            direction, to_coordinates(params, opt.coordinate), params, steps, opt.descent(),
            lambda c: from_coordinates(MixtureParams(*c), opt.coordinate, opt.weight_clip),
            lambda p, c: sane(MixtureParams(*p), MixtureParams(*c), problem, opt, bounds),
            observe)
    finally:
        if pool is not None:
            pool.shutdown()
    return rec, diverged


SHARED_FIELDS = ("method", "regime", "steps", "stride", "weight_coordinate", "weight_clip",
                 "optimizer", "adam_beta1", "adam_beta2", "adam_eps", "batch_size", "seeds",
                 "max_logit", "max_distance", "exact_metrics")


def batch_key(config: SimulationConfig | Mapping[str, Any]) -> tuple[Any, ...]:
    """Configurations with equal keys can be simulated together in one vectorised batch: the
    fields of ``SHARED_FIELDS``, the dimension and every knob that is not a float. ``config``
    is a :class:`SimulationConfig` or a validated one as data (its JSON dump, or a resolved
    sweep configuration, which leaves ``seeds`` out: None), read without validating again;
    keys are compared within one form."""
    if isinstance(config, Mapping):
        shared = [config.get(f) for f in SHARED_FIELDS]
        method, given, dim = config["method"], config["knobs"], config["problem"]["dim"]
    else:
        shared = [getattr(config, f) for f in SHARED_FIELDS]
        method, given, dim = config.method, config.knobs, config.problem.dim
    knobs = tuple(sorted((k, repr(given.get(k, knob.default)))
                         for k, knob in get_method(method).knobs.items() if knob.kind is not float))
    return (*shared, dim, knobs)


def _batched_method(configs: Sequence[SimulationConfig]) -> Method:
    """One method object for all configurations: float knobs stacked to ``[C]``."""
    values: dict[str, Any] = {}
    for name, knob in configs[0].knob_spec().items():
        per = [c.knobs.get(name, knob.default) for c in configs]
        if knob.kind is float:
            values[name] = np.asarray(per, dtype=float)
        elif any(v != per[0] for v in per[1:]):
            raise ValueError(f"knob '{name}' must be equal across configurations simulated "
                             f"together (only float knobs may differ)")
        else:
            values[name] = per[0]
    return get_method(configs[0].method)(**values)


def _problem(configs: Sequence[SimulationConfig]) -> Problem:
    """Target and initial model of every configuration stacked to batch shape ``[C, 1]``."""
    v = [c.problem.arrays() for c in configs]

    def col(key: str) -> Array:
        return np.stack([np.asarray(x[key], dtype=float) for x in v])[:, None]

    cov = col("cov")
    return Problem(TwoModeMixture(col("alpha"), col("a"), col("b"), cov),
                   TwoModeMixture(col("beta0"), col("a"), col("start"), cov),
                   configs[0].batch_size)


def simulate(config: SimulationConfig | Sequence[SimulationConfig],
             config_ids: Sequence[int] | None = None,
             progress: Callable[[int], None] | None = None, threads: int = 1) -> Trajectory:
    """Run one configuration, or several sharing method, regime, steps and optimiser, in one
    vectorised batch; returns a :class:`~forgetlab.trajectory.Trajectory` ``[C, S, T]``.

    Run (c, s) draws from ``SeedSequence(configs[c].seed, spawn_key=(config_ids[c], s))``
    (``config_ids`` default 0..C-1), so results do not depend on how configurations are
    grouped into batches as long as each keeps its id, nor on ``threads`` (finite batch: the
    seeds' gradients computed in that many threads). Population runs are deterministic and
    have S = 1.
    """
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    configs = [config] if isinstance(config, SimulationConfig) else list(config)
    if not configs:
        raise ValueError("config: give at least one SimulationConfig")
    first = configs[0]
    key = batch_key(first)
    for c in configs[1:]:
        if batch_key(c) != key:
            for name in SHARED_FIELDS:
                if getattr(c, name) != getattr(first, name):
                    raise ValueError(f"{name} must be equal across configurations simulated "
                                     f"together (got {getattr(first, name)!r} and "
                                     f"{getattr(c, name)!r})")
            if c.problem.dim != first.problem.dim:
                raise ValueError("problem.dim must be equal across configurations simulated "
                                 "together")
    ids = list(range(len(configs))) if config_ids is None else [int(i) for i in config_ids]
    if len(ids) != len(configs):
        raise ValueError("config_ids must have one entry per configuration")
    method = _batched_method(configs)
    method.check_regime(first.regime)
    problem = _problem(configs)
    n_seeds = 1 if first.regime == "population" else first.seeds
    shape = (len(configs), n_seeds)
    init = problem.initial
    params0 = MixtureParams(np.broadcast_to(init.weight_old, shape),
                            np.broadcast_to(init.mean_old, (*shape, problem.dim)),
                            np.broadcast_to(init.mean_new, (*shape, problem.dim)))
    rates = MixtureParams(*(np.array([c.learning_rate * getattr(c.lr_scale, g) for c in configs]
                                     )[:, None] for g in ("weight", "mean_old", "mean_new")))
    opt = Optimiser(first.optimizer, rates, first.weight_coordinate, first.weight_clip,
                    first.adam_beta1, first.adam_beta2, first.adam_eps)
    rng = None if first.regime == "population" else Streams([c.seed for c in configs], ids,
                                                             n_seeds)
    rec, diverged = run(method, problem, params0, first.steps, first.stride, opt, rng,
                        Bounds(first.max_logit, first.max_distance), progress,
                        first.exact_metrics, threads)
    return Trajectory(
        steps=rec.steps, weight_old=rec.weight_old, mean_old=rec.mean_old,
        mean_new=rec.mean_new, metrics={**rec.metrics, **rec.diagnostics},
        diverged_step=diverged,
        target_mean_old=problem.target.mean_old[:, :, None, :],
        target_mean_new=problem.target.mean_new[:, :, None, :],
        cov=problem.cov[:, :, None], beta0=init.weight_old[:, 0], alpha=problem.alpha[:, 0],
        configs=configs)


def _clip_logit(coords: Params) -> Params:
    """eta clipped to +-700, so that beta = expit(eta) stays in (0, 1)."""
    return (np.clip(coords[0], -700.0, 700.0), *coords[1:])


def _never_stopped(shape: tuple[int, ...]) -> Callable[[Params, Params], NDArray[np.bool_]]:
    return lambda params, coords: np.ones(shape, dtype=bool)


def reverse_kl_flow(
    learner: TwoModeMixture, target: TwoModeMixture, step_size: float, steps: int
) -> TwoModeMixture:
    """Exact population gradient descent on KL(q || p*): batch ``[steps+1, ...]`` (t on axis 0).

    eta <- eta - s beta (1 - beta) dL/dbeta, m <- m - s Sigma grad_m L (gd on the logit weight
    and Sigma-preconditioned means). Requires s <= 1 for the drift bound's recursion
    (s beta <= 1, :mod:`forgetlab.theory.drift`).
    """
    s = float(as_finite(step_size, "step_size", low=0.0, high=1.0, open_low=True))
    n = int(as_finite(steps, "steps", low=0.0))
    learner.require_learner()
    batch = np.broadcast_shapes(learner.batch_shape, target.batch_shape)
    cov = np.broadcast_to(learner.cov, (*batch, learner.dim, learner.dim))
    coords = (np.broadcast_to(logit(learner.weight_old), batch).copy(),
              np.broadcast_to(learner.mean_old, (*batch, learner.dim)).copy(),
              np.broadcast_to(learner.mean_new, (*batch, learner.dim)).copy())
    path: list[Params] = [(expit(coords[0]), coords[1].copy(), coords[2].copy())]

    def direction(t: int, c: Params, p: Params) -> Params:
        params = MixtureParams(*p)
        grad = coordinate_gradient(reverse_kl_gradient(TwoModeMixture(*params, cov), target),
                                   params, "logit")
        return (grad.weight_old, np.einsum("...ij,...j->...i", cov, grad.mean_old),
                np.einsum("...ij,...j->...i", cov, grad.mean_new))

    descend(direction, coords, path[0], n, Descent((s, s, s)),
            lambda c: (expit(c[0]), c[1], c[2]), _never_stopped(batch),
            lambda t, p, running: path.append(p), _clip_logit)
    weight, mean_old, mean_new = (np.stack(x) for x in zip(*path, strict=True))
    return TwoModeMixture(weight, mean_old, mean_new, cov)


def weight_trajectory(
    learner: TwoModeMixture,
    steps: int,
    step_size: float = 1.0,
    method: Literal["gd", "em"] = "gd",
    new_mean: ArrayLike | None = None,
) -> Array:
    """Exact population weight path beta_t, t = 0..steps, means held fixed: ``[steps+1, ...]``.

    Forward KL on new data N(b, Sigma) (b = ``new_mean``, default m_n;
    :mod:`forgetlab.theory.forward_kl`). gd: eta_{t+1} = eta_t + s (rho(beta_t) - beta_t) (descent
    on -E_{p_new}[log q] in the logit); em: beta_{t+1} = rho(beta_t).
    """
    if method not in ("gd", "em"):
        raise ValueError(f"method must be 'gd' or 'em', got {method!r}")
    n = int(as_finite(steps, "steps", low=0.0))
    s = float(as_finite(step_size, "step_size", low=0.0, open_low=True))
    learner.require_learner()
    coords = (np.broadcast_to(logit(learner.weight_old), learner.batch_shape).copy(),)
    path = [expit(coords[0])]

    def direction(t: int, c: Params, p: Params) -> Params:
        beta = p[0]
        r = rho(learner.with_params(beta, learner.mean_old, learner.mean_new), new_mean)
        return (logit(r),) if method == "em" else (beta - r,)

    descend(direction, coords, (path[0],), n, None if method == "em" else Descent((s,)),
            lambda c: (expit(c[0]),), _never_stopped(learner.batch_shape),
            lambda t, p, running: path.append(p[0]), _clip_logit)
    return np.stack(path)
