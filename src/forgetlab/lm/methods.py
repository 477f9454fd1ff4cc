"""Post-training methods on a causal LM, with the names and knobs of the mixture side.

Each method is a small object built by :func:`make_method` from a name and knobs; it holds its
own state (teacher, lagged sampler, filtered data) and returns the loss of one step from the
pure functions of :mod:`forgetlab.lm.losses`. The loop lives in :mod:`forgetlab.lm.train`.

Every method sees a :class:`Setting`: the policy pi_theta being trained, the frozen base pi_0,
the prompt family it trains on, the verifier, the target's old mass and the replay source. The
on-policy methods take a ``reward`` knob (:mod:`forgetlab.lm.target`): ``verifier`` (the
setting's), ``verifier_both``, ``verifier_new`` or ``target`` (log p* - log pi, reverse KL to
the explicit two-mode target; ``rl``, ``ttt_discover`` and ``oapl`` only).

=================  ==============================================================================
``sft``            token cross-entropy on new-task demonstrations (forward KL to p_new)
``replay_sft``     the same on a mixture: ``replay_fraction`` of the batch are old-task
                   demonstrations (p_old) on the replay prompts
``rl``             GRPO-style REINFORCE: G samples per prompt from pi_theta, group-normalised
                   advantages (mean-centred leave-one-out for ``reward=target``), no ratio or
                   clipping; ``kl_coef`` times
                   (1/2)(log pi_theta - log pi_0)^2 per sampled token
``rft``            rejection-sampling fine-tuning: SFT on reward-passing samples of pi_0 (0/1 kinds)
``iterative_sft``  the same, the samples regenerated from pi_theta every ``regenerate_every`` steps
``distill``        on-policy distillation: per-token divergence (``reverse`` | ``forward`` |
                   ``jsd`` with ``beta``) to a fixed teacher, pi_0 with a new-task
                   demonstration in its prompt, on the student's own samples
``sdft``           the same with the teacher's weights an EMA of the student's (``tau_ema``)
``ttt_discover``   entropic leave-one-out advantages, gamma by the ln 2 rule, ``kappa`` times the
                   squared log-ratio penalty to pi_0
``oapl``           squared log-ratio regression to r - V_hat on samples of a lagged sampler
                   synchronised every ``lag`` steps, temperature ``tau``
=================  ==============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch

from forgetlab.lm.corpus import Task
from forgetlab.lm.losses import (
    adaptive_gamma,
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
from forgetlab.lm.target import check_reward, target_logprob, verifier_reward
from forgetlab.lm.train import frozen_copy

VERIFIERS = ("verifier", "verifier_both", "verifier_new")


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


class LMMethod:
    """Base class: knobs are dataclass fields; subclasses implement :meth:`loss`."""

    name: ClassVar[str]

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
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

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


@dataclass
class SFT(LMMethod):
    """Cross-entropy on demonstrations; ``replay_fraction`` of each batch is old-task data."""

    name: ClassVar[str] = "sft"
    replay_fraction: float = 0.0

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


@dataclass
class ReplaySFT(SFT):
    """SFT with replay of old-task demonstrations (C6 with R = p_old)."""

    name: ClassVar[str] = "replay_sft"
    replay_fraction: float = 0.5


@dataclass
class RL(LMMethod):
    """GRPO-style REINFORCE and an optional penalty to the base model.

    With ``reward=target`` the advantage is the leave-one-out centred signal
    G/(G-1) (r_i - mean_j r_j), an unbiased estimate of the reverse-KL gradient's weight."""

    name: ClassVar[str] = "rl"
    group_size: int = 8
    kl_coef: float = 0.0
    reward: str = "verifier"

    def __post_init__(self) -> None:
        check_reward(self.reward)

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        _, prompts, answers, rewards = self._group(s.policy, self.group_size, self.reward)
        tok = answer_token_logprobs(s.policy, prompts, answers)
        if self.reward == "target":
            g = self.group_size
            adv = (g / (g - 1) * (rewards - rewards.mean(-1, keepdim=True))).flatten()
        else:
            adv = grpo_advantages(rewards).flatten()
        loss = policy_gradient_loss(sequence_logprob(tok), adv.float())
        if self.kl_coef > 0:
            with torch.no_grad():
                ref = answer_token_logprobs(s.base, prompts, answers)
            loss = loss + self.kl_coef * squared_log_ratio_penalty(tok, ref)
        return loss, {"reward": float(rewards.mean())}


@dataclass
class RFT(LMMethod):
    """SFT on verifier-passing samples: of pi_0 once (``regenerate_every`` = 0), or of the
    current policy every ``regenerate_every`` steps (iterative SFT)."""

    name: ClassVar[str] = "rft"
    group_size: int = 8
    regenerate_every: int = 0
    pool_batches: int = 4
    reward: str = "verifier"
    pool: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        check_reward(self.reward, VERIFIERS)

    def knobs(self) -> dict[str, Any]:
        return {k: v for k, v in super().knobs().items() if k != "pool"}

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


@dataclass
class IterativeSFT(RFT):
    """RFT with samples regenerated from the current policy (approximately on-policy)."""

    name: ClassVar[str] = "iterative_sft"
    regenerate_every: int = 10


_BETA = {"forward": 0.0, "reverse": 1.0}


@dataclass
class Distill(LMMethod):
    """On-policy distillation to pi_0 with a new-task demonstration in its prompt (fixed)."""

    name: ClassVar[str] = "distill"
    divergence: str = "reverse"
    beta: float = 0.5

    def __post_init__(self) -> None:
        if self.divergence not in ("reverse", "forward", "jsd"):
            raise ValueError(
                f"divergence must be 'reverse', 'forward' or 'jsd', got {self.divergence!r}")

    def bind(self, setting: Setting) -> LMMethod:
        super().bind(setting)
        self.teacher = setting.base
        return self

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        digits, prompts = s.questions()
        answers = sample_answers(s.policy, prompts, s.task.answer_len, s.gen)
        demo = s.task.demo_prefix(prompts.shape[0], s.gen)
        student = s.policy(torch.cat([prompts, answers[:, :-1]], 1))[:, prompts.shape[1] - 1 :]
        with torch.no_grad():
            t_prompt = torch.cat([demo, prompts], 1)
            teacher = self.teacher(torch.cat([t_prompt, answers[:, :-1]], 1))[
                :, t_prompt.shape[1] - 1 :]
        beta = _BETA.get(self.divergence, self.beta)
        return generalized_jsd(student, teacher, beta), {
            "reward": float(s.reward(digits, answers).mean())}


@dataclass
class SDFT(Distill):
    """Self-distillation: the demonstration-conditioned teacher is an EMA of the student,
    phi <- tau_ema theta + (1 - tau_ema) phi after every step."""

    name: ClassVar[str] = "sdft"
    tau_ema: float = 0.01

    def bind(self, setting: Setting) -> LMMethod:
        LMMethod.bind(self, setting)
        self.teacher = frozen_copy(setting.policy)
        return self

    def after_step(self, step: int) -> None:
        with torch.no_grad():
            for t, p in zip(self.teacher.parameters(), self.s.policy.parameters(), strict=True):
                t.lerp_(p, self.tau_ema)


@dataclass
class TTTDiscover(LMMethod):
    """Entropic objective log E[e^{gamma R}] with leave-one-out advantages and adaptive gamma."""

    name: ClassVar[str] = "ttt_discover"
    group_size: int = 8
    kappa: float = 0.0
    gamma_max: float = 10.0
    reward: str = "verifier"

    def __post_init__(self) -> None:
        check_reward(self.reward)

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.s
        _, prompts, answers, rewards = self._group(s.policy, self.group_size, self.reward)
        gamma = adaptive_gamma(rewards, gamma_max=self.gamma_max)
        adv = entropic_loo_advantages(rewards, gamma).flatten()
        tok = answer_token_logprobs(s.policy, prompts, answers)
        loss = policy_gradient_loss(sequence_logprob(tok), adv.float())
        if self.kappa > 0:
            with torch.no_grad():
                ref = answer_token_logprobs(s.base, prompts, answers)
            loss = loss + self.kappa * squared_log_ratio_penalty(tok, ref)
        return loss, {"reward": float(rewards.mean()), "gamma": float(gamma.mean())}


@dataclass
class OAPL(LMMethod):
    """Squared log-ratio regression on samples of a lagged sampler synced every ``lag`` steps."""

    name: ClassVar[str] = "oapl"
    group_size: int = 8
    tau: float = 1.0
    lag: int = 10
    reward: str = "verifier"

    def __post_init__(self) -> None:
        check_reward(self.reward)

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
                         sequence_logprob(lag_tok).view(-1, g).double(), rewards, self.tau)
        return loss.float(), {"reward": float(rewards.mean())}

    def after_step(self, step: int) -> None:
        if (step + 1) % self.lag == 0:
            self.lagged.load_state_dict(self.s.policy.state_dict())


METHODS: dict[str, type[LMMethod]] = {
    cls.name: cls for cls in (SFT, ReplaySFT, RL, RFT, IterativeSFT, Distill, SDFT, TTTDiscover,
                              OAPL)
}


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
    """The method named by ``spec`` (see :func:`parse_method`); ValueError for an unknown name
    or knob, listing the allowed ones."""
    name, knobs = parse_method(spec)
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    cls = METHODS[name]
    allowed = [f.name for f in fields(cls) if f.name != "pool"]  # type: ignore[arg-type]
    for key in knobs:
        if key not in allowed:
            raise ValueError(f"method {name!r} has no knob {key!r}; knobs: {', '.join(allowed)}")
    return cls(**knobs)
