"""Metrics of a post-trained checkpoint on the built-in task, against the pre-trained base.

* new-task accuracy: mean over new-task prompts of P(answer is a correct new answer), exact
  (teacher-forced probability of each correct string, summed over the accepted answers);
* the split of :func:`~forgetlab.lm.split.marker_split` on the old-measurement prompts with the
  marker ``A``: old mass, mass KL, old-component drift KL (sampled chain rule, fixed samples of
  pi_0 so every checkpoint is scored on the same continuations, the base's side computed once
  and cached), new-component change;
* old accuracy when produced: mean of P(correct old answer | x) / m(x);
* with several accepted new answers, the share of the correct new mass on shifts pre-training
  did not know (``new_other_shift_share``) and on the close answer (``new_close_share``).
"""

from __future__ import annotations

import torch

from forgetlab.lm.corpus import MARK_OLD, Task
from forgetlab.lm.model import GPT
from forgetlab.lm.sampling import CachedLogits, answer_token_logprobs
from forgetlab.lm.split import marker_split


class Evaluator:
    """Scores checkpoints on fixed prompt sets drawn once from ``seed``."""

    def __init__(
        self, task: Task, base: GPT, new_family: str, old_family: str, n_prompts: int = 64,
        n_samples: int = 16, seed: int = 1234,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.task, self.base, self.n_samples, self.seed = task, base, n_samples, seed
        self.base_fn = CachedLogits(base)  # the base side repeats at every evaluation
        self.new_digits = task.questions(n_prompts, gen)
        self.new_prompts = task.prompts(new_family, self.new_digits)
        self.old_digits = task.questions(n_prompts, gen)
        self.old_prompts = task.prompts(old_family, self.old_digits)
        self.base_metrics = self._scores(base)

    @torch.no_grad()
    def _scores(self, model: GPT) -> dict[str, float]:
        t = self.task
        probs = {name: answer_token_logprobs(model, self.new_prompts, correct).sum(-1).exp()
                 for name, correct in t.accepted_new_answers(self.new_digits).items()}
        new_acc = torch.stack(list(probs.values())).sum(0)
        out = {"new_task_acc": float(new_acc.mean())}
        other = [p for name, p in probs.items() if name.startswith("+")
                 and name != f"+{t.config.pretrain_shift}"]
        if other:  # share of the correct new mass on shifts pre-training did not know
            out["new_other_shift_share"] = float((sum(other) / new_acc.clamp_min(1e-12)).mean())
        if "close" in probs:  # share of the correct new mass on the answer closest to the old one
            out["new_close_share"] = float((probs["close"] / new_acc.clamp_min(1e-12)).mean())
        p_old = answer_token_logprobs(model, self.old_prompts, t.old_answers(self.old_digits))
        mass = torch.softmax(model(self.old_prompts)[:, -1], -1)[:, MARK_OLD]
        out["old_acc_when_produced"] = float((p_old.sum(-1).exp() / mass).mean())
        return out

    @torch.no_grad()
    def __call__(self, model: GPT) -> dict[str, float]:
        """Metrics of ``model``; ``*_gain``/``*_lost`` relative to the base."""
        scores = self._scores(model)
        split = marker_split(
            self.base_fn, model, self.old_prompts, MARK_OLD, self.task.answer_len,
            n_samples=self.n_samples, gen=torch.Generator().manual_seed(self.seed + 1),
        ).summary()
        return {
            **scores,
            "new_task_gain": scores["new_task_acc"] - self.base_metrics["new_task_acc"],
            "old_mass": split["old_mass"],
            "old_mass_lost": split["old_mass_lost"],
            "mass_kl": split["mass_kl"],
            "old_drift_kl": split["old_drift_kl"],
            "old_drift_kl_se": split["old_drift_kl_se"],
            "new_change_kl": split["new_change_kl"],
            "full_kl": split["full_kl"],
        }
