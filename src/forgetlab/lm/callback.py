"""Forgetting measured during training: a ``transformers`` callback for Trainer and TRL.

:class:`ForgettingCallback` splits KL(pi_0 || pi_t) of the model being trained (pi_t) against
its state at the start of training (pi_0, or a given base model) on a fixed prompt set, with
the marker or classifier split of :mod:`forgetlab.lm.hf`, every ``every_n_steps`` optimizer
steps and/or at every evaluation. It logs ``forgetting/old_mass``, ``forgetting/mass_kl``,
``forgetting/old_drift_kl``, ``forgetting/new_change_kl``, ``forgetting/full_kl`` (and
``forgetting/old_mass_base``) with their standard errors (``..._se``) through
``trainer.log``, so the trainer's log history and every ``report_to`` backend receive them.

The KLs are exact token-level KLs along sampled answers (not KLs of sampled tokens). The base
side is computed once: the base model is a frozen copy, the random generator is re-seeded at
every measurement, so the base's samples and forward passes repeat and are served from a cache
(up to ``cache_mb`` megabytes; beyond it they are recomputed from the frozen copy, with the
same numbers). Re-seeding also makes successive measurements use the same base samples
(common random numbers), so their differences are less noisy than their values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from forgetlab.lm.hf import (
    HFLogits,
    Prompt,
    check_split_options,
    context_length,
    prepare_prompts,
    split_in_eval_mode,
    text_classifier,
)
from forgetlab.lm.sampling import CachedLogits

LOGGED = ("old_mass_base", "old_mass", "mass_kl", "old_drift_kl", "new_change_kl", "full_kl")


def frozen_copy(model: Any) -> Any:
    """A deep copy of ``model`` that computes with its own weights.

    Trainers wrap ``forward`` as an instance attribute (mixed-precision output casts, gradient
    checkpointing): a plain deep copy keeps that wrapper, which still calls the *original*
    module, so the "frozen" copy would follow training. The copies of such wrappers are
    dropped, leaving each module's class ``forward`` bound to the copy.
    """
    base = copy.deepcopy(model)
    for module in base.modules():
        module.__dict__.pop("forward", None)
    return base


class ForgettingCallback(TrainerCallback):
    """Log mass forgetting and old-component drift of the model under training.

    ``tokenizer``: the model's tokenizer; ``prompts``: strings or chat message lists (rendered
    with the chat template if ``chat_template`` or for messages); exactly one of ``marker``
    (text the old mode's answers start with, tokenised after each prompt) and ``classifier``
    (regular expression or callable ``str -> bool``, true for old answers). ``trainer``: pass
    it (or call :meth:`attach`) so the values go through ``trainer.log``; without it they are
    appended to ``state.log_history`` only. ``base_model``: the reference pi_0 (default: a
    frozen copy of the model at the start of training). Measures every ``every_n_steps``
    steps (None: never by step) and, if ``at_evaluate``, at every evaluation.
    """

    def __init__(
        self, tokenizer: Any, prompts: Sequence[Prompt], *, marker: str | None = None,
        classifier: str | Callable[[str], bool] | None = None, trainer: Any = None,
        base_model: Any = None, every_n_steps: int | None = None, at_evaluate: bool = True,
        max_new_tokens: int = 16, n_samples: int = 16, seed: int = 0,
        chat_template: bool = False, batch_size: int = 64, target_se: float | None = None,
        max_samples: int | None = None, prefix: str = "forgetting/", cache_mb: float = 512.0,
    ) -> None:
        check_split_options(marker, classifier, n_samples, target_se)
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        if not prompts:
            raise ValueError("prompts: give at least one prompt")
        self.tokenizer, self.prompts = tokenizer, list(prompts)
        self.marker = marker
        self.classify = None if classifier is None else text_classifier(tokenizer, classifier)
        self.trainer, self.base_model = trainer, base_model
        self.every_n_steps, self.at_evaluate = every_n_steps, at_evaluate
        self.max_new_tokens, self.n_samples, self.seed = max_new_tokens, n_samples, seed
        self.chat_template, self.batch_size = chat_template, batch_size
        self.target_se, self.max_samples = target_se, max_samples
        self.prefix, self.cache_mb = prefix, cache_mb
        self.base_fn: CachedLogits | None = None
        self.history: list[dict[str, float]] = []
        self._prep: Any = None
        self._last_step: int | None = None

    def attach(self, trainer: Any) -> ForgettingCallback:
        """Register on ``trainer`` (``trainer.add_callback``) and log through it."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def setup(self, model: Any) -> None:
        """Freeze the reference (a copy of ``model`` unless ``base_model`` was given) and
        tokenise the prompts; called at the start of training, or by the first measurement."""
        base = self.base_model
        if base is None:  # our own copy: frozen; a given base model is left as it is
            base = frozen_copy(model)
            base.eval()
            for p in base.parameters():
                p.requires_grad_(False)
        self.base_model = base
        self.base_fn = CachedLogits(HFLogits(base, self.batch_size), self.cache_mb)
        self._prep = prepare_prompts(self.tokenizer, self.prompts, marker=self.marker,
                                     max_new_tokens=self.max_new_tokens,
                                     context=context_length(base),
                                     chat_template=self.chat_template)

    @torch.no_grad()
    def measure(self, model: Any) -> dict[str, float]:
        """The split of KL(base || model) on the prompts: ``{prefix + term: value}`` with
        ``..._se`` standard errors (prompt averages)."""
        if self.base_fn is None:
            self.setup(model)
        assert self.base_fn is not None
        split = split_in_eval_mode(
            (model, self.base_model), self.base_fn, HFLogits(model, self.batch_size),
            self.tokenizer, self._prep, classify=self.classify,
            max_new_tokens=self.max_new_tokens, n_samples=self.n_samples, seed=self.seed,
            target_se=self.target_se, max_samples=self.max_samples)
        s = split.summary()
        out = {}
        for k in LOGGED:
            out[self.prefix + k] = s[k]
            out[self.prefix + k + "_se"] = s[f"{k}_se"]
        return out

    def _record(self, state: Any, model: Any) -> dict[str, float]:
        metrics = self.measure(model)
        self._last_step = state.global_step
        self.history.append({"step": state.global_step, **metrics})
        if self.trainer is not None:
            self.trainer.log(dict(metrics))
        else:
            state.log_history.append({**metrics, "step": state.global_step})
        return metrics

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if self.base_fn is None and model is not None:
            self.setup(model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    **kwargs: Any) -> None:
        n = self.every_n_steps
        if n is not None and model is not None and state.global_step % n == 0 \
                and self._last_step != state.global_step:
            self._record(state, model)

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self.at_evaluate or model is None:
            return
        values = (self.history[-1] if self._last_step == state.global_step and self.history
                  else self._record(state, model))
        if metrics is not None:
            metrics.update({k: v for k, v in values.items() if k != "step"})
