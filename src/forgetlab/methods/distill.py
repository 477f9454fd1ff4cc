"""On-policy distillation to a fixed teacher T: the student's own samples, a divergence to T.

Every divergence D(q, T) here has a score-function gradient grad D = E_q[f(x) grad log q(x)]
with a per-sample signal f evaluated on student draws x ~ q:

* ``"reverse"`` KL(q || T): f = log q - log T (the constant +1 has zero mean and is dropped);
* ``"forward"`` KL(T || q) = E_T[log T - log q]: grad = -E_T[grad log q] = -E_q[(T/q) grad log q],
  so f = -T/q (importance weights, capped at e^700);
* ``"jsd"`` generalised Jensen-Shannon with mixing coefficient beta in (0, 1] and
  M = beta T + (1 - beta) q: JSD_beta = beta KL(T || M) + (1 - beta) KL(q || M). Differentiating
  (d M = (1 - beta) d q) gives grad JSD_beta = (1 - beta) E_q[log(q / M) grad log q]; we use
  JSD_beta / (beta (1 - beta)), whose signal f = log(q / M) / beta tends to 1 - T/q (forward
  KL) as beta -> 0 and equals log(q / T) (reverse KL) at beta = 1.

Finite batch: -(1/n) sum_i (f_i - c_i) grad log q(x_i) with a baseline c (none or leave-one-out:
unbiased; batch mean: times (1 - 1/n)); the gradient of the loss is its negative.
Population: reverse and forward KL to a two-mode teacher are exact from the engine; the
generalised JSD has no exact population form here (log M of a four-component mixture is not one
of the engine's one-dimensional integrals), so ``"jsd"`` is finite-batch only.

Teacher: ``"target"`` (p*, a teacher that has both skills) or ``"new"`` (p_new only).
"""

from __future__ import annotations

import numpy as np

from forgetlab import population
from forgetlab.methods.base import (
    Array,
    Method,
    Problem,
    State,
    StepOutput,
    Streams,
    register,
    sample_mixture,
)
from forgetlab.methods.rl import centred_signal, per_sample, score_function_gradient
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for

DIVERGENCES = ("reverse", "forward", "jsd")
_MAX_LOG_WEIGHT = 700.0


def divergence_signal(log_q: Array, log_t: Array, divergence: str,
                      mix: Array | float = 0.5) -> Array:
    """Per-sample f with grad D = E_q[f grad log q], ``[..., n]`` (see the module docstring)."""
    if divergence == "reverse":
        return log_q - log_t
    if divergence == "forward":
        return -np.exp(np.minimum(log_t - log_q, _MAX_LOG_WEIGHT))
    if divergence == "jsd":
        b = np.asarray(mix, dtype=float)
        with np.errstate(divide="ignore"):
            log_m = np.logaddexp(np.log(b) + log_t, np.log1p(-b) + log_q)
        return (log_q - log_m) / b
    raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")


def distillation_gradient(learner: TwoModeMixture, teacher: TwoModeMixture, x: Array,
                          divergence: str, mix: Array | float = 0.5, baseline: str = "loo"
                          ) -> MixtureParams:
    """Score-function estimate of grad D(q, T) from student draws x ``[..., n, d]`` (raw coords)."""
    f = divergence_signal(learner.log_prob(x), teacher.log_prob(x), divergence, mix)
    g = score_function_gradient(learner.scores(x), centred_signal(f, baseline))
    return MixtureParams(-g.weight_old, -g.mean_old, -g.mean_new)


def population_gradient(learner: TwoModeMixture, teacher: TwoModeMixture, divergence: str
                        ) -> MixtureParams:
    """Exact grad KL(q || T) (``"reverse"``) or grad KL(T || q) (``"forward"``)."""
    if divergence == "reverse":
        return population.reverse_kl_gradient(learner, teacher)
    if divergence == "forward":
        return population.forward_kl_gradient(learner, teacher)
    raise ValueError(f"divergence must be 'reverse' or 'forward' in the population regime, "
                     f"got {divergence!r}")


def teacher_mixture(problem: Problem, which: str) -> TwoModeMixture:
    """The fixed teacher: p* (``"target"``) or p_new (``"new"``)."""
    return problem.target if which == "target" else problem.new_data


@register
class Distill(Method):
    """On-policy distillation: D(q, T) on student samples, D reverse KL, forward KL or JSD."""

    name = "distill"
    knobs = knobs_for("distill", "mixture")

    def check_regime(self, regime: str) -> None:
        """The generalised JSD is finite-batch only."""
        super().check_regime(regime)
        if regime == "population" and self.knob("divergence") == "jsd":
            raise ValueError("regime 'population' for method 'distill' needs divergence "
                             "'reverse' or 'forward' (no exact form for the JSD)")

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Exact gradient (population) or the score-function estimate on B student draws."""
        learner = problem.learner(params)
        teacher = teacher_mixture(problem, self.knob("teacher"))
        if rng is None:
            return StepOutput(population_gradient(learner, teacher, self.knob("divergence")),
                              state, {})
        x, is_old = sample_mixture(learner, problem.batch_size, rng)
        g = distillation_gradient(learner, teacher, x, self.knob("divergence"),
                                  per_sample(self.knob("beta")), self.knob("baseline"))
        return StepOutput(g, state, {"starved": ~np.any(is_old, axis=-1)})
