"""OAPL: off-policy regression to the tilt of a lagged sampler (C8).

A lagged sampler q_lag is replaced by the current learner at every step t with t % L == 0
(L = ``lag``); between synchronisations all draws come from q_lag (the buffer of the period:
it is cleared at each sync because the sampler changes). Per group of G draws y_i ~ q_lag:

  loss = sum_i (tau log(q(y_i) / q_lag(y_i)) - (r(y_i) - V_hat))^2,
  V_hat = tau log mean_i exp(r(y_i) / tau),

no importance ratio, no clipping. Gradient (mean over the B = n_groups G draws):
(2 tau / B) sum_i (tau l_i - r_i + V_hat) grad log q(y_i), l = log q - log q_lag.

Population optimum within a period: with the exact V = tau log E_{q_lag}[e^{r / tau}] the
residual vanishes identically at q = q_lag e^{r / tau} / Z, so each synchronisation is one tilt
with exponent 1 / tau (:mod:`forgetlab.theory.near_policy`). V_hat is a biased estimate of V for
finite G (Jensen: E[V_hat] <= V), which shifts the finite-G fixed point by O(1 / G).
There is no exact population form: the loss needs E_{q_lag}[(log q)^2]-type integrals of
a mixture's log-density against a reward (0/1 on a ball: a two-dimensional integral), so OAPL
is finite-batch only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from forgetlab.methods.base import (
    Array,
    Knob,
    Method,
    Problem,
    State,
    StepOutput,
    Streams,
    batch_mean,
    register,
    sample_mixture,
)
from forgetlab.methods.rewards import reward_knobs, reward_of
from forgetlab.methods.rl import per_sample
from forgetlab.mixture import MixtureParams, TwoModeMixture

_LAG_KEYS = ("lag_weight", "lag_mean_old", "lag_mean_new")


def group_value(rewards: Array, tau: Array | float) -> Array:
    """V_hat = tau log mean_i exp(r_i / tau) over the last axis (log-sum-exp), ``[...]``."""
    t = np.asarray(tau, dtype=float)
    k = rewards.shape[-1]
    return t * (logsumexp(rewards / t[..., None], axis=-1) - np.log(k))


def oapl_residuals(log_q: Array, log_lag: Array, rewards: Array, tau: Array | float,
                   value: Array) -> Array:
    """tau (log q - log q_lag) - (r - V) per draw; ``value`` broadcasts against the draws."""
    t = np.asarray(tau, dtype=float)[..., None]
    return t * (log_q - log_lag) - (rewards - value)


def oapl_gradient(learner: TwoModeMixture, lagged: TwoModeMixture, x: Array, rewards: Array,
                  tau: Array | float, group_size: int) -> tuple[MixtureParams, Array]:
    """Gradient of the mean OAPL loss over draws x ``[..., B, d]`` from q_lag (raw coordinates),
    and the residuals ``[..., B]``; groups are consecutive blocks of ``group_size`` draws."""
    n = x.shape[-2]
    if n % group_size:
        raise ValueError(f"group_size ({group_size}) must divide batch_size ({n})")
    shape = rewards.shape[:-1]
    t = np.asarray(tau, dtype=float)
    groups = rewards.reshape(*shape, n // group_size, group_size)
    value = np.repeat(group_value(groups, t[..., None]), group_size, axis=-1)
    res = oapl_residuals(learner.log_prob(x), lagged.log_prob(x), rewards, t, value)
    g = batch_mean(learner.scores(x), 2.0 * t[..., None] * res)
    return g, res


@register
class OAPL(Method):
    """sum_i (tau log(q/q_lag)(y_i) - r(y_i) + V_hat)^2 on draws of a sampler synced every L."""

    name = "oapl"
    regimes = ("finite",)
    knobs = {
        **reward_knobs("verifiable", 1.5),
        "tau": Knob(1.0, "temperature tau > 0", low=0.0, open_low=True),
        "lag": Knob(50, "synchronisation period L >= 1 (steps)", kind=int, low=1.0),
        "group_size": Knob(8, "group size G >= 1 (divides the batch size)", kind=int, low=1.0),
    }

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
                               per_sample(self.knob("tau"))[..., 0], int(self.knob("group_size")))
        return StepOutput(g, state, {"starved": ~np.any(is_old, axis=-1),
                                     "max_residual": np.max(np.abs(res), axis=-1)})
