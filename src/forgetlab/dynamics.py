"""The training loop: a method's gradients turned into parameter paths, for [config, seed] at once.

Coordinates: the weight is optimised as the logit eta = log(beta / (1 - beta)) (chain rule
dL/deta = beta (1 - beta) dL/dbeta) or as the raw beta (optionally clipped to [c, 1 - c]);
the means as they are. Optimisers, per parameter group g in (weight, mean_old, mean_new) with
learning rate s_g (``[C, 1]``, one per configuration):

* ``"gd"``: theta_g <- theta_g - s_g grad_g;
* ``"adam"``: m <- b1 m + (1 - b1) grad, v <- b2 v + (1 - b2) grad^2,
  theta <- theta - s m_hat / (sqrt(v_hat) + eps) with bias-corrected m_hat, v_hat;
* ``"em"``: the method's own EM map (learning rates unused).

Regimes: population (``rng=None``; exact expectations; one deterministic run per
configuration, S = 1) and finite batch (``rng`` a :class:`~forgetlab.methods.base.Streams`).

Divergence: after each step a run whose parameters are non-finite or leave the sane range
(|eta| <= max_logit, or 0 < beta < 1 in raw coordinates; D(m_o, a) and D(m_n, a) <=
max_distance) is stopped: its parameters stay at the last sane values and ``diverged_step``
records the step at which the update failed. Nothing non-finite is ever written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from forgetlab.methods import get_method
from forgetlab.methods.base import Method, Problem, State, StepOutput, Streams
from forgetlab.metrics import distance
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig
from forgetlab.trajectory import Recorder, Trajectory

Array = NDArray[np.float64]
OPTIMIZERS = ("gd", "adam", "em")
CACHE_ELEMENTS = 16_384  # finite batch: seeds per gradient call ~ this / (B d)
COORDINATES = ("logit", "raw")


@dataclass(frozen=True)
class Optimiser:
    """How gradients become updates. ``learning_rates`` holds one ``[C, 1]`` array (or scalar)
    per parameter group (weight, mean_old, mean_new)."""

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


@dataclass(frozen=True)
class Bounds:
    """The sane range; leaving it stops a run as diverged."""

    max_logit: float = 40.0
    max_distance: float = 1e3


def to_coordinates(params: MixtureParams, coordinate: str) -> MixtureParams:
    """(eta or beta, m_o, m_n)."""
    beta = params.weight_old
    w = np.log(beta) - np.log1p(-beta) if coordinate == "logit" else beta
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


class _Stepper:
    """Applies gd or Adam to coordinates, keeping Adam's moments."""

    def __init__(self, opt: Optimiser, coords: MixtureParams) -> None:
        self.opt = opt
        self.m = [np.zeros_like(c) for c in coords]
        self.v = [np.zeros_like(c) for c in coords]
        self.t = 0

    def __call__(self, coords: MixtureParams, grad: MixtureParams) -> MixtureParams:
        lrs = [np.asarray(lr, dtype=float) for lr in self.opt.learning_rates]
        lrs = [lrs[0], *(lr[..., None] for lr in lrs[1:])]
        if self.opt.kind == "gd":
            return MixtureParams(*(c - lr * g for c, lr, g in zip(coords, lrs, grad, strict=True)))
        self.t += 1
        b1, b2, eps = self.opt.adam_beta1, self.opt.adam_beta2, self.opt.adam_eps
        out = []
        for i, (c, lr, g) in enumerate(zip(coords, lrs, grad, strict=True)):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat = self.m[i] / (1 - b1**self.t)
            v_hat = self.v[i] / (1 - b2**self.t)
            out.append(c - lr * m_hat / (np.sqrt(v_hat) + eps))
        return MixtureParams(*out)


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
    ok &= distance(problem.target, safe_o, a) <= bounds.max_distance
    ok &= distance(problem.target, safe_n, a) <= bounds.max_distance
    return ok


def _chunked_gradient(method: Method, problem: Problem, params: MixtureParams, state: State,
                      step: int, rng: Streams | None, chunk: int) -> StepOutput:
    """``method.gradient`` over slices of at most ``chunk`` seeds (finite batch), so that the
    per-sample arrays stay in cache; every run uses its own generator, so the numbers are those
    of one call. Methods whose state is not shaped ``[C, S, ...]`` are called once."""
    n_seeds = params.weight_old.shape[1]
    if rng is None or n_seeds <= chunk or any(
            np.ndim(v) < 2 or np.shape(v)[1] != n_seeds for v in state.values()):
        return method.gradient(problem, params, state, step, rng)
    outs = []
    for lo in range(0, n_seeds, chunk):
        sl = slice(lo, lo + chunk)
        outs.append(method.gradient(problem, MixtureParams(*(x[:, sl] for x in params)),
                                    {k: v[:, sl] for k, v in state.items()}, step,
                                    rng.take(sl)))

    def cat(parts: list[Array]) -> Array:
        return np.concatenate(parts, axis=1)

    return StepOutput(MixtureParams(*(cat([o.grad[i] for o in outs]) for i in range(3))),
                      {k: cat([o.state[k] for o in outs]) for k in outs[0].state},
                      {k: cat([o.diagnostics[k] for o in outs]) for k in outs[0].diagnostics})


def _select(mask: Array, new: MixtureParams, old: MixtureParams) -> MixtureParams:
    return MixtureParams(np.where(mask, new.weight_old, old.weight_old),
                         np.where(mask[..., None], new.mean_old, old.mean_old),
                         np.where(mask[..., None], new.mean_new, old.mean_new))


def run(method: Method, problem: Problem, params0: MixtureParams, steps: int, stride: int,
        opt: Optimiser, rng: Streams | None = None, bounds: Bounds | None = None,
        progress: Callable[[int], None] | None = None, exact_metrics: bool = True
        ) -> tuple[Recorder, Array]:
    """Train ``params0`` (``[C, S]``) for ``steps`` steps; record every ``stride`` steps.

    Returns the filled :class:`~forgetlab.trajectory.Recorder` and ``diverged_step [C, S]``
    (-1 where the run stayed sane). ``progress(t)`` is called after each recorded step;
    ``exact_metrics=False`` skips the engine's misassignments and KLs at the records.
    """
    bounds = bounds or Bounds()
    shape = params0.weight_old.shape
    params = MixtureParams(*(np.array(p, dtype=float) for p in params0))
    coords = to_coordinates(params, opt.coordinate)
    stepper = _Stepper(opt, coords)
    state = method.init_state(problem, params)
    rec = Recorder(shape, problem.dim, steps, stride, exact_metrics)
    chunk = max(1, CACHE_ELEMENTS // (problem.batch_size * problem.dim))
    recorded = set(rec.steps.tolist())
    rec.record(problem.learner(params), problem.target)
    active = np.ones(shape, dtype=bool)
    diverged = np.full(shape, -1, dtype=int)
    for t in range(steps):
        with np.errstate(all="ignore"):
            if opt.kind == "em":
                new_params, state, diag = method.em_update(problem, params, state, t, rng)
                new_coords = to_coordinates(new_params, opt.coordinate)
            else:
                out = _chunked_gradient(method, problem, params, state, t, rng, chunk)
                state, diag = out.state, out.diagnostics
                grad = coordinate_gradient(out.grad, params, opt.coordinate)
                new_coords = stepper(coords, grad)
                new_params = from_coordinates(new_coords, opt.coordinate, opt.weight_clip)
        ok = sane(new_params, new_coords, problem, opt, bounds)
        failed = active & ~ok
        diverged[failed] = t + 1
        active &= ok
        params = _select(active, new_params, params)
        coords = _select(active, new_coords, coords)
        learner = problem.learner(params)
        rec.observe(learner, problem.target, diag, active)
        if t + 1 in recorded:
            rec.record(learner, problem.target)
            if progress is not None:
                progress(t + 1)
    return rec, diverged


SHARED_FIELDS = ("method", "regime", "steps", "stride", "weight_coordinate", "weight_clip",
                 "optimizer", "adam_beta1", "adam_beta2", "adam_eps", "batch_size", "seeds",
                 "max_logit", "max_distance", "exact_metrics")


def batch_key(config: SimulationConfig) -> tuple[Any, ...]:
    """Configurations with equal keys can be simulated together in one vectorised batch: the
    fields of ``SHARED_FIELDS``, the dimension and every knob that is not a float."""
    spec = config.knob_spec()
    knobs = tuple(sorted((k, repr(config.knobs.get(k, knob.default)))
                         for k, knob in spec.items() if knob.kind is not float))
    return (*(getattr(config, f) for f in SHARED_FIELDS), config.problem.dim, knobs)


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
             progress: Callable[[int], None] | None = None) -> Trajectory:
    """Run one configuration, or several sharing method, regime, steps and optimiser, in one
    vectorised batch; returns a :class:`~forgetlab.trajectory.Trajectory` ``[C, S, T]``.

    Run (c, s) draws from ``SeedSequence(configs[c].seed, spawn_key=(config_ids[c], s))``
    (``config_ids`` default 0..C-1), so results do not depend on how configurations are
    grouped into batches as long as each keeps its id. Population runs are deterministic and
    have S = 1.
    """
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
                        first.exact_metrics)
    return Trajectory(
        steps=rec.steps, weight_old=rec.weight_old, mean_old=rec.mean_old,
        mean_new=rec.mean_new, metrics={**rec.metrics, **rec.diagnostics},
        diverged_step=diverged,
        target_mean_old=problem.target.mean_old[:, :, None, :],
        target_mean_new=problem.target.mean_new[:, :, None, :],
        cov=problem.cov[:, :, None], beta0=init.weight_old[:, 0], alpha=problem.alpha[:, 0],
        configs=configs)
