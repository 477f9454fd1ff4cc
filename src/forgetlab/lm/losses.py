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

from forgetlab.vocabulary import ENTROPIC_GAMMA_CAP


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
    The torch twin of :func:`forgetlab.methods.rl.grpo_advantages`.
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


def clipped_policy_loss(
    seq_logprob: torch.Tensor, old_seq_logprob: torch.Tensor, advantages: torch.Tensor,
    clip_eps: float,
) -> torch.Tensor:
    """PPO surrogate -mean_i min(rho_i A_i, clip(rho_i, 1 - eps, 1 + eps) A_i) with the
    sequence ratio rho_i = pi(y_i) / pi_old(y_i), pi_old the policy that drew y_i.

    At rho = 1 (on-policy, one step per batch) its gradient is that of
    :func:`policy_gradient_loss`; a sample whose ratio left [1 - eps, 1 + eps] in the direction
    its advantage favours contributes no gradient.
    """
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    ratio = torch.exp(seq_logprob - old_seq_logprob.detach())
    adv = advantages.detach()
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -torch.minimum(ratio * adv, clipped * adv).mean()


_MAX_LOG_RATIO = 700.0


def entropic_loo_advantages(
    rewards: torch.Tensor, gamma: torch.Tensor | float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Leave-one-out entropic advantages ``[..., G]`` (TTT-Discover); the torch twin of
    :func:`forgetlab.methods.ttt_discover.entropic_loo_advantages`.

    e_i = exp(gamma (r_i - max_j r_j)), A_i = e_i / mean_{j != i, valid} e_j - 1: a sample-based
    version of w - 1 with w = e^{gamma r} / E[e^{gamma r}], the gradient weight of
    J = log E[e^{gamma R}]. In log space, the log-ratio capped at 700; invalid entries get 0 and
    are left out of the means. Needs G >= 2; ``gamma`` broadcasts against ``[...]``.
    """
    g = rewards.shape[-1]
    if g < 2:
        raise ValueError(f"group_size must be >= 2 for leave-one-out weights, got {g}")
    ok = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid
    gam = torch.as_tensor(gamma, dtype=rewards.dtype)[..., None]
    r = torch.where(ok, rewards, torch.zeros_like(rewards))
    neg_inf = torch.full_like(r, -math.inf)
    top = torch.where(ok, r, neg_inf).max(-1, keepdim=True).values
    logits = torch.where(ok, gam * (r - torch.where(torch.isfinite(top), top, 0.0)), neg_inf)
    eye = torch.eye(g, dtype=torch.bool)
    others = torch.where(eye, -math.inf, logits[..., None, :])
    count = ok.sum(-1, keepdim=True) - ok.long()
    log_loo_mean = torch.logsumexp(others, -1) - torch.log(count.clamp_min(1).to(r.dtype))
    log_ratio = torch.clamp(logits - log_loo_mean, max=_MAX_LOG_RATIO)
    usable = ok & (count > 0) & torch.isfinite(log_loo_mean)
    return torch.where(usable, torch.expm1(torch.where(usable, log_ratio, 0.0)), 0.0)


def kl_to_uniform(rewards: torch.Tensor, gamma: torch.Tensor | float) -> torch.Tensor:
    """KL(softmax(gamma r) || uniform_G) = log G - H(softmax(gamma r)) per group ``[...]``."""
    logw = F.log_softmax(torch.as_tensor(gamma, dtype=rewards.dtype)[..., None] * rewards, -1)
    return (logw.exp() * logw).sum(-1) + math.log(rewards.shape[-1])


def adaptive_gamma(
    rewards: torch.Tensor, target: float = math.log(2.0),
    gamma_max: float = ENTROPIC_GAMMA_CAP, iters: int = 80,
) -> torch.Tensor:
    """Per-group gamma ``[...]`` with KL(softmax(gamma r) || uniform) = ``target`` (ln 2 rule);
    the torch twin of :func:`forgetlab.methods.ttt_discover.adaptive_gamma`.

    Bisection on the scale-free gamma (max r - min r) in [0, gamma_max]. Groups with equal
    rewards get 0; where the target cannot be reached (too many ties at the top) the cap
    gamma_max / (max r - min r) is returned (:data:`forgetlab.vocabulary.ENTROPIC_GAMMA_CAP`).
    """
    spread = rewards.max(-1).values - rewards.min(-1).values
    flat = spread <= 0
    safe = torch.where(flat, torch.ones_like(spread), spread)
    scaled = (rewards - rewards.min(-1, keepdim=True).values) / safe[..., None]
    lo = torch.zeros_like(spread)
    hi = torch.full_like(spread, float(gamma_max))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = kl_to_uniform(scaled, mid) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return torch.where(flat, torch.zeros_like(spread), 0.5 * (lo + hi) / safe)


def group_value(rewards: torch.Tensor, tau_value: float) -> torch.Tensor:
    """OAPL's V_hat = tau_v log mean_i exp(r_i / tau_v) per group ``[B, G] -> [B, 1]``; the
    torch twin of :func:`forgetlab.methods.oapl.group_value`."""
    g = rewards.shape[-1]
    return tau_value * (torch.logsumexp(rewards / tau_value, dim=-1, keepdim=True) - math.log(g))


def oapl_loss(
    seq_logprob: torch.Tensor, lag_seq_logprob: torch.Tensor, rewards: torch.Tensor,
    tau_value: float, tau_ratio: float | None = None,
) -> torch.Tensor:
    """OAPL squared log-ratio regression, averaged over prompts.

    Per prompt with G samples y_i ~ pi_lag: sum_i (tau_r log(pi(y_i) / pi_lag(y_i)) -
    (r_i - V_hat))^2 with V_hat of :func:`group_value` (``tau_ratio`` None: tau_r = tau_v).
    Its population minimiser within one lag period is pi_lag e^{r/tau} / Z when tau_v = tau_r =
    tau; otherwise the residual is proportional to pi / pi_lag there
    (:mod:`forgetlab.methods.oapl`).
    """
    tau_r = tau_value if tau_ratio is None else tau_ratio
    if tau_value <= 0 or tau_r <= 0:
        raise ValueError(f"tau_value and tau_ratio must be > 0, got {tau_value}, {tau_r}")
    v_hat = group_value(rewards, tau_value)
    resid = tau_r * (seq_logprob - lag_seq_logprob.detach()) - (rewards - v_hat)
    return (resid**2).sum(-1).mean()
