"""The exact split of KL(pi_0 || pi) into mass forgetting, old-component drift and new change.

For a prompt x, with m(x) = P(mode = old | x) and the mode-conditional answer distributions,
the chain rule gives

    KL(pi_0(.|x) || pi(.|x)) = KL_Bern(m_0(x) || m(x))                  (mass forgetting)
                             + m_0(x) KL(pi_0(.|x, old) || pi(.|x, old))  (old-component drift)
                             + (1 - m_0(x)) KL(pi_0(.|x, new) || pi(.|x, new))  (new change).

Two ways to define the mode:

* a **marker** (:func:`marker_split`): old iff the answer starts with the marker tokens
  k_1..k_L (one token or several). m(x) = prod_j pi(k_j | x, k_<j) is exact by the chain rule.
  A new answer leaves the marker path at a first position j with a token v != k_j; the law of
  (j, v) is exact too (one forward pass along the path). The conditional KLs are that exact
  deviation KL plus sums of exact token-level KLs along the rest of the answer, taken either
  over every continuation (``exact=True``, for an enumerable answer space) or over
  continuations sampled from pi_0 (unbiased, with standard errors);
* a **classifier** c(y) in {old, new} (:func:`classifier_split`), two-sided: n answers are
  drawn from pi_0 and n from pi, and every quantity is a multiple-importance-sampling estimate
  over the pooled 2n answers with the balance-heuristic weights w_0 = pi_0/q, w = pi/q,
  q = (pi_0 + pi)/2 (both bounded by 2). m_0 = sum_old w_0 / sum w_0, m = sum_old w / sum w,
  E_{pi_0|c}[log pi_0 - log pi] likewise, and the conditional KLs are
  E_{pi_0|c}[log pi_0 - log pi] - log m_0 + log m (old; likewise new), so the three terms add
  up to the estimate sum w_0 (log pi_0 - log pi) / sum w_0 of the full KL exactly. Mass that
  the tuned model moves to answers the base never produces is seen by pi's own samples and
  counted as mass. Standard errors for every term by the stratified delete-one jackknife
  (within the pi_0 and the pi samples).

An answer is ``answer_len`` tokens, or fewer if it ends with ``eos_id`` (positions after the
first EOS do not count). With ``target_se``, samples are added per prompt (doubling) until the
standard errors of the old mass and of each term's contribution to the full KL (mass KL,
m_0 x drift, (1 - m_0) x new change, full KL) are at most ``target_se``, or ``max_samples``
is reached.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

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
TINY = torch.finfo(torch.float64).tiny
ESS_MIN = 10.0  # effective samples below which a conditional's estimate is flagged

Classify = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Split:
    """Per-prompt terms of the split, each ``[N]`` (``*_se`` standard errors, 0 when exact).

    ``samples`` are the answers drawn per prompt (per mode for the marker split; per side for
    the classifier split); ``ess_old``/``ess_new`` (classifier split only) the effective numbers
    of samples behind E_{pi_0|old} and E_{pi_0|new}, ``overlap`` the effective-sample fraction
    of plain importance weights pi/pi_0 on the base samples (1: the models agree; near 0: a
    one-sided estimator from base samples would be blind).
    """

    old_mass_base: torch.Tensor
    old_mass: torch.Tensor
    mass_kl: torch.Tensor
    old_drift_kl: torch.Tensor
    new_change_kl: torch.Tensor
    old_drift_se: torch.Tensor
    new_change_se: torch.Tensor
    full_kl_se: torch.Tensor
    old_mass_se: torch.Tensor
    old_mass_base_se: torch.Tensor | None = None
    mass_kl_se: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    ess_old: torch.Tensor | None = None
    ess_new: torch.Tensor | None = None
    overlap: torch.Tensor | None = None

    def __post_init__(self) -> None:
        zeros = torch.zeros_like(self.old_mass, dtype=torch.float64)
        if self.old_mass_base_se is None:
            self.old_mass_base_se = zeros
        if self.mass_kl_se is None:
            self.mass_kl_se = zeros

    @property
    def full_kl(self) -> torch.Tensor:
        """KL(pi_0 || pi) per prompt: the sum of the three weighted terms."""
        m0 = self.old_mass_base
        return self.mass_kl + m0 * self.old_drift_kl + (1 - m0) * self.new_change_kl

    @classmethod
    def cat(cls, splits: Sequence[Split]) -> Split:
        """The per-prompt rows of several splits, one after the other."""
        out: dict[str, Any] = {}
        for f in fields(cls):
            parts = [getattr(s, f.name) for s in splits]
            out[f.name] = None if any(p is None for p in parts) else torch.cat(parts)
        return cls(**out)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Split:
        """A split with ``fn`` applied to every per-prompt tensor (e.g. reorder, move)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = None if v is None else fn(v)
        return Split(**out)

    def rows(self) -> list[dict[str, float]]:
        """One dict per prompt with every term, its standard error and the diagnostics."""
        names = ["old_mass_base", "old_mass_base_se", "old_mass", "old_mass_se", "mass_kl",
                 "mass_kl_se", "old_drift_kl", "old_drift_se", "new_change_kl",
                 "new_change_se", "full_kl", "full_kl_se", "samples", "ess_old", "ess_new",
                 "overlap"]
        cols = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        return [{k: float(v[i]) for k, v in cols.items()} for i in range(self.old_mass.numel())]

    def summary(self) -> dict[str, float]:
        """Averages over the prompt set and their standard errors (sampling noise only)."""
        n = self.old_mass.numel()

        def se(x: torch.Tensor | None) -> float:
            assert x is not None
            return float(x.double().pow(2).sum().sqrt() / n)

        return {
            "prompts": n,
            "old_mass_base": float(self.old_mass_base.mean()),
            "old_mass_base_se": se(self.old_mass_base_se),
            "old_mass": float(self.old_mass.mean()),
            "old_mass_se": se(self.old_mass_se),
            "old_mass_lost": float((self.old_mass_base - self.old_mass).mean()),
            "mass_kl": float(self.mass_kl.mean()),
            "mass_kl_se": se(self.mass_kl_se),
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


def _check_adaptive(n_samples: int, target_se: float | None, max_samples: int | None) -> int:
    """Validated sample cap: ``max_samples`` (default 32 x n_samples) with a target, else n."""
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if target_se is None:
        return n_samples
    if not target_se > 0:
        raise ValueError(f"target_se must be > 0, got {target_se}")
    cap = 32 * n_samples if max_samples is None else max_samples
    if cap < n_samples:
        raise ValueError(f"max_samples must be >= n_samples ({n_samples}), got {cap}")
    return cap


def draw(
    logits_fn: LogitsFn, prompts: torch.Tensor, length: int, gen: torch.Generator,
    **kw: Any,
) -> torch.Tensor:
    """:func:`~forgetlab.lm.sampling.sample_answers`, or the model's own (e.g. KV-cached)
    ``logits_fn.sample_answers`` with the same signature and random draws when it has one."""
    own = getattr(logits_fn, "sample_answers", None)
    if own is not None:
        return own(prompts, length, gen, **kw)
    return sample_answers(logits_fn, prompts, length, gen, **kw)


def _as_marker(marker: int | Sequence[int]) -> list[int]:
    ids = [int(marker)] if isinstance(marker, int) else [int(m) for m in marker]
    if not ids:
        raise ValueError("marker: needs at least one token")
    return ids


def _continuation_kls(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, answers: torch.Tensor,
    eos_id: int | None, weight_upto: int | None = None, start: torch.Tensor | int = 1,
    weight_from: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For answers ``[K, T]`` (prompts ``[K, P]`` or one ``[1, P]``): sum_{t >= start} KL_t,
    the exact token KLs from position ``start`` (an int or ``[K]``) on at counted positions
    ``[K]``, and log pi_0 of the tokens ``weight_from`` (default ``start``) to
    ``weight_upto``-1 (default all) given the earlier ones, EOS or not ``[K]``."""
    p = prompts.expand(answers.shape[0], -1)
    lb = answer_log_softmax(base_fn, p, answers).double()
    lt = answer_log_softmax(tuned_fn, p, answers).double()
    t_len = answers.shape[1]
    pos = torch.arange(t_len, device=answers.device)
    start_t = torch.as_tensor(start, device=answers.device).reshape(-1, 1)
    after = pos[None, :] >= start_t  # [K or 1, T]
    # position t's distribution counts if no EOS is among tokens 0..t-1
    if eos_id is None:
        counts = after.expand(answers.shape[0], -1)
    else:
        ended = (answers[:, :-1] == eos_id).long().cumsum(dim=1) > 0  # EOS among 0..t-1
        counts = after & ~torch.cat([torch.zeros_like(ended[:, :1]), ended], dim=1)
    kls = (token_kl(lb, lt) * counts).sum(-1)
    tok = lb.gather(-1, answers[..., None]).squeeze(-1)
    upto = t_len if weight_upto is None else weight_upto
    # all enumerated tokens weigh in, also after an EOS: summing them out must give one
    lo = start_t if weight_from is None else weight_from
    weigh = (pos[None, :] >= lo) & (pos[None, :] < upto)
    return kls, (tok * weigh).sum(-1)


def _marker_path(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, marker: list[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along the marker path: (m_0, m, the exact deviation KL, the deviation law over j
    ``[N, L]`` and the allowed-token masks ``[L, V]``).

    A new answer leaves the path at position j with token v != k_j; its probability under
    pi_0(. | new) is a_j pi_0(v | x, k_<j) / (1 - m_0), a_j = prod_{i<j} pi_0(k_i | x, k_<i).
    """
    n, big_l = prompts.shape[0], len(marker)
    path = torch.tensor(marker, device=prompts.device)[None, :].expand(n, -1)
    lb = answer_log_softmax(base_fn, prompts, path).double()  # [N, L, V]
    lt = answer_log_softmax(tuned_fn, prompts, path).double()
    idx = path[..., None]
    kb, kt = lb.gather(-1, idx).squeeze(-1), lt.gather(-1, idx).squeeze(-1)  # [N, L]
    zero = torch.zeros((n, 1), dtype=torch.float64, device=prompts.device)
    pre_b = torch.cat([zero, kb.cumsum(1)[:, :-1]], dim=1)  # log a_j
    pre_t = torch.cat([zero, kt.cumsum(1)[:, :-1]], dim=1)
    log_m0, log_m = kb.sum(1), kt.sum(1)
    m0, m = log_m0.exp(), log_m.exp()
    keep = torch.ones((big_l, lb.shape[-1]), dtype=torch.bool, device=prompts.device)
    keep[torch.arange(big_l), torch.tensor(marker, device=prompts.device)] = False
    dev_b = (pre_b[..., None] + lb - torch.log1p(-m0)[:, None, None])[:, keep]  # [N, L(V-1)]
    dev_t = (pre_t[..., None] + lt - torch.log1p(-m)[:, None, None])[:, keep]
    dev_kl = token_kl(dev_b, dev_t)
    # P_0(deviation at j | new) = a_j (1 - pi_0(k_j | x, k_<j)) / (1 - m_0)
    law = (pre_b + torch.log1p(-kb.exp().clamp(max=1 - 1e-16))
           - torch.log1p(-m0)[:, None]).exp()
    return m0, m, dev_kl, law, keep


@torch.no_grad()
def marker_split(
    base_fn: LogitsFn,
    tuned_fn: LogitsFn,
    prompts: torch.Tensor,
    marker_id: int | Sequence[int],
    answer_len: int,
    *,
    exact: bool = False,
    n_samples: int = 16,
    gen: torch.Generator | None = None,
    eos_id: int | None = None,
    vocab_size: int | None = None,
    target_se: float | None = None,
    max_samples: int | None = None,
) -> Split:
    """The split with a mode marker: old iff the answer starts with the token(s) ``marker_id``.

    ``prompts [N, P]`` (equal lengths; call once per prompt length for ragged prompt sets).
    m_0, m and the new branch's deviation term are exact. With ``exact=True`` every answer is
    enumerated up to its second-to-last token (needs ``vocab_size`` and
    vocab_size^(answer_len - 1) <= 200000), so every term is exact. Otherwise ``n_samples``
    continuations per mode and prompt are drawn from pi_0 with ``gen`` (old: the marker, then
    pi_0; new: a deviation point (j, v) from its exact law, then pi_0) and the conditional KLs
    are the means of the exact token-KL sums along them (a Rao-Blackwellised chain rule), with
    standard errors; ``target_se`` adds samples (module docstring).
    """
    _check(prompts, answer_len)
    marker = _as_marker(marker_id)
    big_l = len(marker)
    if big_l > answer_len:
        raise ValueError(f"marker: {big_l} tokens do not fit in answers of {answer_len}")
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
    cap = _check_adaptive(n_samples, target_se, max_samples)
    n = prompts.shape[0]
    m0, m, dev_kl, law, keep = _marker_path(base_fn, tuned_fn, prompts, marker)
    mass_kl = bernoulli_kl(m0, m)
    if exact:
        old, new = _exact_branches(base_fn, tuned_fn, prompts, marker, answer_len, eos_id,
                                   m0, vocab_size or 0)
        zeros = torch.zeros(n, dtype=torch.float64)
        return Split(old_mass_base=m0, old_mass=m, mass_kl=mass_kl, old_drift_kl=old,
                     new_change_kl=dev_kl + new, old_drift_se=zeros, new_change_se=zeros,
                     full_kl_se=zeros, old_mass_se=torch.zeros_like(m))
    assert gen is not None
    old_k, new_k = _marker_samples(base_fn, tuned_fn, prompts, marker, answer_len, n_samples,
                                   gen, eos_id, law, keep)
    olds, news = list(old_k), list(new_k)
    while True:
        old_mu = torch.stack([o.mean() for o in olds])
        new_mu = torch.stack([x.mean() for x in news])
        old_se = torch.stack([o.std() / math.sqrt(o.numel()) for o in olds])
        new_se = torch.stack([x.std() / math.sqrt(x.numel()) for x in news])
        counts = torch.tensor([o.numel() for o in olds])
        if target_se is None:
            break
        worst = torch.maximum(m0 * old_se, (1 - m0) * new_se).cpu()
        todo = ((worst > target_se) & (counts < cap)).nonzero().flatten()
        if todo.numel() == 0:
            break
        more = int(min(counts[todo].min(), cap - counts[todo].max()).clamp_min(1))
        o2, n2 = _marker_samples(base_fn, tuned_fn, prompts[todo], marker, answer_len, more,
                                 gen, eos_id, law[todo], keep)
        for r, i in enumerate(todo.tolist()):
            olds[i] = torch.cat([olds[i], o2[r]])
            news[i] = torch.cat([news[i], n2[r]])
    return Split(
        old_mass_base=m0, old_mass=m, mass_kl=mass_kl, old_drift_kl=old_mu,
        new_change_kl=dev_kl + new_mu, old_drift_se=old_se, new_change_se=new_se,
        full_kl_se=((m0 * old_se) ** 2 + ((1 - m0) * new_se) ** 2).sqrt(),
        old_mass_se=torch.zeros_like(m), samples=counts.double(),
    )


def _marker_samples(
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, marker: list[int],
    answer_len: int, k: int, gen: torch.Generator, eos_id: int | None, law: torch.Tensor,
    keep: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k sampled continuation-KL sums per prompt and mode ``([N, k], [N, k])``."""
    n, big_l = prompts.shape[0], len(marker)
    dev = prompts.device
    rep = prompts.repeat_interleave(k, dim=0)
    mark = torch.tensor(marker, device=dev)
    old_rest = draw(base_fn, torch.cat([rep, mark[:-1].expand(n * k, -1)], dim=1),
                    answer_len - big_l + 1, gen, first=torch.full((n * k,), marker[-1]))
    old_ans = torch.cat([mark[:-1].expand(n * k, -1), old_rest], dim=1)
    old_kl = _continuation_kls(base_fn, tuned_fn, rep, old_ans, eos_id, start=big_l)[0]
    if big_l == 1:
        j = torch.zeros(n * k, dtype=torch.long)
    else:
        j = torch.multinomial(law.float().cpu().repeat_interleave(k, dim=0), 1,
                              generator=gen).flatten()
    new_ans = torch.empty((n * k, answer_len), dtype=torch.long, device=dev)
    for jj in j.unique().tolist():
        rows = (j == jj).nonzero().flatten().to(dev)
        pre = mark[:jj].expand(rows.numel(), -1)
        rest = draw(base_fn, torch.cat([rep[rows], pre], dim=1), answer_len - jj, gen,
                    first_allowed=keep[jj])
        new_ans[rows] = torch.cat([pre, rest], dim=1)
    new_kl = _continuation_kls(base_fn, tuned_fn, rep, new_ans, eos_id, start=j.to(dev) + 1)[0]
    return old_kl.view(n, k), new_kl.view(n, k)


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
    base_fn: LogitsFn, tuned_fn: LogitsFn, prompts: torch.Tensor, marker: list[int],
    answer_len: int, eos_id: int | None, m0: torch.Tensor, vocab: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """By enumeration, per prompt: E_{pi_0(.|old)}[sum_{t>=L} KL_t] and
    E_{pi_0(.|new)}[sum_{t>j} KL_t] (j: where the answer leaves the marker path).

    Answers are enumerated up to their second-to-last token: weighting each position's KL by
    pi_0 of all enumerated tokens sums the later tokens out, leaving pi_0 of its own prefix.
    Enumerated prefixes that follow the whole marker path up to the last position carry no
    continuation (their last token is in the exact deviation term or the marker).
    """
    n, big_l = prompts.shape[0], len(marker)
    old = torch.zeros(n, dtype=torch.float64)
    new = torch.zeros(n, dtype=torch.float64)
    if answer_len == 1:
        return old, new
    combos = torch.tensor(list(itertools.product(range(vocab), repeat=answer_len - 1)),
                          dtype=torch.long, device=prompts.device)
    ans = torch.cat([combos, torch.zeros_like(combos[:, :1])], dim=1)  # last: a placeholder
    mark = torch.tensor(marker, device=prompts.device)
    width = min(big_l, answer_len - 1)
    agree = (combos[:, :width] == mark[:width]).long().cumprod(1).sum(1)  # matched prefix
    is_old = agree >= big_l
    is_new = agree < width
    start = torch.where(is_old, big_l, agree + 1)
    for i in range(n):
        # w: pi_0 of the whole enumerated prefix; divided by the branch's probability below
        kls, logw = _continuation_kls(base_fn, tuned_fn, prompts[i : i + 1], ans, eos_id,
                                      weight_upto=answer_len - 1, start=start, weight_from=0)
        w = logw.exp()
        old[i] = (w * kls * is_old).sum() / m0[i]
        new[i] = (w * kls * is_new).sum() / (1 - m0[i])
    return old, new


def _mis_terms(s: torch.Tensor) -> torch.Tensor:
    """Terms from pooled weighted sums ``s [..., 6]`` = sums of (w_0, w_0 old, w_0 lr,
    w_0 old lr, w, w old), lr = log pi_0 - log pi: ``[..., 8]`` = (m_0, m, KL_old, KL_new,
    mass KL, full KL, m_0 KL_old, (1 - m_0) KL_new). Empty classes get conditional KL 0."""
    w0, w0o, w0l, w0ol, w1, w1o = s.unbind(-1)
    w0n = w0 - w0o
    m0, q0 = w0o / w0, w0n / w0
    m, q = (w1o / w1).clamp_min(TINY), ((w1 - w1o) / w1).clamp_min(TINY)
    has_o, has_n = w0o > 0, w0n > 0
    lm0 = torch.log(torch.where(has_o, m0, torch.ones_like(m0)))
    lq0 = torch.log(torch.where(has_n, q0, torch.ones_like(q0)))
    e_old = w0ol / torch.where(has_o, w0o, torch.ones_like(w0o))
    e_new = (w0l - w0ol) / torch.where(has_n, w0n, torch.ones_like(w0n))
    kl_old = torch.where(has_o, e_old - lm0 + torch.log(m), torch.zeros_like(m))
    kl_new = torch.where(has_n, e_new - lq0 + torch.log(q), torch.zeros_like(q))
    mass = (torch.where(has_o, m0 * (lm0 - torch.log(m)), torch.zeros_like(m))
            + torch.where(has_n, q0 * (lq0 - torch.log(q)), torch.zeros_like(q)))
    full = w0l / w0
    return torch.stack([m0, m, kl_old, kl_new, mass, full, m0 * kl_old, q0 * kl_new], dim=-1)


def two_sided_estimate(
    lb: torch.Tensor, lt: torch.Tensor, old: torch.Tensor, side: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """The two-sided estimate of the split from pooled answers of one prompt.

    ``lb``, ``lt [K]``: log pi_0(y), log pi(y) of each answer; ``old [K]`` its class; ``side
    [K]``: 0 if drawn from pi_0, 1 if from pi (both sides need >= 2 answers). Returns the
    terms ``[8]`` of :func:`_mis_terms`, their stratified jackknife standard errors ``[8]`` and
    the diagnostics ``ess_old``, ``ess_new`` (Kish effective sizes of the w_0 weights within
    each class) and ``overlap`` (Kish effective fraction of pi/pi_0 on the base answers).
    """
    side = side.bool()
    n1 = int(side.sum())
    n0 = side.numel() - n1
    if n0 < 2 or n1 < 2:
        raise ValueError(f"two-sided estimate needs >= 2 answers per side, got {n0} and {n1}")
    lb, lt, o = lb.double(), lt.double(), old.double()
    logq = torch.logaddexp(lb + math.log(n0), lt + math.log(n1)) - math.log(n0 + n1)
    w0, w1 = torch.exp(lb - logq), torch.exp(lt - logq)
    lr = lb - lt
    g = torch.stack([w0, w0 * o, w0 * lr, w0 * o * lr, w1, w1 * o], dim=-1)
    total = g.sum(0)
    terms = _mis_terms(total)
    loo = _mis_terms(total - g)  # delete-one replicates [K, 8]
    var = torch.zeros(8, dtype=torch.float64)
    for mask, k in ((~side, n0), (side, n1)):
        rep = loo[mask]
        var += (k - 1) / k * (rep - rep.mean(0)).pow(2).sum(0)

    def kish(w: torch.Tensor) -> float:
        return float(w.sum() ** 2 / w.pow(2).sum()) if float(w.sum()) > 0 else 0.0

    r = torch.exp(-(lr[~side] - lr[~side].max()))  # pi/pi_0 on base answers, up to a factor
    diag = {"ess_old": kish(w0 * o), "ess_new": kish(w0 * (1 - o)), "overlap": kish(r) / n0}
    return terms, var.sqrt(), diag


@torch.no_grad()
def classifier_split(
    base_fn: LogitsFn,
    tuned_fn: LogitsFn,
    prompts: torch.Tensor,
    classify: Classify,
    answer_len: int,
    *,
    n_samples: int,
    gen: torch.Generator,
    eos_id: int | None = None,
    target_se: float | None = None,
    max_samples: int | None = None,
) -> Split:
    """The two-sided split with a classifier ``classify(answers [K, T], mask [K, T]) -> bool
    [K]`` (old), from ``n_samples`` answers per prompt drawn from pi_0 and as many from pi.

    Estimators and standard errors as in the module docstring (:func:`two_sided_estimate`);
    ``target_se`` adds samples per prompt. ``prompts [N, P]`` of equal length are sampled in
    one batch.
    """
    _check(prompts, answer_len)
    cap = _check_adaptive(n_samples, target_se, max_samples)
    n = prompts.shape[0]
    pools: list[list[torch.Tensor]] = [[] for _ in range(n)]

    def add(rows: torch.Tensor, k: int) -> None:
        rep = prompts[rows].repeat_interleave(k, dim=0)
        parts = []
        for side, fn in ((0, base_fn), (1, tuned_fn)):
            ans = draw(fn, rep, answer_len, gen)
            mask = answer_mask(ans, eos_id)
            lb = sequence_logprob(answer_token_logprobs(base_fn, rep, ans).double(), mask)
            lt = sequence_logprob(answer_token_logprobs(tuned_fn, rep, ans).double(), mask)
            cls = classify(ans, mask).bool().to(lb.device).double()
            parts.append(torch.stack([lb, lt, cls, torch.full_like(lb, side)], dim=1))
        for r, i in enumerate(rows.tolist()):
            pools[i].extend(p[r * k : (r + 1) * k].cpu() for p in parts)

    add(torch.arange(n), n_samples)
    while True:
        est = [two_sided_estimate(*torch.cat(pool).unbind(1)) for pool in pools]
        counts = torch.tensor([sum(p.shape[0] for p in pool) // 2 for pool in pools])
        if target_se is None:
            break
        se = torch.stack([e[1] for e in est])
        worst = se[:, [1, 4, 5, 6, 7]].max(1).values
        todo = ((worst > target_se) & (counts < cap)).nonzero().flatten()
        if todo.numel() == 0:
            break
        add(todo, int(min(counts[todo].min(), cap - counts[todo].max()).clamp_min(1)))
    t = torch.stack([e[0] for e in est])
    se = torch.stack([e[1] for e in est])

    def diag(key: str) -> torch.Tensor:
        return torch.tensor([e[2][key] for e in est], dtype=torch.float64)

    return Split(
        old_mass_base=t[:, 0], old_mass=t[:, 1], mass_kl=t[:, 4], old_drift_kl=t[:, 2],
        new_change_kl=t[:, 3], old_mass_base_se=se[:, 0], old_mass_se=se[:, 1],
        mass_kl_se=se[:, 4], old_drift_se=se[:, 2], new_change_se=se[:, 3],
        full_kl_se=se[:, 5], samples=counts.double(), ess_old=diag("ess_old"),
        ess_new=diag("ess_new"), overlap=diag("overlap"),
    )
