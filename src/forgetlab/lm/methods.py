"""Post-training methods on a causal LM, with the names and knobs of the mixture side.

Each method is a small object built by :func:`make_method` from a name and knobs; it holds its
own state (teacher, lagged sampler, filtered data) and returns the loss of one step from the
pure functions of :mod:`forgetlab.lm.losses`. The loop lives in :mod:`forgetlab.lm.train`.
Names, knobs, defaults and ranges come from the method table :mod:`forgetlab.vocabulary`,
which the mixture's registry reads too (old spellings such as ``ttt-discover`` or ``rft`` are
accepted as aliases).

Every method sees a :class:`Setting`: the policy pi_theta being trained, the frozen base pi_0,
the prompt family it trains on, the verifier, the target's old mass and the replay source. The
on-policy methods take a ``reward`` knob (:mod:`forgetlab.lm.target`): ``verifier`` (the
setting's), ``verifier_both``, ``verifier_new`` or ``target`` (log p* - log pi, reverse KL to
the explicit two-mode target; ``rl``, ``ttt_discover`` and ``oapl`` only).

=================  ==============================================================================
``sft``            token cross-entropy on new-task demonstrations (forward KL to p_new); with
                   ``replay="old"``, ``replay_fraction`` of the batch are old-task
                   demonstrations (p_old) on the replay prompts
``replay_sft``     the same with ``replay="old"``, ``replay_fraction`` 0.5
``rl``             GRPO-style REINFORCE: G samples per prompt from pi_theta, group-normalised
                   advantages (mean-centred leave-one-out for ``reward=target``); ``kl_coef``
                   times (1/2)(log pi_theta - log pi_0)^2 per sampled token; optional PPO:
                   each batch used for ``ppo_epochs`` steps, ratio clipped at ``clip_eps``
``self_sft``       rejection-sampling fine-tuning (RFT): SFT on reward-passing samples of pi_0
                   (0/1 kinds), or regenerated from pi_theta every ``regenerate_every`` steps
``iterative_sft``  the same, regenerated every 10 steps by default
``distill``        on-policy distillation: per-token divergence (``reverse`` | ``forward`` |
                   ``jsd`` with ``beta``) to a fixed teacher, pi_0 with a new-task
                   demonstration *of the same question* in its prompt, on the student's samples
``sdft``           the same teacher context, the teacher's weights an EMA of the student's
                   (``tau_ema``) or the frozen base (``teacher``); per-token forward KL on the
                   student's samples by default (the authors' as-run setting), or reverse
``ttt_discover``   entropic leave-one-out advantages, gamma by the ln 2 rule (or fixed
                   ``gamma``), ``kappa`` times the squared log-ratio penalty to pi_0, a buffer of
                   the ``reuse`` best past samples, optional ratio clipping ``clip_eps``
``oapl``           squared log-ratio regression to r - V_hat on samples of a lagged sampler
                   synchronised every ``lag`` steps, temperatures ``tau_value`` and ``tau_ratio``
=================  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from forgetlab.lm.corpus import Task
from forgetlab.lm.losses import (
    adaptive_gamma,
    clipped_policy_loss,
    entropic_loo_advantages,
    generalized_jsd,
    grpo_advantages,
    oapl_loss,
    policy_gradient_loss,
    sequence_logprob,
    squared_log_ratio_penalty,
    token_cross_entropy,
)
from forgetlab.lm.model import GPT
from forgetlab.lm.sampling import answer_token_logprobs, sample_answers
from forgetlab.lm.target import target_logprob, verifier_reward
from forgetlab.lm.train import frozen_copy
from forgetlab.vocabulary import canonical_name, knobs_for, method_names, validate_knobs


@dataclass
class Setting:
    """What a method trains on: the models, prompt families, verifier and randomness.

    ``train_family`` is the prompt family of the new task; ``replay_family`` the family whose
    old-task demonstrations ``replay_sft`` mixes in; ``reward_old`` makes the setting's verifier
    also credit the correct old answer (for a target that keeps both modes);
    ``target_old_mass`` is alpha of the explicit target p* (:mod:`forgetlab.lm.target`).
    """

    task: Task
    policy: GPT
    base: GPT
    train_family: str
    replay_family: str
    reward_old: bool
    batch_size: int
    gen: torch.Generator
    target_old_mass: float = 0.5

    def questions(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh digits ``[n, d]`` and their prompts on the training family."""
        digits = self.task.questions(n or self.batch_size, self.gen)
        return digits, self.task.prompts(self.train_family, digits)

    def reward(self, digits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """The setting's 0/1 verifier ``[N]``: a correct new answer (or old one if
        ``reward_old``)."""
        return verifier_reward(self.task, digits, answers, self.reward_old)

    def signal(
        self, kind: str, digits: torch.Tensor, prompts: torch.Tensor, answers: torch.Tensor,
        sampler: GPT,
    ) -> torch.Tensor:
        """Reward ``[N]`` of kind ``kind`` (:data:`~forgetlab.lm.target.REWARDS`) for answers
        drawn from ``sampler``; ``target`` is log p*(y|x) - log sampler(y|x)."""
        if kind == "target":
            with torch.no_grad():
                logq = answer_token_logprobs(sampler, prompts, answers).double().sum(-1)
            return target_logprob(self.task, digits, answers, self.target_old_mass) - logq
        if kind == "verifier":
            return self.reward(digits, answers)
        return verifier_reward(self.task, digits, answers, kind == "verifier_both")


def _sft_loss(model: GPT, prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    ids = torch.cat([prompts, answers], dim=1)
    logits = model(ids[:, :-1])[:, prompts.shape[1] - 1 :]
    return token_cross_entropy(logits, answers)


def _plain(name: str, value: Any) -> Any:
    """A validated knob value as a Python scalar (one value: a network is one configuration)."""
    if not isinstance(value, np.ndarray):
        return value
    if value.ndim:
        raise ValueError(f"{name} must be a single value on the language model")
    return value.item()


class LMMethod:
    """Base class: knobs (from :mod:`forgetlab.vocabulary`) become attributes; subclasses
    implement :meth:`loss`."""

    name: ClassVar[str]

    def __init__(self, **values: Any) -> None:
        checked = validate_knobs(self.name, knobs_for(self.name, "lm"), values)
        self._knobs = {k: _plain(k, v) for k, v in checked.items()}
        for key, value in self._knobs.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._knobs})"

    def bind(self, setting: Setting) -> LMMethod:
        """Attach the setting (and build state that depends on it); returns ``self``."""
        self.s = setting
        return self

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Hook after the optimiser step (EMA teachers, lagged samplers)."""

    def knobs(self) -> dict[str, Any]:
        """The method's knob values."""
        return dict(self._knobs)

    def _group(self, sampler: GPT, g: int, reward: str) -> tuple[
            torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """B prompts, G samples each from ``sampler``: digits, prompts, answers, rewards [B, G]
        of kind ``reward``."""
        digits, prompts = self.s.questions()
        digits = digits.repeat_interleave(g, 0)
        prompts = prompts.repeat_interleave(g, 0)
        answers = sample_answers(sampler, prompts, self.s.task.answer_len, self.s.gen)
        rewards = self.s.signal(reward, digits, prompts, answers, sampler).view(-1, g)
        return digits, prompts, answers, rewards


def _anchored(loss: torch.Tensor, coef: float, setting: Setting, tok: torch.Tensor,
              prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """``loss`` plus ``coef`` times the squared log-ratio penalty to the base on the sampled
    tokens ``tok`` (nothing added for coef = 0)."""
    if coef <= 0:
        return loss
    with torch.no_grad():
        ref = answer_token_logprobs(setting.base, prompts, answers)
    return loss + coef * squared_log_ratio_penalty(tok, ref)


class SFT(LMMethod):
    """Cross-entropy on demonstrations; with ``replay="old"``, ``replay_fraction`` of each batch
    is old-task data."""

    name: ClassVar[str] = "sft"
    replay: str
    replay_fraction: float

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.replay == "none" and self.replay_fraction > 0:
            raise ValueError("replay_fraction > 0 needs replay='old' (or use replay_sft)")

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        n_old = round(self.replay_fraction * s.batch_size)
        digits, prompts = s.questions(s.batch_size - n_old)
        answers = s.task.new_demonstrations(digits, s.gen)
        if n_old:
            d_old = s.task.questions(n_old, s.gen)
            prompts = torch.cat([prompts, s.task.prompts(s.replay_family, d_old)])
            answers = torch.cat([answers, s.task.old_answers(d_old)])
        return _sft_loss(s.policy, prompts, answers), {}


class ReplaySFT(SFT):
    """SFT with replay of old-task demonstrations (C6 with R = p_old)."""

    name: ClassVar[str] = "replay_sft"


class RL(LMMethod):
    """GRPO-style REINFORCE and an optional penalty to the base model.

    With ``reward=target`` the advantage is the leave-one-out centred signal
    G/(G-1) (r_i - mean_j r_j), an unbiased estimate of the reverse-KL gradient's weight.
    With ``ppo_epochs`` k > 1 each sampled batch serves k consecutive steps (the samples of
    an older policy from the second on), and ``clip_eps`` > 0 clips the ratio to the sampler."""

    name: ClassVar[str] = "rl"
    group_size: int
    kl_coef: float
    reward: str
    clip_eps: float
    ppo_epochs: int

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                         torch.Tensor, torch.Tensor]:
        """Prompts, answers, rewards [B, G], advantages and the sampler's log-probabilities,
        drawn afresh every ``ppo_epochs`` steps."""
        if step % self.ppo_epochs == 0:
            s = self.s
            _, prompts, answers, rewards = self._group(s.policy, self.group_size, self.reward)
            if self.reward == "target":
                g = self.group_size
                adv = (g / (g - 1) * (rewards - rewards.mean(-1, keepdim=True))).flatten()
            else:
                adv = grpo_advantages(rewards).flatten()
            with torch.no_grad():
                old = sequence_logprob(answer_token_logprobs(s.policy, prompts, answers))
            self._cached = (prompts, answers, rewards, adv.float(), old)
        return self._cached

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        prompts, answers, rewards, adv, old = self._batch(step)
        tok = answer_token_logprobs(s.policy, prompts, answers)
        seq = sequence_logprob(tok)
        loss = (clipped_policy_loss(seq, old, adv, self.clip_eps) if self.clip_eps > 0
                else policy_gradient_loss(seq, adv))
        return _anchored(loss, self.kl_coef, s, tok, prompts, answers), {
            "reward": float(rewards.mean())}


class SelfSFT(LMMethod):
    """SFT on verifier-passing samples: of pi_0 once (``regenerate_every`` = 0, RFT), or of the
    current policy every ``regenerate_every`` steps (iterative SFT)."""

    name: ClassVar[str] = "self_sft"
    group_size: int
    regenerate_every: int
    pool_batches: int
    reward: str

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.pool: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _regenerate(self, sampler: GPT) -> None:
        prompts_l, answers_l = [], []
        for _ in range(self.pool_batches):
            _, prompts, answers, rewards = self._group(sampler, self.group_size, self.reward)
            ok = rewards.flatten() > 0
            prompts_l.append(prompts[ok])
            answers_l.append(answers[ok])
        self.pool = [(torch.cat(prompts_l), torch.cat(answers_l))]

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        if step == 0 or (self.regenerate_every and step % self.regenerate_every == 0):
            self._regenerate(s.base if not self.regenerate_every else s.policy)
        prompts, answers = self.pool[0]
        if prompts.shape[0] == 0:  # nothing passed the verifier: a step that changes nothing
            zero = torch.stack([p.sum() for p in s.policy.parameters()]).sum() * 0.0
            return zero, {"pool": 0.0}
        pick = torch.randint(0, prompts.shape[0], (s.batch_size,), generator=s.gen)
        return _sft_loss(s.policy, prompts[pick], answers[pick]), {
            "pool": float(prompts.shape[0])}


class IterativeSFT(SelfSFT):
    """Self-SFT with samples regenerated from the current policy (approximately on-policy)."""

    name: ClassVar[str] = "iterative_sft"


_BETA = {"forward": 0.0, "reverse": 1.0}


class Distill(LMMethod):
    """On-policy distillation to pi_0 with a new-task demonstration of the same question in its
    prompt (a fixed teacher)."""

    name: ClassVar[str] = "distill"
    divergence: str
    beta: float

    def bind(self, setting: Setting) -> LMMethod:
        super().bind(setting)
        self.teacher_model = setting.base
        return self

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        digits, prompts = s.questions()
        answers = sample_answers(s.policy, prompts, s.task.answer_len, s.gen)
        student = s.policy(torch.cat([prompts, answers[:, :-1]], 1))[:, prompts.shape[1] - 1 :]
        with torch.no_grad():
            t_prompt = torch.cat([s.task.demo_prefix(prompts.shape[0], s.gen, digits=digits),
                                  prompts], 1)
            teacher = self.teacher_model(torch.cat([t_prompt, answers[:, :-1]], 1))[
                :, t_prompt.shape[1] - 1 :]
        beta = _BETA[self.divergence] if self.divergence in _BETA else self.beta
        return generalized_jsd(student, teacher, beta), {
            "reward": float(s.reward(digits, answers).mean())}


class SDFT(Distill):
    """Self-distillation: the demonstration-conditioned teacher is an EMA of the student,
    phi <- tau_ema theta + (1 - tau_ema) phi after every step (``teacher="ema"``), or the
    frozen base (``teacher="base"``)."""

    name: ClassVar[str] = "sdft"
    tau_ema: float
    teacher: str

    def bind(self, setting: Setting) -> LMMethod:
        LMMethod.bind(self, setting)
        self.teacher_model = (frozen_copy(setting.policy) if self.teacher == "ema"
                              else setting.base)
        return self

    def after_step(self, step: int) -> None:
        if self.teacher != "ema":
            return
        with torch.no_grad():
            for t, p in zip(self.teacher_model.parameters(), self.s.policy.parameters(),
                            strict=True):
                t.lerp_(p, self.tau_ema)


class TTTDiscover(LMMethod):
    """Entropic objective log E[e^{gamma R}] with leave-one-out advantages and adaptive gamma.

    With ``reuse`` K > 0 a buffer keeps the K highest-reward past samples (prompt, answer,
    reward, the sampler's log-probability); their rewards join every group's leave-one-out pool
    and they are trained on with their advantages (off-policy, as on the mixture; ``clip_eps``
    clips their ratio to the policy that drew them)."""

    name: ClassVar[str] = "ttt_discover"
    group_size: int
    kappa: float
    gamma: float
    adaptive_gamma: bool
    reuse: int
    clip_eps: float
    reward: str

    def bind(self, setting: Setting) -> LMMethod:
        super().bind(setting)
        task = setting.task
        self.buffer = (torch.empty((0, task.prompt_len), dtype=torch.long),
                       torch.empty((0, task.answer_len), dtype=torch.long),
                       torch.empty(0, dtype=torch.float64), torch.empty(0))
        return self

    def _advantages(self, rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Leave-one-out advantages and gamma per group (the buffer holds only real samples:
        its size grows to ``reuse``)."""
        if self.adaptive_gamma:
            gamma = adaptive_gamma(rewards)
        else:
            gamma = torch.full(rewards.shape[:-1], self.gamma, dtype=rewards.dtype)
        return entropic_loo_advantages(rewards, gamma), gamma

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        _, prompts, answers, rewards = self._group(s.policy, self.group_size, self.reward)
        tok = answer_token_logprobs(s.policy, prompts, answers)
        seq = sequence_logprob(tok)
        n_prompts = rewards.shape[0]
        if self.reuse == 0:
            adv, gamma = self._advantages(rewards)
            entries, old = seq, seq.detach()
        else:
            b_prompts, b_answers, b_rewards, b_old = self.buffer
            size = b_rewards.shape[0]
            adv, gamma = self._advantages(
                torch.cat([rewards, b_rewards.expand(n_prompts, size)], -1))
            b_seq = sequence_logprob(answer_token_logprobs(s.policy, b_prompts, b_answers))
            entries = torch.cat([seq.view(n_prompts, -1), b_seq.expand(n_prompts, size)], -1)
            old = torch.cat([seq.detach().view(n_prompts, -1), b_old.expand(n_prompts, size)],
                            -1)
            self._refill(prompts, answers, rewards.flatten(), seq.detach())
        adv = adv.flatten().float()
        entries, old = entries.flatten(), old.flatten()
        loss = (clipped_policy_loss(entries, old, adv, self.clip_eps) if self.clip_eps > 0
                else policy_gradient_loss(entries, adv))
        return _anchored(loss, self.kappa, s, tok, prompts, answers), {
            "reward": float(rewards.mean()), "gamma": float(gamma.mean())}

    def _refill(self, prompts: torch.Tensor, answers: torch.Tensor, rewards: torch.Tensor,
                logprobs: torch.Tensor) -> None:
        """Keep the ``reuse`` highest rewards of buffer and fresh samples (ties: older first)."""
        pools = [torch.cat([old, new]) for old, new in
                 zip(self.buffer, (prompts, answers, rewards, logprobs), strict=True)]
        best = torch.argsort(-pools[2], stable=True)[: self.reuse]
        self.buffer = (pools[0][best], pools[1][best], pools[2][best], pools[3][best])


class OAPL(LMMethod):
    """Squared log-ratio regression on samples of a lagged sampler synced every ``lag`` steps."""

    name: ClassVar[str] = "oapl"
    group_size: int
    tau_value: float
    tau_ratio: float
    lag: int
    reward: str

    def bind(self, setting: Setting) -> LMMethod:
        super().bind(setting)
        self.lagged = frozen_copy(setting.policy)
        return self

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        _, prompts, answers, rewards = self._group(self.lagged, self.group_size, self.reward)
        tok = answer_token_logprobs(s.policy, prompts, answers)
        with torch.no_grad():
            lag_tok = answer_token_logprobs(self.lagged, prompts, answers)
        g = self.group_size
        loss = oapl_loss(sequence_logprob(tok).view(-1, g).double(),
                         sequence_logprob(lag_tok).view(-1, g).double(), rewards,
                         self.tau_value, self.tau_ratio)
        return loss.float(), {"reward": float(rewards.mean())}

    def after_step(self, step: int) -> None:
        if (step + 1) % self.lag == 0:
            self.lagged.load_state_dict(self.s.policy.state_dict())


METHODS: dict[str, type[LMMethod]] = {
    cls.name: cls for cls in (SFT, ReplaySFT, RL, SelfSFT, IterativeSFT, Distill, SDFT,
                              TTTDiscover, OAPL)
}
"""The language-model classes by the table's name (:func:`forgetlab.vocabulary.method_names`)."""


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name:knob=value,knob=value"`` -> (name, knobs); values parsed as
    int, float or string."""
    name, _, rest = spec.partition(":")
    knobs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, raw = item.partition("=")
        if not eq:
            raise ValueError(f"method spec {spec!r}: knob {item!r} must be written key=value")
        value: Any = raw
        for conv in (int, float):
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        knobs[key.strip()] = value
    return name.strip(), knobs


def make_method(spec: str) -> LMMethod:
    """The method named by ``spec`` (see :func:`parse_method`; old spellings accepted);
    ValueError for an unknown name or knob, listing the allowed ones."""
    name, knobs = parse_method(spec)
    name = canonical_name(name)
    if name not in METHODS:
        raise ValueError(f"unknown method '{name}'; allowed: {', '.join(method_names('lm'))}")
    return METHODS[name](**knobs)
