"""Reverse KL with replay (claim C7): off-policy samples, importance weights, optional clipping.

Samples come from the behaviour b_lambda = (1 - lambda) q_theta + lambda R, R the old data
N(a, Sigma) or the frozen initial model q_0. With w(x) = q(x) / b_lambda(x),

  grad KL(q || p*) = -E_q[A(x) grad log q(x)] = -E_b[w(x) A(x) grad log q(x)],

A = log p* - log q, so the importance-weighted estimator
-(1/B) sum_i w_i (A_i - c_i) grad log q(x_i) is unbiased (any baseline c_i independent of x_i,
because E_b[w grad log q] = E_q[grad log q] = 0); the population objective and its minimiser
are those of plain reverse KL. Weights are bounded: 0 <= w <= 1 / (1 - lambda).

Clipping w -> min(w, c) biases the estimate by -E_b[(min(w, c) - w) A grad log q] (baseline
"none"). Starvation (no old-component draw) has probability ((1 - lambda)(1 - beta))^B
with R = p_old, against (1 - beta)^B on-policy.
"""

from __future__ import annotations

import numpy as np

from forgetlab import population
from forgetlab.methods.base import (
    Array,
    Method,
    Problem,
    SampleBatch,
    State,
    StepOutput,
    Streams,
    register,
    sample_components,
)
from forgetlab.methods.rl import centred_signal, per_sample
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for


def behaviour_components(problem: Problem, learner: TwoModeMixture, replay: str,
                         fraction: Array | float) -> tuple[Array, Array, Array]:
    """b_lambda as Gaussian components: weights ``[C, S, K]``, means ``[C, S, K, d]``, and
    whether each is an old-task component ``[K]``."""
    lam = np.asarray(fraction, dtype=float)
    beta = learner.weight_old
    shape = beta.shape
    m_shape = learner.mean_old.shape
    weights = [(1 - lam) * beta, (1 - lam) * (1 - beta)]
    means = [learner.mean_old, learner.mean_new]
    is_old = [True, False]
    if replay == "old":
        weights.append(np.broadcast_to(lam, shape))
        means.append(np.broadcast_to(problem.target.mean_old, m_shape))
        is_old.append(True)
    else:
        src = problem.initial
        weights += [lam * src.weight_old, lam * (1 - src.weight_old)]
        means += [np.broadcast_to(src.mean_old, m_shape), np.broadcast_to(src.mean_new, m_shape)]
        is_old += [True, False]
    weights = [np.broadcast_to(w, shape) for w in weights]
    return np.stack(weights, axis=-1), np.stack(means, axis=-2), np.array(is_old)


def importance_weights(log_q: Array, log_r: Array, fraction: Array | float) -> Array:
    """w = q / ((1 - lambda) q + lambda R), computed in log space; 0 <= w <= 1 / (1 - lambda)."""
    lam = per_sample(fraction)
    with np.errstate(divide="ignore"):
        log_b = np.logaddexp(np.log1p(-lam) + log_q, np.log(lam) + log_r)
    return np.exp(log_q - log_b)


@register
class ReplayRL(Method):
    """KL(q || p*) estimated on samples from b_lambda = (1 - lambda) q + lambda R."""

    name = "replay_rl"
    knobs = knobs_for("replay_rl", "mixture")

    def check_regime(self, regime: str) -> None:
        """Population = exact reverse KL (unchanged objective); not with clipping."""
        super().check_regime(regime)
        if regime == "population" and np.any(np.asarray(self.knob("clip")) > 0):
            raise ValueError(f"regime 'population' for method '{self.name}' needs clip = 0 "
                             "(the clipped objective has no exact form here)")

    def estimate(self, problem: Problem, learner: TwoModeMixture, x: Array
                 ) -> tuple[MixtureParams, Array]:
        """The importance-weighted gradient on behaviour draws x, and the weights used."""
        batch = SampleBatch(x, problem.target.factor)
        parts = batch.log_prob(learner)
        src = problem.old_data if self.knob("replay") == "old" else problem.initial
        w = importance_weights(parts[0], batch.log_prob(src)[0], self.knob("replay_fraction"))
        clip = per_sample(self.knob("clip"))
        w = np.where(clip > 0, np.minimum(w, np.where(clip > 0, clip, 1.0)), w)
        signal = batch.log_prob(problem.target)[0] - parts[0]
        s = batch.score_mean(learner, w * centred_signal(signal, self.knob("baseline")), parts)
        return MixtureParams(-s.weight_old, -s.mean_old, -s.mean_new), w

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Exact reverse KL gradient (population) or the weighted estimator on B draws from b."""
        learner = problem.learner(params)
        if rng is None:
            return StepOutput(population.reverse_kl_gradient(learner, problem.target), state, {})
        weights, means, is_old = behaviour_components(
            problem, learner, self.knob("replay"), self.knob("replay_fraction"))
        x, comp = sample_components(weights, means, learner.factor, problem.batch_size, rng)
        g, w = self.estimate(problem, learner, x)
        return StepOutput(g, state, {"starved": ~np.any(is_old[comp], axis=-1),
                                     "max_weight": w.max(axis=-1)})
