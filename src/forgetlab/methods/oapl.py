"""OAPL: off-policy regression to the tilt of a lagged sampler (C8).

A lagged sampler q_lag is replaced by the current learner at every step t with t % L == 0
(L = ``lag``); between synchronisations all draws come from q_lag (the buffer of the period:
it is cleared at each sync because the sampler changes). Per group of G draws y_i ~ q_lag:

  loss = sum_i (tau_r log(q(y_i) / q_lag(y_i)) - (r(y_i) - V_hat))^2,
  V_hat = tau_v log mean_i exp(r(y_i) / tau_v),

with tau_v = ``tau_value`` and tau_r = ``tau_ratio`` (the public code's beta1 and beta2; equal
by default, and the single knob ``tau`` sets both), no importance ratio, no clipping. Gradient
(mean over the B = n_groups G draws): (2 tau_r / B) sum_i (tau_r l_i - r_i + V_hat)
grad log q(y_i), l = log q - log q_lag.

Population optimum within a period, with the exact V = tau_v log E_{q_lag}[e^{r / tau_v}]:
minimising E_{q_lag}[rho^2], rho = tau_r log(q / q_lag) - r + V, over normalised q (a Lagrange
multiplier for sum q = 1) gives, pointwise,

  rho(y) = c q(y) / q_lag(y)   for one constant c = E_{q_lag}[rho]:

the residual is proportional to the likelihood ratio, and q / q_lag depends on y through r(y)
alone. If tau_v = tau_r = tau, c = 0 and q = q_lag e^{r / tau} / Z: each synchronisation is one
tilt with exponent 1 / tau (:mod:`forgetlab.theory.near_policy`). If tau_v != tau_r the level
V no longer matches the normaliser (tau log E e^{r / tau} decreases strictly with tau for a
non-constant r), c != 0 and the optimum is not the tilt with exponent 1 / tau_r. For a 0/1
reward every such q is still a tilt q_lag e^{kappa r} / Z; with P = P_{q_lag}(r = 1) the
condition rho(1) = e^kappa rho(0) reads

  tau_r kappa - 1 = (V - tau_r log(1 - P + P e^kappa)) (e^kappa - 1),

solved by :func:`~forgetlab.theory.near_policy.oapl_tilt_exponent`: kappa > 1 / tau_r when
tau_v < tau_r (V above the normaliser), kappa < 1 / tau_r when tau_v > tau_r (the public script's
beta2 = 0.001 < beta1 = 1 gives kappa = 417 at P = 0.3, against 1 / beta2 = 1000).
V_hat is a biased estimate of V for finite G (Jensen: E[V_hat] <= V), which shifts the finite-G
fixed point by O(1 / G).
There is no exact population form: the loss needs E_{q_lag}[(log q)^2]-type integrals of
a mixture's log-density against a reward (0/1 on a ball: a two-dimensional integral), so OAPL
is finite-batch only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from forgetlab.methods.base import (
    Array,
    Method,
    Problem,
    State,
    StepOutput,
    Streams,
    batch_mean,
    register,
    sample_mixture,
)
from forgetlab.methods.rewards import reward_of
from forgetlab.methods.rl import per_sample
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for

_LAG_KEYS = ("lag_weight", "lag_mean_old", "lag_mean_new")


def group_value(rewards: Array, tau: Array | float) -> Array:
    """V_hat = tau log mean_i exp(r_i / tau) over the last axis (log-sum-exp), ``[...]``."""
    t = np.asarray(tau, dtype=float)
    k = rewards.shape[-1]
    return t * (logsumexp(rewards / t[..., None], axis=-1) - np.log(k))


def oapl_residuals(log_q: Array, log_lag: Array, rewards: Array, tau_ratio: Array | float,
                   value: Array) -> Array:
    """tau_r (log q - log q_lag) - (r - V) per draw; ``value`` broadcasts against the draws."""
    t = np.asarray(tau_ratio, dtype=float)[..., None]
    return t * (log_q - log_lag) - (rewards - value)


def oapl_gradient(learner: TwoModeMixture, lagged: TwoModeMixture, x: Array, rewards: Array,
                  tau_value: Array | float, tau_ratio: Array | float, group_size: int
                  ) -> tuple[MixtureParams, Array]:
    """Gradient of the mean OAPL loss over draws x ``[..., B, d]`` from q_lag (raw coordinates),
    and the residuals ``[..., B]``; groups are consecutive blocks of ``group_size`` draws."""
    n = x.shape[-2]
    if n % group_size:
        raise ValueError(f"group_size ({group_size}) must divide batch_size ({n})")
    shape = rewards.shape[:-1]
    t_v = np.asarray(tau_value, dtype=float)
    t_r = np.asarray(tau_ratio, dtype=float)
    groups = rewards.reshape(*shape, n // group_size, group_size)
    value = np.repeat(group_value(groups, t_v[..., None]), group_size, axis=-1)
    res = oapl_residuals(learner.log_prob(x), lagged.log_prob(x), rewards, t_r, value)
    g = batch_mean(learner.scores(x), 2.0 * t_r[..., None] * res)
    return g, res


@register
class OAPL(Method):
    """sum_i (tau_r log(q/q_lag)(y_i) - r(y_i) + V_hat)^2 on draws of a sampler synced every L."""

    name = "oapl"
    regimes = ("finite",)
    knobs = knobs_for("oapl", "mixture")

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.reward = reward_of(self)

    def init_state(self, problem: Problem, params: MixtureParams) -> State:
        """The lagged sampler starts at the initial learner."""
        return {k: np.array(v, dtype=float) for k, v in zip(_LAG_KEYS, params, strict=True)}

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Sync the sampler when step % L == 0, then the OAPL gradient on B draws from it."""
        if rng is None:
            raise ValueError("method 'oapl' has no population regime; use regime='finite'")
        if step % int(self.knob("lag")) == 0:
            state = {k: np.array(v, dtype=float) for k, v in zip(_LAG_KEYS, params, strict=True)}
        lagged = problem.learner(MixtureParams(*(state[k] for k in _LAG_KEYS)))
        learner = problem.learner(params)
        x, is_old = sample_mixture(lagged, problem.batch_size, rng)
        g, res = oapl_gradient(learner, lagged, x, self.reward(problem, x),
                               per_sample(self.knob("tau_value"))[..., 0],
                               per_sample(self.knob("tau_ratio"))[..., 0],
                               int(self.knob("group_size")))
        return StepOutput(g, state, {"starved": ~np.any(is_old, axis=-1),
                                     "max_residual": np.max(np.abs(res), axis=-1)})
