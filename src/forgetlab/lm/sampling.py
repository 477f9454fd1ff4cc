"""Scoring and sampling answers of a causal LM given as a logits function.

Every function takes ``logits_fn``: token ids ``[B, T]`` -> next-token logits ``[B, T, V]``
(a :class:`~forgetlab.lm.model.GPT`, or a wrapped Hugging Face model). An *answer* is the
continuation of a prompt: ``answers[:, t]`` is drawn from ``pi(. | prompt, answers[:, :t])``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def answer_log_softmax(
    logits_fn: LogitsFn, prompts: torch.Tensor, answers: torch.Tensor
) -> torch.Tensor:
    """log pi(. | prompt, answer_{<t}) at every answer position: ``[B, T, V]``.

    ``prompts [B, P]`` and ``answers [B, T]`` (T >= 1); the last answer token is not fed in.
    """
    ids = torch.cat([prompts, answers[:, :-1]], dim=1)
    logits = logits_fn(ids)[:, prompts.shape[1] - 1 :]
    return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)


def answer_token_logprobs(
    logits_fn: LogitsFn, prompts: torch.Tensor, answers: torch.Tensor
) -> torch.Tensor:
    """log pi(answer_t | prompt, answer_{<t}) ``[B, T]``."""
    logp = answer_log_softmax(logits_fn, prompts, answers)
    return logp.gather(-1, answers[..., None]).squeeze(-1)


def answer_mask(answers: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Bool ``[B, T]``: positions that belong to the answer (up to and including the first EOS)."""
    if eos_id is None:
        return torch.ones_like(answers, dtype=torch.bool)
    ended = (answers == eos_id).long().cumsum(dim=1)
    return (ended - (answers == eos_id).long()) == 0


@torch.no_grad()
def sample_answers(
    logits_fn: LogitsFn,
    prompts: torch.Tensor,
    length: int,
    gen: torch.Generator,
    *,
    first: torch.Tensor | None = None,
    first_allowed: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sample ``length`` answer tokens per prompt row ``[B, length]`` with generator ``gen``.

    ``first [B]`` forces the first answer token; ``first_allowed`` (bool ``[V]``) restricts the
    first token to a subset, renormalising pi over it (sampling from pi(. | first in subset)).
    Tokens after an EOS are sampled too; :func:`answer_mask` tells which ones count.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out = torch.empty((prompts.shape[0], 0), dtype=torch.long, device=prompts.device)
    for t in range(length):
        if t == 0 and first is not None:
            nxt = first.reshape(-1, 1).to(prompts.device)
        else:
            logits = logits_fn(torch.cat([prompts, out], dim=1))[:, -1].float() / temperature
            if t == 0 and first_allowed is not None:
                logits = logits.masked_fill(~first_allowed.to(logits.device), float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=gen).to(prompts.device)
        out = torch.cat([out, nxt], dim=1)
    return out
