"""The interface every post-training method on the mixture implements, and the method registry.

A *method* turns the current learner parameters into the gradient of the loss it minimises.
The training loop (:mod:`forgetlab.dynamics`) owns everything else: coordinates (logit or raw
weight), learning rates, Adam, recording, divergence detection. A method never updates
parameters itself.

Shapes
------
All runs of one simulation are batched as ``[C, S]``: C configurations (same method, same
str/int/bool/object knobs; float knobs, problem and learning rates may differ) times S seeds.

* ``params`` : :class:`~forgetlab.mixture.MixtureParams` with ``weight_old [C, S]`` (beta, the
  raw weight), ``mean_old [C, S, d]`` (m_o), ``mean_new [C, S, d]`` (m_n).
* ``problem`` : :class:`Problem`; its mixtures have batch shape ``[C, 1]`` and broadcast
  against the seeds.
* float knobs : a scalar or one value per configuration; :meth:`Method.knob` returns them
  as ``[C, 1]`` arrays (or scalars), ready to broadcast against ``[C, S]``.

How the loop calls a method
---------------------------
::

    method = make_method("sft", replay="old", replay_fraction=[0.1, 0.3])  # knobs validated
    method.check_regime(regime)
    state = method.init_state(problem, params0)
    for t in range(steps):
        out = method.gradient(problem, params, state, t, rng)  # rng None = population regime
        params = optimiser(params, out.grad)                   # loop-owned
        state = out.state

``gradient`` returns a :class:`StepOutput`: ``grad`` is the gradient of the loss to *minimise*
with respect to the raw parameters ``(beta, m_o, m_n)`` (the loop applies the chain rule for
the logit coordinate itself); ``state`` is the new method state; ``diagnostics`` maps names to
``[C, S]`` arrays that the trajectory records. Two names are understood everywhere:
``"starved"`` (bool: the batch had no old-component draw) and ``"max_weight"`` (largest
importance weight in the batch). A method may add others.

* ``rng is None`` -> population regime: return the exact expected gradient (use
  :mod:`forgetlab.population`; never Monte Carlo).
* ``rng`` is a :class:`Streams` -> finite-batch regime: draw ``problem.batch_size`` samples
  per run with :func:`sample_mixture` / :func:`sample_components` / ``rng.normal`` /
  ``rng.uniform`` and return the estimator's gradient. Never use another source of randomness.

Building blocks: :class:`SampleBatch` evaluates log-densities of mixtures sharing Sigma and weighted
score means (1/n) sum_i c_i grad log q(x_i) from one whitening of the samples (the fast path
for score-function estimators); :func:`batch_mean` does the same from per-sample scores.

How to add a method
-------------------
Create ``src/forgetlab/methods/<name>.py`` (it is discovered automatically, no edit elsewhere)::

    from forgetlab.methods.base import Knob, Method, Problem, StepOutput, register

    @register
    class MyMethod(Method):
        '''One line: the objective, as a formula.'''

        name = "my-method"
        knobs = {"tau": Knob(1.0, "KL coefficient tau > 0", low=0.0, open_low=True),
                 "divergence": Knob("reverse", "which KL", kind=str,
                                    choices=("reverse", "forward"))}
        regimes = ("population", "finite")

        def gradient(self, problem, params, state, step, rng):
            learner = problem.learner(params)
            tau = self.knob("tau")                      # [C, 1] or scalar
            ...
            return StepOutput(grad, state, {})

Keep the arithmetic in small pure module-level functions ``(params, samples, weights) ->
gradient`` and let ``gradient`` wire them; that is what the unbiasedness tests call.

Methods with extra state (EMA teacher, lagged sampler, buffer)
---------------------------------------------------------------
Override :meth:`Method.init_state` to return a dict of arrays with leading axes ``[C, S]``;
``gradient`` receives it and returns the updated dict (never mutate in place). Examples:

* EMA teacher: ``init_state`` returns ``{"teacher_weight": beta, "teacher_mean_old": m_o,
  ...}``; ``gradient`` computes the loss against the teacher, then returns
  ``state = {k: (1 - tau_ema) * state[k] + tau_ema * new_k}``.
* Lagged sampler (sync every L steps): state holds the lagged parameters; at
  ``step % L == 0`` replace them by ``params``; draw samples from the lagged mixture.
* Buffer: state holds ``{"buffer_x": [C, S, K, d], "buffer_r": [C, S, K]}`` updated per step.

Methods with a non-gradient update (EM) also implement :meth:`Method.em_update`, used when
the optimiser is ``"em"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from forgetlab.gaussian import Factorised
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.seeding import collector_paused, spawned_generators
from forgetlab.vocabulary import Knob, validate_knobs

Array = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
State = dict[str, Array]
REGIMES = ("population", "finite")


# -- random streams ---------------------------------------------------------------------------
class Streams:
    """One independent ``numpy.random.Generator`` per run, arranged ``[C, S]``.

    The stream of run (c, s) is ``SeedSequence(entropy[c], spawn_key=(config_id[c], s))``, so
    a run's numbers depend only on its own seed, config id and seed index, never on how many
    other runs share the batch or on their order.
    """

    def __init__(self, entropy: Sequence[int], config_ids: Sequence[int], n_seeds: int) -> None:
        if len(entropy) != len(config_ids):
            raise ValueError("entropy and config_ids must have one entry per configuration")
        if int(n_seeds) != n_seeds or n_seeds < 1:
            raise ValueError(f"seeds must be an integer >= 1, got {n_seeds}")
        self.generators = spawned_generators([int(e) for e in entropy],
                                             [(int(c),) for c in config_ids], int(n_seeds))
        self.shape = (len(self.generators), int(n_seeds))
        self._bind()

    def _bind(self) -> None:
        """The generators' draw methods in run order (c, s), looked up once."""
        flat = [gen for row in self.generators for gen in row]
        with collector_paused():  # hundreds of thousands of bound methods, no cycles
            self._normal = [gen.standard_normal for gen in flat]
            self._uniform = [gen.random for gen in flat]

    def take(self, seeds: slice) -> Streams:
        """The same generators for a slice of the seed axis (they advance together)."""
        out = object.__new__(Streams)
        out.generators = [row[seeds] for row in self.generators]
        out.shape = (self.shape[0], len(out.generators[0]) if out.generators else 0)
        out._bind()
        return out

    def _fill(self, draws: list[Any], tail: tuple[int, ...]) -> Array:
        """One block per run from its own generator, ``[C, S, *tail]``."""
        out = np.empty((len(draws), *tail))
        for draw, row in zip(draws, out, strict=True):
            draw(out=row)
        return out.reshape(*self.shape, *tail)

    def normal(self, *tail: int) -> Array:
        """Standard normals, ``[C, S, *tail]``."""
        return self._fill(self._normal, tail)

    def uniform(self, *tail: int) -> Array:
        """Uniforms on [0, 1), ``[C, S, *tail]``."""
        return self._fill(self._uniform, tail)


def sample_mixture(mix: TwoModeMixture, n: int, rng: Streams) -> tuple[Array, BoolArray]:
    """n draws per run from ``mix`` (batch ``[C, S]`` or ``[C, 1]``): x ``[C, S, n, d]``,
    labels ``[C, S, n]`` (True = old component). Uses one uniform and d normals per draw."""
    is_old = rng.uniform(n) < mix.weight_old[..., None]
    means = np.where(is_old[..., None], mix.mean_old[..., None, :], mix.mean_new[..., None, :])
    noise = rng.normal(n, mix.dim)
    return means + mix.factor.colour(noise), is_old


def sample_components(weights: Array, means: Array, factor: Factorised, n: int, rng: Streams
                      ) -> tuple[Array, Array]:
    """n draws per run from sum_k w_k N(mu_k, Sigma) (weights ``[C, S, K]``, means
    ``[C, S, K, d]``, Sigma = L L^T factorised): x ``[C, S, n, d]`` and component index
    ``[C, S, n]``."""
    cum = np.cumsum(weights, axis=-1)
    u = rng.uniform(n) * cum[..., -1:]
    comp = np.minimum(np.sum(u[..., None] >= cum[..., None, :], axis=-1), weights.shape[-1] - 1)
    mu = np.take_along_axis(means, comp[..., None], axis=-2)
    noise = rng.normal(n, means.shape[-1])
    return mu + factor.colour(noise), comp



class SampleBatch:
    """Samples x ``[C, S, n, d]`` evaluated against mixtures sharing Sigma = L L^T (``factor``,
    e.g. a mixture's :attr:`~forgetlab.mixture.TwoModeMixture.factor`).

    Everything is computed from the whitened z = L^{-1} x, formed once: log phi(x; m) =
    -d/2 log(2 pi) - log|L| - ||z - L^{-1} m||^2 / 2, and score means reduce over samples
    before the small d x d products, e.g.
    (1/n) sum_i c_i r_o(x_i) Sigma^{-1}(x_i - m_o) = L^{-T}[(1/n) sum_i c_i r_o z_i - cbar z_o].
    """

    def __init__(self, x: Array, factor: Factorised) -> None:
        self.x = x
        self.n = x.shape[-2]
        self.chol_inv = factor.chol_inv
        self.z = factor.whiten(x)
        self.log_norm = factor.log_normaliser()[..., None]
        self._log_probs: dict[int, tuple[TwoModeMixture, tuple[Array, Array, Array]]] = {}

    def _white(self, mean: Array) -> Array:
        return np.einsum("...ij,...j->...i", self.chol_inv, mean)

    def log_phi(self, mean: Array) -> Array:
        """log N(x_i; mean, Sigma), ``[C, S, n]``."""
        diff = self.z - self._white(mean)[..., None, :]
        sq = np.square(diff[..., 0]) if diff.shape[-1] == 1 else np.einsum(
            "...i,...i->...", diff, diff)
        return self.log_norm - 0.5 * sq

    def log_prob(self, mix: TwoModeMixture) -> tuple[Array, Array, Array]:
        """(log q, log beta + log phi_o, log(1 - beta) + log phi_n), each ``[C, S, n]``.

        Computed once per mixture object and batch (an estimator usually needs the learner's
        log-density twice: in its signal and in its score means); treat the arrays as read-only.
        """
        hit = self._log_probs.get(id(mix))
        if hit is not None and hit[0] is mix:
            return hit[1]
        with np.errstate(divide="ignore"):
            a_o = np.log(mix.weight_old)[..., None] + self.log_phi(mix.mean_old)
            a_n = np.log1p(-mix.weight_old)[..., None] + self.log_phi(mix.mean_new)
        parts = (np.logaddexp(a_o, a_n), a_o, a_n)
        self._log_probs[id(mix)] = (mix, parts)  # the reference keeps id(mix) unique
        return parts

    def score_mean(self, learner: TwoModeMixture, coef: Array,
                   parts: tuple[Array, Array, Array] | None = None) -> MixtureParams:
        """(1/n) sum_i c_i grad log q(x_i) (raw weight) for a learner with beta in (0, 1);
        ``parts`` reuses :meth:`log_prob`."""
        log_q, a_o, _ = parts if parts is not None else self.log_prob(learner)
        c_o = coef * np.exp(a_o - log_q)
        c_n = coef - c_o
        mean_o, mean_n = c_o.mean(axis=-1), c_n.mean(axis=-1)
        beta = learner.weight_old
        z_o = np.einsum("...n,...nd->...d", c_o, self.z) / self.n
        z_n = np.einsum("...n,...nd->...d", c_n, self.z) / self.n
        v_o = z_o - mean_o[..., None] * self._white(learner.mean_old)
        v_n = z_n - mean_n[..., None] * self._white(learner.mean_new)
        return MixtureParams(mean_o / beta - mean_n / (1.0 - beta),
                             np.einsum("...ji,...j->...i", self.chol_inv, v_o),
                             np.einsum("...ji,...j->...i", self.chol_inv, v_n))

# -- the problem ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """Everything a method may look at besides the learner: target, initial model, data, B.

    ``target`` is p* = alpha N(a, Sigma) + (1 - alpha) N(b, Sigma) and ``initial`` is q_0, both
    with batch shape ``[C, 1]``. Old-task data is N(a, Sigma), new-task data N(b, Sigma).
    ``batch_size`` is B, the number of samples per run and step in the finite-batch regime.
    """

    target: TwoModeMixture
    initial: TwoModeMixture
    batch_size: int = 1

    def __post_init__(self) -> None:
        if int(self.batch_size) != self.batch_size or self.batch_size <= 0:
            raise ValueError(f"batch_size must be an integer > 0, got {self.batch_size}")

    @property
    def cov(self) -> Array:
        """Sigma, ``[C, 1, d, d]``."""
        return self.target.cov

    @property
    def dim(self) -> int:
        """d."""
        return self.target.dim

    @property
    def alpha(self) -> Array:
        """Target old weight alpha, ``[C, 1]``."""
        return self.target.weight_old

    @property
    def old_data(self) -> TwoModeMixture:
        """p_old = N(a, Sigma) as a mixture with weight 1 on the old component."""
        a = self.target.mean_old
        return TwoModeMixture(np.ones(a.shape[:-1]), a, a, self.cov)

    @property
    def new_data(self) -> TwoModeMixture:
        """p_new = N(b, Sigma) as a mixture with weight 0 on the old component."""
        b = self.target.mean_new
        return TwoModeMixture(np.zeros(b.shape[:-1]), b, b, self.cov)

    def learner(self, params: MixtureParams) -> TwoModeMixture:
        """The learner q_theta for ``params`` with the problem's covariance."""
        return TwoModeMixture(*params, self.target.factor)


# -- outputs and parameter arithmetic ---------------------------------------------------------
class StepOutput(NamedTuple):
    """What :meth:`Method.gradient` returns: raw-coordinate gradient of the loss, new state,
    diagnostics (name -> ``[C, S]`` array)."""

    grad: MixtureParams
    state: State
    diagnostics: dict[str, Array]


def batch_mean(per_sample: MixtureParams, weights: Array) -> MixtureParams:
    """(1/n) sum_i w_i g_i over the sample axis: weights ``[C, S, n]``, scores per sample."""
    n = weights.shape[-1]
    return MixtureParams(
        np.einsum("...n,...n->...", weights, per_sample.weight_old) / n,
        np.einsum("...n,...nd->...d", weights, per_sample.mean_old) / n,
        np.einsum("...n,...nd->...d", weights, per_sample.mean_new) / n,
    )


# -- knobs and methods ------------------------------------------------------------------------
class Method:
    """Base class of a post-training method; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    knobs: ClassVar[Mapping[str, Knob]] = {}
    regimes: ClassVar[tuple[str, ...]] = REGIMES

    def __init__(self, **values: Any) -> None:
        self.values = validate_knobs(self.name, self.knobs, values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.values})"

    def knob(self, name: str) -> Any:
        """A knob's value; numeric ones as scalars or ``[C, 1]`` arrays (broadcast over seeds)."""
        value = self.values[name]
        if isinstance(value, np.ndarray):
            return value[:, None] if value.ndim == 1 else value[()]
        return value

    def check_regime(self, regime: str) -> None:
        """ValueError unless this method runs in ``regime``."""
        if regime not in self.regimes:
            raise ValueError(f"regime must be one of {', '.join(self.regimes)} for method "
                             f"'{self.name}', got '{regime}'")

    def init_state(self, problem: Problem, params: MixtureParams) -> State:
        """Extra per-run state (dict of ``[C, S, ...]`` arrays); none by default."""
        return {}

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Gradient of the loss to minimise w.r.t. raw (beta, m_o, m_n); rng None = population."""
        raise NotImplementedError

    def em_update(self, problem: Problem, params: MixtureParams, state: State, step: int,
                  rng: Streams | None) -> tuple[MixtureParams, State, dict[str, Array]]:
        """One EM step (new parameters, state, diagnostics), for the ``"em"`` optimiser."""
        raise ValueError(f"optimizer 'em' is not available for method '{self.name}' "
                         f"(allowed: gd, adam)")


# -- registry ---------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available under ``cls.name``, a name of the method table
    (:mod:`forgetlab.vocabulary`) or a new one."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name '{cls.name}' is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> dict[str, type[Method]]:
    """The registry as it stands (use :func:`forgetlab.methods.get_method` to look names up)."""
    return dict(_REGISTRY)

