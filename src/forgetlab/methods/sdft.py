"""SDFT: self-distillation to an EMA teacher conditioned on a demonstration (C8).

Teacher parameters from the EMA phi = (bar beta, bar m_o, bar m_n) of the student:
  beta^T = (1 - nu) bar beta,  m_o^T = bar m_o,  m_n^T = (1 - lam_demo) bar m_n + lam_demo mu_demo,
with mu_demo = b + ``demo_offset``. Loss: KL(q || T) (``divergence="reverse"``) or KL(T || q)
(``"forward"``) on the student's own samples, as in :mod:`forgetlab.methods.distill`. After the
gradient at step t the EMA takes the student's current parameters:
phi <- tau_ema theta_t + (1 - tau_ema) phi (phi_0 = theta_0), so the teacher used at step t + 1
has seen theta_0..theta_t. With ``teacher="base"`` the EMA is never updated: the teacher is
the frozen initial model with the demonstration, as in TRL's SDFT trainer.

Population: the exact reverse or forward KL gradient to the teacher (a two-mode mixture) from
the engine. Finite batch: the score-function estimators of :mod:`forgetlab.methods.distill`.
Predictions (retained mass, finite drift, random walk at lam_demo = 0, geometric decay for
nu > 0): :mod:`forgetlab.theory.near_policy`.
"""

from __future__ import annotations

import numpy as np

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
from forgetlab.methods.distill import distillation_gradient, population_gradient
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for

_EMA_KEYS = ("ema_weight", "ema_mean_old", "ema_mean_new")


def sdft_teacher(ema: MixtureParams, demo_mean: Array, lam_demo: Array | float,
                 nu: Array | float, cov: Array) -> TwoModeMixture:
    """T = ((1 - nu) bar beta, bar m_o, (1 - lam) bar m_n + lam mu_demo) with covariance Sigma."""
    lam = np.asarray(lam_demo, dtype=float)[..., None]
    beta_t = (1.0 - np.asarray(nu, dtype=float)) * ema.weight_old
    return TwoModeMixture(beta_t, ema.mean_old, (1.0 - lam) * ema.mean_new + lam * demo_mean,
                          cov)


def ema_update(ema: MixtureParams, params: MixtureParams, tau_ema: Array | float
               ) -> MixtureParams:
    """phi <- tau theta + (1 - tau) phi, field by field."""
    tau = np.asarray(tau_ema, dtype=float)
    return MixtureParams(tau * params.weight_old + (1 - tau) * ema.weight_old,
                         tau[..., None] * params.mean_old + (1 - tau[..., None]) * ema.mean_old,
                         tau[..., None] * params.mean_new + (1 - tau[..., None]) * ema.mean_new)


@register
class SDFT(Method):
    """KL between the student and an EMA teacher whose new mean is pulled to a demonstration."""

    name = "sdft"
    knobs = knobs_for("sdft", "mixture")

    def demo_mean(self, problem: Problem) -> Array:
        """mu_demo = b + demo_offset, ``[C, 1, d]``."""
        b = problem.target.mean_new
        offset = self.knob("demo_offset")
        if offset is None:
            return b
        off = np.asarray(offset, dtype=float)
        if off.shape[-1:] != (problem.dim,) or not np.all(np.isfinite(off)):
            raise ValueError(f"demo_offset must be a finite vector of length d={problem.dim}")
        return b + off

    def init_state(self, problem: Problem, params: MixtureParams) -> State:
        """The EMA starts at the initial student parameters."""
        return {k: np.array(v, dtype=float) for k, v in zip(_EMA_KEYS, params, strict=True)}

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Gradient of the divergence to the current teacher; the EMA then absorbs theta_t."""
        ema = MixtureParams(*(state[k] for k in _EMA_KEYS))
        teacher = sdft_teacher(ema, self.demo_mean(problem), self.knob("lam_demo"),
                               self.knob("nu"), problem.cov)
        learner = problem.learner(params)
        divergence = self.knob("divergence")
        diag: dict[str, Array] = {}
        if rng is None:
            grad = population_gradient(learner, teacher, divergence)
        else:
            x, is_old = sample_mixture(learner, problem.batch_size, rng)
            grad = distillation_gradient(learner, teacher, x, divergence,
                                         baseline=self.knob("baseline"))
            diag["starved"] = ~np.any(is_old, axis=-1)
        if self.knob("teacher") == "base":  # the frozen base: the EMA stays at theta_0
            return StepOutput(grad, state, diag)
        new_ema = ema_update(ema, params, self.knob("tau_ema"))
        return StepOutput(grad, dict(zip(_EMA_KEYS, new_ema, strict=True)), diag)
