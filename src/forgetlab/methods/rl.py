"""RL = reverse KL, on-policy (claim C3): KL-regularised reward maximisation on the mixture.

Loss L(theta) = -E_q[r(x)] + tau E_q[log q(x) - log q_ref(x)] (``reference="none"`` drops
log q_ref, i.e. an entropy bonus). With reward log p*, tau = 1 and no reference this is exactly
KL(q || p*), whose minimiser is q = p* (no mass forgetting). The optimum of the general loss is
q* proportional to q_ref e^{r / tau}.

Per-sample signal A(x) = r(x) - tau (log q(x) - log q_ref(x)). Since E_q[grad log q] = 0,
grad L = -E_q[A(x) grad log q(x)]. Finite-batch estimators over x_i ~ q (i = 1..B):

* score function: -(1/B) sum_i (A_i - c_i) grad log q(x_i), with baseline c_i = 0 (unbiased),
  the leave-one-out mean of the other A_j (unbiased), or the batch mean including A_i (biased:
  its expectation is (1 - 1/B) grad L); ``grpo``: A_i -> (A_i - mean_g A) / (std_g A + 1e-8)
  within consecutive groups of G samples (biased: a normalised, rescaled gradient);
* pathwise (means only, differentiable rewards): x = m_c + L z, so
  grad_{m_o} L = -E[1{c = old} grad_x A(x)] (the direct terms have zero mean); the weight
  keeps the score-function estimator.

Population regime: the exact gradient of KL(q || p*) from the engine (reward ``"target"``,
tau = 1, ``reference="none"``); other settings are finite-batch only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from forgetlab import population
from forgetlab.methods.base import (
    Array,
    Method,
    Problem,
    SampleBatch,
    State,
    StepOutput,
    Streams,
    batch_mean,
    register,
    sample_mixture,
)
from forgetlab.methods.rewards import reward_of
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for


def per_sample(value: Array | float) -> Array:
    """A knob value (scalar or ``[C, 1]``) with a trailing axis for the sample index."""
    return np.expand_dims(np.asarray(value, dtype=float), -1)


def grpo_advantages(groups: Array, eps: float = 1e-8) -> Array:
    """A_i = (r_i - mean_j r_j) / (std_j r_j + eps) over the last axis (a group), std with
    divisor G; a group with equal rewards gets zeros."""
    centred = groups - groups.mean(axis=-1, keepdims=True)
    return centred / (groups.std(axis=-1, keepdims=True) + eps)


def centred_signal(signal: Array, baseline: str, group_size: int = 1, grpo: bool = False
                   ) -> Array:
    """A_i - c_i for A ``[..., n]``: baseline none / mean / leave-one-out, or GRPO groups."""
    n = signal.shape[-1]
    if grpo:
        groups = signal.reshape(*signal.shape[:-1], n // group_size, group_size)
        return grpo_advantages(groups).reshape(signal.shape)
    if baseline == "none":
        return signal
    total = signal.sum(axis=-1, keepdims=True)
    if baseline == "mean":
        return signal - total / n
    if n == 1:
        return signal
    return signal - (total - signal) / (n - 1)


def score_function_gradient(scores: MixtureParams, centred: Array) -> MixtureParams:
    """-(1/n) sum_i (A_i - c_i) grad log q(x_i): the REINFORCE estimate of grad L."""
    g = batch_mean(scores, centred)
    return MixtureParams(-g.weight_old, -g.mean_old, -g.mean_new)


def grad_log_density(mix: TwoModeMixture, x: Array) -> Array:
    """grad_x log mix(x) = -Sigma^{-1} [r_o (x - m_o) + r_n (x - m_n)], ``[..., n, d]``."""
    r_o = mix.responsibilities(x)[..., None]
    centred = r_o * (x - mix.mean_old[..., None, :]) + (1 - r_o) * (x - mix.mean_new[..., None, :])
    return -mix.precision_times(centred)


def pathwise_mean_gradient(grad_signal: Array, is_old: NDArray[np.bool_]
                           ) -> tuple[Array, Array]:
    """(-(1/n) sum_i 1{old_i} grad_x A(x_i), -(1/n) sum_i 1{new_i} grad_x A(x_i))."""
    n = is_old.shape[-1]
    old = is_old.astype(float)
    return (-np.einsum("...n,...nd->...d", old, grad_signal) / n,
            -np.einsum("...n,...nd->...d", 1.0 - old, grad_signal) / n)


@register
class RL(Method):
    """-E_q[r] + tau KL(q || q_ref), on-policy; pure reverse KL to p* by default."""

    name = "rl"
    knobs = knobs_for("rl", "mixture")

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        if self.knob("estimator") == "pathwise" and self.knob("reward") != "target":
            raise ValueError("estimator 'pathwise' needs a differentiable reward: "
                             "reward must be 'target'")
        self.reward = reward_of(self)

    def population_available(self) -> bool:
        """Exact gradients exist for pure reverse KL (target reward, tau = 1, no reference)."""
        tau = np.asarray(self.knob("tau"))
        return (self.knob("reward") == "target" and self.knob("reference") == "none"
                and bool(np.all(tau == 1.0)))

    def check_regime(self, regime: str) -> None:
        """Population only for pure reverse KL; see the module docstring."""
        super().check_regime(regime)
        if regime == "population" and not self.population_available():
            raise ValueError("regime 'population' for method 'rl' needs reward='target', "
                             "tau=1 and reference='none'; use regime='finite'")

    def signal(self, problem: Problem, learner: TwoModeMixture, x: Array,
               batch: SampleBatch | None = None) -> Array:
        """A(x) = r(x) - tau (log q(x) - log q_ref(x)), ``[C, S, n]``."""
        batch = batch if batch is not None else SampleBatch(x, problem.target.factor)
        log_ratio = batch.log_prob(learner)[0]
        if self.knob("reference") == "initial":
            log_ratio = log_ratio - batch.log_prob(problem.initial)[0]
        reward = (batch.log_prob(problem.target)[0] if self.knob("reward") == "target"
                  else self.reward(problem, x))
        return reward - per_sample(self.knob("tau")) * log_ratio

    def grad_signal(self, problem: Problem, learner: TwoModeMixture, x: Array) -> Array:
        """grad_x A(x) for the target reward, ``[C, S, n, d]``."""
        tau = per_sample(self.knob("tau"))[..., None]
        g = grad_log_density(problem.target, x) - tau * grad_log_density(learner, x)
        if self.knob("reference") == "initial":
            g = g + tau * grad_log_density(problem.initial, x)
        return g

    def estimate(self, problem: Problem, learner: TwoModeMixture, x: Array,
                 is_old: NDArray[np.bool_]) -> MixtureParams:
        """The finite-batch gradient estimate from on-policy draws x with labels is_old."""
        group = int(self.knob("group_size"))
        if self.knob("grpo") and x.shape[-2] % group:
            raise ValueError(f"group_size ({group}) must divide batch_size ({x.shape[-2]})")
        batch = SampleBatch(x, problem.target.factor)
        centred = centred_signal(self.signal(problem, learner, x, batch),
                                 self.knob("baseline"), group, self.knob("grpo"))
        s = batch.score_mean(learner, centred)
        g = MixtureParams(-s.weight_old, -s.mean_old, -s.mean_new)
        if self.knob("estimator") == "pathwise":
            g_o, g_n = pathwise_mean_gradient(self.grad_signal(problem, learner, x), is_old)
            g = MixtureParams(g.weight_old, g_o, g_n)
        return g

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Exact KL(q || p*) gradient (population) or the chosen estimator on B draws from q."""
        learner = problem.learner(params)
        if rng is None:
            return StepOutput(population.reverse_kl_gradient(learner, problem.target), state, {})
        x, is_old = sample_mixture(learner, problem.batch_size, rng)
        return StepOutput(self.estimate(problem, learner, x, is_old), state,
                          {"starved": ~np.any(is_old, axis=-1)})
