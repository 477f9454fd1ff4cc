"""Self-SFT / rejection-sampling fine-tuning (RFT) / iterative SFT: SFT on verified own samples.

A sampler s draws x; the verifier keeps those with R(x) > 0; the learner minimises
E_s[-log q(x) | R(x) > 0]. The sampler is the initial model q_0 for good (``regenerate_every``
= 0: Self-SFT / RFT from q_0 once), or the current learner copied every k steps (iterative SFT,
approximately on-policy).

Finite batch: -(1 / n_acc) sum_{i accepted} grad log q(x_i) (zero when nothing is accepted;
normalising by the batch's acceptance count instead of the exact acceptance probability is the
usual practice and has an O(1/B) ratio bias). EM (optimiser ``"em"``) fits the accepted draws
in one step.

Mass: for a 0/1 reward the accepted draws of sampler s = beta_s phi_o + (1 - beta_s) phi_n have
old-component odds odds_s P_o / P_n (P_c the success probability of component c): the gamma ->
infinity limit of the TTT-Discover tilt. Regenerating every k steps multiplies the odds by
P_o / P_n per regeneration when each period fits its data.

There is no exact population form: the filtered data q_s 1{R > 0} are truncated Gaussians and
the learner's responsibilities must be integrated over a ball (a two-dimensional integral), so
this method is finite-batch only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

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
from forgetlab.methods.sft import em_from_moments
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import knobs_for

_SAMPLER_KEYS = ("sampler_weight", "sampler_mean_old", "sampler_mean_new")


def accepted_mean_score(learner: TwoModeMixture, x: Array, accepted: NDArray[np.bool_]
                        ) -> MixtureParams:
    """(1 / n_acc) sum_{i accepted} grad log q(x_i) (raw coordinates); zero if n_acc = 0."""
    n = x.shape[-2]
    n_acc = np.sum(accepted, axis=-1, keepdims=True)
    weights = np.where(accepted, n / np.maximum(n_acc, 1), 0.0)
    return batch_mean(learner.scores(x), weights)


@register
class SelfSFT(Method):
    """E_s[-log q | R > 0]: SFT on verified draws of q_0 (k = 0) or of the learner every k steps."""

    name = "self_sft"
    regimes = ("finite",)
    knobs = knobs_for("self_sft", "mixture")

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        if self.knob("reward") == "target":
            raise ValueError(f"reward must be 'verifiable' or 'callable' for method '{self.name}' "
                             "(a verifier accepts r > 0)")
        self.reward = reward_of(self)

    def init_state(self, problem: Problem, params: MixtureParams) -> State:
        """The sampler starts at the initial model."""
        return {k: np.array(v, dtype=float) for k, v in zip(_SAMPLER_KEYS, params, strict=True)}

    def _accepted(self, problem: Problem, params: MixtureParams, state: State, step: int,
                  rng: Streams | None) -> tuple[Array, NDArray[np.bool_], State,
                                                dict[str, Array]]:
        if rng is None:
            raise ValueError(f"method '{self.name}' has no population regime; use regime='finite'")
        k = int(self.knob("regenerate_every"))
        if k > 0 and step % k == 0:
            state = {key: np.array(v, dtype=float)
                     for key, v in zip(_SAMPLER_KEYS, params, strict=True)}
        sampler = problem.learner(MixtureParams(*(state[key] for key in _SAMPLER_KEYS)))
        x, is_old = sample_mixture(sampler, problem.batch_size, rng)
        accepted = self.reward(problem, x) > 0
        diag = {"starved": ~np.any(accepted & is_old, axis=-1),
                "accepted": np.mean(accepted, axis=-1)}
        return x, accepted, state, diag

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """-(1 / n_acc) sum over accepted draws of grad log q."""
        x, accepted, state, diag = self._accepted(problem, params, state, step, rng)
        g = accepted_mean_score(problem.learner(params), x, accepted)
        return StepOutput(MixtureParams(-g.weight_old, -g.mean_old, -g.mean_new), state, diag)

    def em_update(self, problem: Problem, params: MixtureParams, state: State, step: int,
                  rng: Streams | None) -> tuple[MixtureParams, State, dict[str, Array]]:
        """One EM step on the accepted draws (parameters unchanged when none is accepted)."""
        x, accepted, state, diag = self._accepted(problem, params, state, step, rng)
        learner = problem.learner(params)
        new = em_from_moments(learner, accepted_mean_score(learner, x, accepted))
        keep = np.any(accepted, axis=-1)
        return MixtureParams(np.where(keep, new.weight_old, params.weight_old),
                             np.where(keep[..., None], new.mean_old, params.mean_old),
                             np.where(keep[..., None], new.mean_new, params.mean_new)), state, diag


@register
class IterativeSFT(SelfSFT):
    """Iterative SFT: :class:`SelfSFT` with the sampler regenerated every 10 steps by default."""

    name = "iterative_sft"
    knobs = knobs_for("iterative_sft", "mixture")
