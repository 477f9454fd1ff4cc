"""Supervised fine-tuning = forward KL on fixed data, with optional replay (claims C2 and C6).

Loss L(theta) = E_{x~D}[-log q_theta(x)] with training distribution
D_lambda = lambda R + (1 - lambda) p_new, p_new = N(b, Sigma) and the replay source R:

* ``"none"``: D = p_new (lambda ignored). Fixed point beta = 0 (mass forgetting, C2).
* ``"old"``: R = p_old = N(a, Sigma). Optimum (beta, m_o, m_n) = (lambda, a, b) exactly.
* ``"initial"``: R = q_0, the frozen initial model (a three-component training mixture).
* ``"current"``: R = q_theta itself with stop-gradient. E_q[grad log q] = 0, so its term
  vanishes: plain SFT with the learning rate times (1 - lambda).

Every source is a mixture of Gaussians N(mu_k, Sigma) with weights w_k, so
grad L = -sum_k w_k E_{N(mu_k)}[grad log q] (population: exact, from the engine; finite
batch: the mean of -grad log q over B draws from D_lambda, unbiased).

EM (optimiser ``"em"``): beta <- E_D[r_o], m_o <- E_D[r_o x] / E_D[r_o],
m_n <- E_D[r_n x] / E_D[r_n]; with Stein's lemma E_D[r_o x] = m_o E_D[r_o] + Sigma E_D[s_{m_o}],
s the score.
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
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for


def training_components(problem: Problem, learner: TwoModeMixture, replay: str,
                        fraction: Array | float) -> tuple[Array, Array, Array]:
    """D_lambda as Gaussian components: weights ``[C, S, K]``, means ``[C, S, K, d]`` and
    whether each component is an old-task one ``[K]`` (a, or the old mode of q_0 or of q)."""
    lam = np.asarray(fraction, dtype=float) * (replay != "none")
    shape = learner.weight_old.shape
    b = np.broadcast_to(problem.target.mean_new, learner.mean_new.shape)
    weights = [np.broadcast_to(1.0 - lam, shape)]
    means = [b]
    is_old = [False]
    if replay == "old":
        weights.append(np.broadcast_to(lam, shape))
        means.append(np.broadcast_to(problem.target.mean_old, b.shape))
        is_old.append(True)
    elif replay in ("initial", "current"):
        src = problem.initial if replay == "initial" else learner
        weights += [np.broadcast_to(lam * src.weight_old, shape),
                    np.broadcast_to(lam * (1.0 - src.weight_old), shape)]
        means += [np.broadcast_to(src.mean_old, b.shape), np.broadcast_to(src.mean_new, b.shape)]
        is_old += [True, False]
    return np.stack(weights, axis=-1), np.stack(means, axis=-2), np.array(is_old)


def population_scores(learner: TwoModeMixture, weights: Array, means: Array) -> MixtureParams:
    """E_D[grad log q] = sum_k w_k E_{N(mu_k, Sigma)}[grad log q] (raw weight coordinate)."""
    per = population.expected_scores(learner, means)
    return MixtureParams(
        np.sum(weights * per.weight_old, axis=-1),
        np.sum(weights[..., None] * per.mean_old, axis=-2),
        np.sum(weights[..., None] * per.mean_new, axis=-2),
    )


def batch_scores(learner: TwoModeMixture, x: Array) -> MixtureParams:
    """(1/n) sum_i grad log q(x_i), x ``[C, S, n, d]``: unbiased for E_D[grad log q]."""
    return SampleBatch(x, learner.factor).score_mean(learner, np.ones(x.shape[:-1]))


def em_from_moments(learner: TwoModeMixture, mean_score: MixtureParams) -> MixtureParams:
    """EM parameters from E_D[grad log q]: r_o = beta (1 - beta) s_beta + beta, Stein for means."""
    beta = learner.weight_old
    r_old = np.clip(beta * (1.0 - beta) * mean_score.weight_old + beta, 0.0, 1.0)
    cov = learner.cov
    with np.errstate(divide="ignore", invalid="ignore"):
        step_o = np.einsum("...ij,...j->...i", cov, mean_score.mean_old) / r_old[..., None]
        step_n = np.einsum("...ij,...j->...i", cov, mean_score.mean_new) / (1 - r_old)[..., None]
    m_o = np.where(r_old[..., None] > 0, learner.mean_old + step_o, learner.mean_old)
    m_n = np.where(r_old[..., None] < 1, learner.mean_new + step_n, learner.mean_new)
    return MixtureParams(r_old, m_o, m_n)


@register
class SFT(Method):
    """Forward KL E_{D_lambda}[-log q] on new-task data with optional replay."""

    name = "sft"
    knobs = knobs_for("sft", "mixture")

    def _components(self, problem: Problem, learner: TwoModeMixture
                    ) -> tuple[Array, Array, Array]:
        return training_components(problem, learner, self.knob("replay"),
                                   self.knob("replay_fraction"))

    def _mean_score(self, problem: Problem, learner: TwoModeMixture, rng: Streams | None
                    ) -> tuple[MixtureParams, dict[str, Array]]:
        weights, means, is_old = self._components(problem, learner)
        if rng is None:
            return population_scores(learner, weights, means), {}
        x, comp = sample_components(weights, means, learner.factor, problem.batch_size, rng)
        starved = ~np.any(is_old[comp], axis=-1)
        return batch_scores(learner, x), {"starved": starved}

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """-E_D[grad log q]: exact (population) or the minibatch mean (finite batch)."""
        s, diag = self._mean_score(problem, problem.learner(params), rng)
        return StepOutput(MixtureParams(-s.weight_old, -s.mean_old, -s.mean_new), state, diag)

    def em_update(self, problem: Problem, params: MixtureParams, state: State, step: int,
                  rng: Streams | None) -> tuple[MixtureParams, State, dict[str, Array]]:
        """One EM step on D_lambda (exact moments or the minibatch's)."""
        learner = problem.learner(params)
        s, diag = self._mean_score(problem, learner, rng)
        return em_from_moments(learner, s), state, diag


@register
class ReplaySFT(SFT):
    """SFT with replay of old-task data (lambda = 0.5 by default): E_{D_lambda}[-log q]."""

    name = "replay_sft"
    knobs = knobs_for("replay_sft", "mixture")
