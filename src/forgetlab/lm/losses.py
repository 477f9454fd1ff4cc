"""Losses and advantages of the post-training methods, as pure functions of tensors.

Shapes: token-level tensors are ``[B, T]`` (logits ``[B, T, V]``) with an optional bool ``mask
[B, T]`` of the positions that count; group tensors are ``[B, G]`` (B prompts, G samples each).
Divergences between next-token distributions are exact sums over the vocabulary.

Conventions follow what TRL users know: :func:`token_cross_entropy` is the SFT loss,
:func:`generalized_jsd` is the GKD loss (beta = 0 forward KL(teacher || student), beta = 1
reverse KL(student || teacher)), :func:`grpo_advantages` the group-normalised advantages.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _float(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision logits are promoted; float64 stays float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over counted tokens of -log softmax(logits)[target]: the SFT (forward-KL) loss."""
    nll = F.cross_entropy(_float(logits.flatten(0, -2)), targets.flatten(), reduction="none")
    return _masked_mean(nll.view(targets.shape), mask)


def token_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last axis, from log-probabilities.

    Terms with p_v = 0 contribute 0 (also where log q_v = -inf).
    """
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1)


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence per token, averaged over counted tokens.

    With s = softmax(student), t = softmax(teacher) and M = beta t + (1 - beta) s,
    JSD_beta = beta KL(t || M) + (1 - beta) KL(s || M) for 0 < beta < 1. The end points are the
    two KLs, KL(t || s) at beta = 0 (forward, mode-covering) and KL(s || t) at beta = 1 (reverse,
    mode-seeking); JSD_beta / (beta (1 - beta)) tends to them as beta -> 0 and beta -> 1.
    Gradients flow into both arguments; detach the teacher for distillation.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    s = F.log_softmax(_float(student_logits), dim=-1)
    t = F.log_softmax(_float(teacher_logits), dim=-1)
    if beta == 0.0:
        per_token = token_kl(t, s)
    elif beta == 1.0:
        per_token = token_kl(s, t)
    else:
        m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1.0 - beta)]), dim=0)
        per_token = beta * token_kl(t, m) + (1.0 - beta) * token_kl(s, m)
    return _masked_mean(per_token, mask)


def sequence_logprob(
    token_logprobs: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log pi(y | x) = sum_t log pi(y_t | x, y_{<t}) over counted positions ``[B, T] -> [B]``."""
    if mask is None:
        return token_logprobs.sum(-1)
    return (token_logprobs * mask.to(token_logprobs.dtype)).sum(-1)


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """A_i = (r_i - mean_j r_j) / (std_j r_j + eps) within each group ``[B, G]``.

    std is the population standard deviation (divisor G); a group with equal rewards gets zeros.
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def policy_gradient_loss(
    seq_logprob: torch.Tensor, advantages: torch.Tensor
) -> torch.Tensor:
    """REINFORCE surrogate -mean_i A_i log pi(y_i): its gradient is -mean A_i grad log pi(y_i)."""
    return -(advantages.detach() * seq_logprob).mean()


def squared_log_ratio_penalty(
    token_logprobs: torch.Tensor, ref_token_logprobs: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1/2) (log pi(y_t) - log pi_ref(y_t))^2 per sampled token, averaged: a KL(pi || pi_ref)
    surrogate whose gradient at pi = pi_ref is zero and whose expectation is >= 0."""
    return _masked_mean(0.5 * (token_logprobs - ref_token_logprobs.detach()) ** 2, mask)


def entropic_loo_advantages(rewards: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """Leave-one-out entropic advantages ``[B, G]`` (TTT-Discover).

    e_i = exp(gamma (r_i - max_j r_j)), A_i = e_i / mean_{j != i} e_j - 1: a sample-based
    version of w - 1 with w = e^{gamma r} / E[e^{gamma r}], the gradient weight of
    J = log E[e^{gamma R}]. Needs G >= 2; ``gamma`` is a scalar or ``[B]``.
    """
    g = rewards.shape[-1]
    if g < 2:
        raise ValueError(f"entropic advantages need a group of at least 2 samples, got {g}")
    gamma_t = torch.as_tensor(gamma, dtype=rewards.dtype).reshape(-1, 1)
    e = torch.exp(gamma_t * (rewards - rewards.max(-1, keepdim=True).values))
    loo_mean = (e.sum(-1, keepdim=True) - e) / (g - 1)
    return e / loo_mean - 1.0


def kl_softmax_to_uniform(rewards: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """KL(softmax(gamma r) || uniform_G) = log G - H(softmax(gamma r)) per group ``[B]``."""
    logw = F.log_softmax(gamma.reshape(-1, 1) * rewards, dim=-1)
    return (logw.exp() * logw).sum(-1) + math.log(rewards.shape[-1])


def adaptive_gamma(
    rewards: torch.Tensor, target: float = math.log(2.0), gamma_max: float = 10.0,
    iters: int = 60,
) -> torch.Tensor:
    """Per-group gamma ``[B]`` with KL(softmax(gamma r) || uniform) = ``target`` (ln 2 rule).

    The KL grows monotonically with gamma from 0; bisection on [0, gamma_max]. Groups that
    cannot reach the target (equal rewards, or too many ties at the top) get gamma_max.
    """
    lo = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    hi = torch.full_like(lo, gamma_max)
    reachable = kl_softmax_to_uniform(rewards, hi) >= target
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = kl_softmax_to_uniform(rewards, mid) >= target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return torch.where(reachable, hi, torch.full_like(hi, gamma_max))


def oapl_loss(
    seq_logprob: torch.Tensor, lag_seq_logprob: torch.Tensor, rewards: torch.Tensor, tau: float
) -> torch.Tensor:
    """OAPL squared log-ratio regression, averaged over prompts.

    Per prompt with G samples y_i ~ pi_lag:
    sum_i (tau log(pi(y_i) / pi_lag(y_i)) - (r_i - V_hat))^2, V_hat = tau log mean_i e^{r_i/tau}.
    Its population minimiser within one lag period is pi_lag e^{r/tau} / Z.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    g = rewards.shape[-1]
    v_hat = tau * (torch.logsumexp(rewards / tau, dim=-1, keepdim=True) - math.log(g))
    resid = tau * (seq_logprob - lag_seq_logprob.detach()) - (rewards - v_hat)
    return (resid**2).sum(-1).mean()
