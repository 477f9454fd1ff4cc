"""The exact split of KL(pi_0 || pi) into mass forgetting, old-component drift and new change.

For a prompt x, with m(x) = P(mode = old | x) and the mode-conditional answer distributions,
the chain rule gives

    KL(pi_0(.|x) || pi(.|x)) = KL_Bern(m_0(x) || m(x))                  (mass forgetting)
                             + m_0(x) KL(pi_0(.|x, old) || pi(.|x, old))  (old-component drift)
                             + (1 - m_0(x)) KL(pi_0(.|x, new) || pi(.|x, new))  (new change).

Two ways to define the mode:

* a **marker token** (:func:`marker_split`): old iff the first answer token is the marker.
  m(x) is read from one softmax, exactly. The conditional KLs are sums of exact token-level KLs
  along the answer (chain rule), taken either over every continuation (``exact=True``, for an
  enumerable answer space) or over continuations sampled from pi_0 (unbiased, with standard
  errors);
* a **classifier** c(y) in {old, new} (:func:`classifier_split`): answers y_i ~ pi_0 are
  classified; m_0 is the old fraction, m the self-normalised importance-weighted estimate
  sum_old w_i / sum_i w_i with w_i = pi(y_i) / pi_0(y_i), and the conditional KLs are
  mean_c(log pi_0(y) - log pi(y)) - log m_0 + log m (for the old class; likewise for the new
  one), so the three terms add up to the plug-in full KL mean(log pi_0(y) - log pi(y)) exactly.
  Standard errors by the jackknife over samples.

An answer is ``answer_len`` tokens, or fewer if it ends with ``eos_id`` (positions after the
first EOS do not count).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from forgetlab.lm.losses import sequence_logprob, token_kl
from forgetlab.lm.sampling import (
    LogitsFn,
    answer_log_softmax,
    answer_mask,
    answer_token_logprobs,
    sample_answers,
)

MAX_ENUMERATION = 200_000


@dataclass
class Split:
    """Per-prompt terms of the split, each ``[N]`` (``*_se`` standard errors, 0 when exact)."""

    old_mass_base: torch.Tensor
    old_mass: torch.Tensor
    mass_kl: torch.Tensor
    old_drift_kl: torch.Tensor
    new_change_kl: torch.Tensor
    old_drift_se: torch.Tensor
    new_change_se: torch.Tensor
    full_kl_se: torch.Tensor
    old_mass_se: torch.Tensor

    @property
    def full_kl(self) -> torch.Tensor:
        """KL(pi_0 || pi) per prompt: the sum of the three weighted terms."""
        m0 = self.old_mass_base
        return self.mass_kl + m0 * self.old_drift_kl + (1 - m0) * self.new_change_kl

    def summary(self) -> dict[str, float]:
        """Averages over the prompt set and their standard errors (sampling noise only)."""
        n = self.old_mass.numel()

        def se(x: torch.Tensor) -> float:
            return float(x.pow(2).sum().sqrt() / n)

        return {
            "prompts": n,
            "old_mass_base": float(self.old_mass_base.mean()),
            "old_mass": float(self.old_mass.mean()),
            "old_mass_se": se(self.old_mass_se),
            "old_mass_lost": float((self.old_mass_base - self.old_mass).mean()),
            "mass_kl": float(self.mass_kl.mean()),
            "old_drift_kl": float(self.old_drift_kl.mean()),
            "old_drift_kl_se": se(self.old_drift_se),
            "new_change_kl": float(self.new_change_kl.mean()),
            "new_change_kl_se": se(self.new_change_se),
            "full_kl": float(self.full_kl.mean()),
            "full_kl_se": se(self.full_kl_se),
        }


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(Bern(p) || Bern(q)) = p log(p/q) + (1-p) log((1-p)/(1-q)), with 0 log 0 = 0."""
    p = p.double()
    q = q.double()
    a = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    b = torch.where(p < 1, (1 - p) * (torch.log1p(-p) - torch.log1p(-q)), torch.zeros_like(p))
    return a + b


def _check(prompts: torch.Tensor, answer_len: int) -> None:
    if prompts.dim() != 2 or prompts.shape[0] < 1 or prompts.shape[1] < 1:
        raise ValueError(
            f"prompts must be a non-empty [N, P] tensor, got shape {tuple(prompts.shape)}")
    if answer_len < 1:
        raise ValueError(f"answer_len must be >= 1, got {answer_len}")


def _continuation_kls(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, answers: torch.Tensor,
    eos_id: int | None, weight_upto: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For answers ``[K, T]`` (prompts ``[K, P]`` or one ``[1, P]``): sum_{t >= 1} KL_t, the
    exact token KLs after the first token at counted positions ``[K]``, and log pi_0 of the
    tokens 1..``weight_upto``-1 (default all) given the first, EOS or not ``[K]``."""
    p = prompts.expand(answers.shape[0], -1)
    lb = answer_log_softmax(base_fn, p, answers).double()
    lt = answer_log_softmax(tuned_fn, p, answers).double()
    # position t's distribution counts if no EOS is among tokens 0..t-1
    if eos_id is None:
        counts = torch.ones_like(answers[:, 1:], dtype=torch.bool)
    else:
        counts = (answers[:, :-1] == eos_id).long().cumsum(dim=1) == 0
    kls = (token_kl(lb[:, 1:], lt[:, 1:]) * counts).sum(-1)
    tok = lb[:, 1:].gather(-1, answers[:, 1:, None]).squeeze(-1)
    upto = answers.shape[1] if weight_upto is None else weight_upto
    # all enumerated tokens weigh in, also after an EOS: summing them out must give one
    return kls, tok[:, : upto - 1].sum(-1)


@torch.no_grad()
def marker_split(
    base_fn: LogitsFn,
    tuned_fn: LogitsFn,
    prompts: torch.Tensor,
    marker_id: int,
    answer_len: int,
    *,
    exact: bool = False,
    n_samples: int = 16,
    gen: torch.Generator | None = None,
    eos_id: int | None = None,
    vocab_size: int | None = None,
) -> Split:
    """The split with a mode marker (the first answer token; old iff it equals ``marker_id``).

    ``prompts [N, P]`` (equal lengths; call once per prompt for ragged prompt sets). m_0 and m
    are exact. With ``exact=True`` every continuation is enumerated (needs ``vocab_size`` and
    vocab_size^(answer_len - 1) <= 200000), so every term is exact. Otherwise ``n_samples``
    continuations per mode and prompt are drawn from pi_0 with ``gen`` (old: first token =
    marker; new: first token from pi_0 restricted to non-markers) and the conditional KLs are
    the means of the exact token-KL sums along them (a Rao-Blackwellised chain rule; the new
    branch's first-token term is exact), with standard errors.
    """
    _check(prompts, answer_len)
    if exact:
        if vocab_size is None:
            raise ValueError("exact=True needs vocab_size")
        size = vocab_size ** (answer_len - 1)
        if size > MAX_ENUMERATION:
            raise ValueError(
                f"answer space too large to enumerate ({vocab_size}^{answer_len - 1} = {size}); "
                "use exact=False")
    elif n_samples < 2 or gen is None:
        raise ValueError("sampled split needs n_samples >= 2 and a torch.Generator gen")
    n = prompts.shape[0]
    lb = torch.log_softmax(base_fn(prompts)[:, -1].double(), dim=-1)  # [N, V]
    lt = torch.log_softmax(tuned_fn(prompts)[:, -1].double(), dim=-1)
    m0, m = lb[:, marker_id].exp(), lt[:, marker_id].exp()
    keep = torch.ones(lb.shape[1], dtype=torch.bool)
    keep[marker_id] = False
    # first-token KL of the new branch: both distributions renormalised over non-marker tokens
    first_new = token_kl(lb[:, keep] - torch.log1p(-m0)[:, None],
                         lt[:, keep] - torch.log1p(-m)[:, None])
    if exact:
        old, new = _exact_branches(base_fn, tuned_fn, prompts, marker_id, answer_len, eos_id,
                                   lb, keep)
        new = first_new + new / (1 - m0)
        old_se = new_se = torch.zeros(n, dtype=torch.float64)
    else:
        assert gen is not None
        k = n_samples
        rep = prompts.repeat_interleave(k, dim=0)
        old_ans = sample_answers(base_fn, rep, answer_len, gen,
                                 first=torch.full((n * k,), marker_id))
        new_ans = sample_answers(base_fn, rep, answer_len, gen, first_allowed=keep)
        old_k = _continuation_kls(base_fn, tuned_fn, rep, old_ans, eos_id)[0].view(n, k)
        new_k = _continuation_kls(base_fn, tuned_fn, rep, new_ans, eos_id)[0].view(n, k)
        old, new = old_k.mean(1), first_new + new_k.mean(1)
        old_se, new_se = old_k.std(1) / math.sqrt(k), new_k.std(1) / math.sqrt(k)
    return Split(
        old_mass_base=m0, old_mass=m, mass_kl=bernoulli_kl(m0, m),
        old_drift_kl=old, new_change_kl=new, old_drift_se=old_se, new_change_se=new_se,
        full_kl_se=((m0 * old_se) ** 2 + ((1 - m0) * new_se) ** 2).sqrt(),
        old_mass_se=torch.zeros_like(m),
    )


@torch.no_grad()
def exact_old_drift(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, marker_id: int,
    answer_len: int, vocab_size: int, eos_id: int | None = None,
) -> torch.Tensor:
    """KL(pi_0(.|x, old) || pi(.|x, old)) per prompt ``[N]``, exactly, batched over prompts.

    The old branch of :func:`marker_split` with ``exact=True``: the continuations after the
    marker are enumerated up to their second-to-last token (vocab_size^(answer_len - 2) per
    prompt, at most 200000 over the whole prompt set), each position's exact token KL weighted
    by pi_0 of its prefix.
    """
    _check(prompts, answer_len)
    n = prompts.shape[0]
    if answer_len == 1:
        return torch.zeros(n, dtype=torch.float64)
    k = vocab_size ** (answer_len - 2)
    if n * k > MAX_ENUMERATION:
        raise ValueError(
            f"old branch too large to enumerate ({n} prompts x {vocab_size}^{answer_len - 2} = "
            f"{n * k}, at most {MAX_ENUMERATION}); use the sampled split")
    combos = list(itertools.product(range(vocab_size), repeat=answer_len - 2))
    rest = torch.tensor(combos, dtype=torch.long).reshape(k, answer_len - 2)
    ans = torch.cat([torch.full((k, 1), marker_id), rest, torch.zeros((k, 1), dtype=torch.long)],
                    dim=1).repeat(n, 1)
    kls, logw = _continuation_kls(base_fn, tuned_fn, prompts.repeat_interleave(k, dim=0), ans,
                                  eos_id, weight_upto=answer_len - 1)
    return (logw.exp() * kls).view(n, k).sum(1)


def _exact_branches(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, marker_id: int,
    answer_len: int, eos_id: int | None, lb: torch.Tensor, keep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """By enumeration, per prompt: E_{pi_0(.|old)}[sum_{t>=1} KL_t] and
    sum_{v not marker} pi_0(v) E_{pi_0(.|v)}[sum_{t>=1} KL_t] (the new branch, unnormalised).

    Answers are enumerated up to their second-to-last token: weighting each position's KL by
    pi_0 of all enumerated tokens sums the later tokens out, leaving pi_0 of its own prefix.
    """
    vocab = lb.shape[1]
    n = prompts.shape[0]
    old = torch.zeros(n, dtype=torch.float64)
    new = torch.zeros(n, dtype=torch.float64)
    if answer_len == 1:
        return old, new
    combos = list(itertools.product(range(vocab), repeat=answer_len - 2))
    rest = torch.tensor(combos, dtype=torch.long).reshape(len(combos), answer_len - 2)
    last = torch.zeros((rest.shape[0], 1), dtype=torch.long)  # fed nowhere: a placeholder
    for i in range(n):
        prompt = prompts[i : i + 1]
        for tok in [marker_id, *keep.nonzero().flatten().tolist()]:
            ans = torch.cat([torch.full((rest.shape[0], 1), tok), rest, last], dim=1)
            kls, logw = _continuation_kls(base_fn, tuned_fn, prompt, ans, eos_id,
                                          weight_upto=answer_len - 1)
            value = (logw.exp() * kls).sum()
            if tok == marker_id:
                old[i] = value
            else:
                new[i] += lb[i, tok].exp() * value
    return old, new


def _classifier_terms(
    old: torch.Tensor, log_ratio: torch.Tensor
) -> tuple[float, float, float, float]:
    """Plug-in (m_0, m, KL_old, KL_new) from classes ``old [K]`` and log(pi_0/pi) ``[K]``."""
    k = old.numel()
    n_old = int(old.sum())
    m0 = n_old / k
    w = torch.exp(-(log_ratio - log_ratio.min()))  # pi/pi_0 up to a common factor
    m = float(w[old].sum() / w.sum())
    kl_old = float(log_ratio[old].mean()) - math.log(m0) + math.log(m) if n_old else 0.0
    kl_new = (float(log_ratio[~old].mean()) - math.log1p(-m0) + math.log1p(-m)
              if n_old < k else 0.0)
    return m0, m, kl_old, kl_new


@torch.no_grad()
def classifier_split(
    base_fn: LogitsFn,
    tuned_fn: LogitsFn,
    prompts: torch.Tensor,
    classify: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    answer_len: int,
    *,
    n_samples: int,
    gen: torch.Generator,
    eos_id: int | None = None,
) -> Split:
    """The split with a classifier ``classify(answers [K, T], mask [K, T]) -> bool [K]`` (old).

    Importance-weighted estimates from ``n_samples`` answers per prompt drawn from pi_0 (module
    docstring); standard errors by the jackknife. A class with no sample gets KL 0 for its
    conditional (its weight m_0 is then 0 as well).
    """
    _check(prompts, answer_len)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    rows = []
    for i in range(prompts.shape[0]):
        rep = prompts[i : i + 1].expand(n_samples, -1)
        ans = sample_answers(base_fn, rep, answer_len, gen)
        mask = answer_mask(ans, eos_id)
        lb = sequence_logprob(answer_token_logprobs(base_fn, rep, ans).double(), mask)
        lt = sequence_logprob(answer_token_logprobs(tuned_fn, rep, ans).double(), mask)
        old = classify(ans, mask).bool()
        log_ratio = lb - lt
        full = _classifier_terms(old, log_ratio)
        loo = torch.tensor([
            _classifier_terms(old[torch.arange(n_samples) != j],
                              log_ratio[torch.arange(n_samples) != j])
            for j in range(n_samples)], dtype=torch.float64)
        loo = torch.cat([loo, loo[:, :1] * loo[:, 2:3] + (1 - loo[:, :1]) * loo[:, 3:4]
                         + bernoulli_kl(loo[:, 0], loo[:, 1])[:, None]], dim=1)
        jack = ((n_samples - 1) / n_samples * (loo - loo.mean(0)).pow(2).sum(0)).sqrt()
        rows.append([*full, *jack.tolist()])
    t = torch.tensor(rows, dtype=torch.float64)
    return Split(
        old_mass_base=t[:, 0], old_mass=t[:, 1], mass_kl=bernoulli_kl(t[:, 0], t[:, 1]),
        old_drift_kl=t[:, 2], new_change_kl=t[:, 3], old_mass_se=t[:, 5],
        old_drift_se=t[:, 6], new_change_se=t[:, 7], full_kl_se=t[:, 8],
    )
