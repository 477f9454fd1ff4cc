"""Rewards of the on-policy methods, and the explicit two-mode target p*(y|x).

A reward kind names what an on-policy method (``rl``, ``ttt_discover``, ``oapl``, ``self_sft``,
``iterative_sft``) is rewarded for:

* ``verifier``: the setting's own 0/1 verifier (both modes on ``same_prompts``, the new mode
  only on ``held_out``);
* ``verifier_both``: 1 for a correct old answer or a correct new answer;
* ``verifier_new``: 1 only for a correct new answer (a reward that favours the new mode, C8);
* ``target``: log p*(y|x) - log pi(y|x), pi the sampler. Its expectation under pi is
  -KL(pi || p*), so following it is reverse KL to the target (C3).

The target is the two-mode mixture of the corpus's exact answer distributions,

    p*(y|x) = alpha p_old,eps(y|x) + (1 - alpha) (1/K) sum_k p_new,k,eps(y|x),

where p_old,eps puts (1 - eps) + eps/V on each token of the correct old answer and eps/V on
every other token (V the vocabulary size), likewise p_new,k,eps for the k-th of the K accepted
new answers (:meth:`~forgetlab.lm.corpus.Task.accepted_new_answers`). Each component is a
product of per-token distributions, so p* sums to one over the V^T answers and log p* is finite
everywhere.
"""

from __future__ import annotations

import math

import torch

from forgetlab.lm.corpus import VOCAB, Task
from forgetlab.vocabulary import LM_REWARDS

REWARDS = LM_REWARDS
TARGET_EPS = 0.01
"""Per-token smoothing of the target's answer distributions."""


def _smoothed_logprob(answers: torch.Tensor, mode: torch.Tensor, eps: float) -> torch.Tensor:
    """sum_t log((1 - eps) 1[y_t = a_t] + eps / V) for answers and mode answers ``[N, T]``."""
    v = len(VOCAB)
    hit = math.log((1.0 - eps) + eps / v)
    miss = math.log(eps / v)
    same = (answers == mode).double()
    return (same * hit + (1.0 - same) * miss).sum(-1)


def target_logprob(
    task: Task, digits: torch.Tensor, answers: torch.Tensor, alpha: float,
    eps: float = TARGET_EPS,
) -> torch.Tensor:
    """log p*(y|x) ``[N]`` (float64) for questions ``digits [N, n]`` and ``answers [N, T]``.

    ``alpha`` is the target's old mass in [0, 1]; ``eps`` in (0, 1] the per-token smoothing.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must lie in (0, 1], got {eps}")
    new = task.accepted_new_answers(digits).values()
    terms = [_smoothed_logprob(answers, task.old_answers(digits), eps) + _log(alpha)]
    terms += [_smoothed_logprob(answers, correct, eps) + _log((1.0 - alpha) / len(new))
              for correct in new]
    return torch.logsumexp(torch.stack(terms), dim=0)


def _log(w: float) -> float:
    return math.log(w) if w > 0 else -math.inf


def verifier_reward(
    task: Task, digits: torch.Tensor, answers: torch.Tensor, credit_old: bool
) -> torch.Tensor:
    """0/1 reward ``[N]`` (float64): a correct new answer, or a correct old one if
    ``credit_old``."""
    ok = task.is_new_correct(digits, answers)
    if credit_old:
        ok |= task.is_old_correct(digits, answers)
    return ok.double()
