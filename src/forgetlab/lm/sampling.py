"""Scoring and sampling answers of a causal LM given as a logits function.

Every function takes ``logits_fn``: token ids ``[B, T]`` -> next-token logits ``[B, T, V]``
(a :class:`~forgetlab.lm.model.GPT`, or a wrapped Hugging Face model). An *answer* is the
continuation of a prompt: ``answers[:, t]`` is drawn from ``pi(. | prompt, answers[:, :t])``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

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


def _key(*parts: Any) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            h.update(str((p.dtype, tuple(p.shape))).encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(p).encode())
    return h.digest()


class CachedLogits:
    """A logits function (and its sampler) that remembers its outputs for repeated inputs.

    ``fn`` is a logits function; its own ``sample_answers`` (e.g. KV-cached) is used when it has
    one, else :func:`sample_answers`.
    Sampling is cached by (inputs, generator state) and restores the generator's state after
    the draw, so a hit is exactly the draw a miss would make. ``limit_mb`` caps the memory.
    """

    def __init__(self, fn: LogitsFn, limit_mb: float = 512.0) -> None:
        self.fn = fn
        self.device = getattr(fn, "device", torch.device("cpu"))
        self.limit = int(limit_mb * 2**20)
        self.used = 0
        self.hits = self.misses = 0
        self._store: dict[bytes, Any] = {}

    def _keep(self, key: bytes, value: Any, size: int) -> None:
        if self.used + size <= self.limit:
            self._store[key] = value
            self.used += size

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        key = _key("logits", ids)
        if key in self._store:
            self.hits += 1
            return self._store[key]
        self.misses += 1
        out = self.fn(ids)
        self._keep(key, out, out.numel() * out.element_size())
        return out

    def sample_answers(self, prompts: torch.Tensor, length: int, gen: torch.Generator,
                       **kw: Any) -> torch.Tensor:
        key = _key("sample", prompts, length, gen.get_state(),
                   *[x for k, v in sorted(kw.items()) for x in (k, v)])
        if key in self._store:
            self.hits += 1
            out, state = self._store[key]
            gen.set_state(state)
            return out
        self.misses += 1
        own = getattr(self.fn, "sample_answers", None)
        out = (own(prompts, length, gen, **kw) if own is not None
               else sample_answers(self.fn, prompts, length, gen, **kw))
        self._keep(key, (out, gen.get_state()), out.numel() * out.element_size())
        return out
