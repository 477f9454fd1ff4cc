"""TTT-Discover: the entropic objective J = log E_q[e^{gamma R}] with an optional KL anchor (C8).

Loss L = -J + kappa KL(q || q_0). grad J = E_q[(w - 1) grad log q] with
w = e^{gamma R} / E_q[e^{gamma R}]: the gradient of -KL(tilt || q) with the tilt
q e^{gamma R} / Z held fixed.

Finite batch: the batch is cut into groups of k = ``group_size`` draws; within a group
e_i = exp(gamma (r_i - max r)) and A_i = e_i / mean_{j != i} e_j - 1 (leave-one-out). Since
e_i / mean_{j != i} e_j does not depend on the shift and the other draws are independent of x_i,
E[(1/k) sum_i A_i grad log q(x_i)] = c_k grad J with c_k = E_q[e^{gamma R}] E[1 / M_{k-1}],
M_{k-1} the mean of k - 1 independent e^{gamma R}: the direction is exact, the length is
inflated by c_k >= 1 (Jensen; c_k -> 1 as k grows). With ``adaptive_gamma`` gamma is chosen per
group by bisection so that KL(softmax(gamma r) || uniform_k) = ln 2 (capped at ``gamma_max``
times 1 / (max r - min r) where ln 2 cannot be reached). The anchor adds
kappa (1/n) sum_i (l_i - c_i) grad log q(x_i), l = log q - log q_0, c_i the leave-one-out mean.
A reuse buffer keeps the ``reuse`` highest-reward past draws and appends them to every group's
leave-one-out pool (they are off-policy, so this is biased; a simplification of the PUCT
selection of the public code).

Population regime (fixed gamma, no buffer), 0/1 reward R = 1{D(x, b) <= rho} (with
``credit_old`` also 1{D(x, a) <= rho}, needing rho <= D(a, b) / 2 so the balls are disjoint):
with z ~ N(0, I_d), delta = L^{-1}(c - m), F_k(.; lambda) the noncentral chi-square CDF,
P_m = F_d(rho^2; |delta|^2) and E[z 1{|z - delta| <= rho}] = delta (F_d - F_{d+2})(rho^2; |delta|^2)
(differentiate P in delta). As q r_o = beta phi_o, exactly (any overlap):
  Z_c = 1 + (e^gamma - 1) P_{m_c},  Z = beta Z_o + (1 - beta) Z_n,
  dJ/dbeta = (Z_o - Z_n) / Z,
  dJ/dm_o = beta (e^gamma - 1) (F_d - F_{d+2}) Sigma^{-1} (c - m_o) / Z   (likewise m_n, 1 - beta).
EM (optimiser ``"em"``) moves to the tilt in one step: beta' = beta Z_o / Z (odds times
Z_o / Z_n) and m_o' = m_o + (e^gamma - 1)(F_d - F_{d+2})(c - m_o) / Z_o; the finite-batch EM uses
self-normalised weights w_i = e^{gamma r_i} / mean_j e^{gamma r_j}.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from forgetlab import population
from forgetlab.gaussian import noncentral_chi2_cdf
from forgetlab.methods.base import (
    Array,
    Method,
    Problem,
    State,
    StepOutput,
    Streams,
    batch_mean,
    register,
    sample_mixture,
)
from forgetlab.methods.rewards import reward_of
from forgetlab.methods.rl import centred_signal, per_sample, score_function_gradient
from forgetlab.methods.sft import em_from_moments
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.vocabulary import ENTROPIC_GAMMA_CAP, knobs_for

LN2 = float(np.log(2.0))
_MAX_LOG_RATIO = 700.0


def entropic_loo_advantages(rewards: Array, gamma: Array | float,
                            valid: Array | None = None) -> Array:
    """A_i = e_i / mean_{j != i, valid} e_j - 1, e_i = exp(gamma (r_i - max r)), ``[..., k]``.

    Computed in log space; invalid entries (``valid`` False) get A = 0 and are left out of the
    means; a group needs two valid draws. ``gamma`` broadcasts against ``[...]``.
    """
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"group_size must be >= 2 for leave-one-out weights, got {k}")
    ok = np.ones(rewards.shape, dtype=bool) if valid is None else valid
    g = np.asarray(gamma, dtype=float)[..., None]
    r = np.where(ok, rewards, 0.0)
    top = np.max(np.where(ok, r, -np.inf), axis=-1, keepdims=True)
    logits = np.where(ok, g * (r - np.where(np.isfinite(top), top, 0.0)), -np.inf)
    others = np.where(np.eye(k, dtype=bool), -np.inf, logits[..., None, :])
    count = np.sum(ok, axis=-1, keepdims=True) - ok
    with np.errstate(divide="ignore"):
        log_loo_mean = logsumexp(others, axis=-1) - np.log(np.maximum(count, 1))
        log_ratio = np.minimum(logits - log_loo_mean, _MAX_LOG_RATIO)
    usable = ok & (count > 0) & np.isfinite(log_loo_mean)
    return np.where(usable, np.expm1(np.where(usable, log_ratio, 0.0)), 0.0)


def kl_to_uniform(rewards: Array, gamma: Array | float) -> Array:
    """KL(softmax(gamma r) || uniform_k) = log k - H(softmax(gamma r)), ``[...]``."""
    k = rewards.shape[-1]
    logits = np.asarray(gamma, dtype=float)[..., None] * rewards
    log_p = logits - logsumexp(logits, axis=-1, keepdims=True)
    return np.log(k) + np.sum(softmax(logits, axis=-1) * log_p, axis=-1)


def adaptive_gamma(rewards: Array, target_kl: float = LN2,
                   gamma_max: float = ENTROPIC_GAMMA_CAP) -> Array:
    """gamma >= 0 with KL(softmax(gamma r) || uniform_k) = target_kl, per group ``[...]``.

    KL increases with gamma from 0; bisection on gamma' = gamma (max r - min r) in
    [0, gamma_max]. Groups with equal rewards get 0; where target_kl exceeds the limit
    log(k / #argmax) the cap gamma_max / (max r - min r) is returned (why this cap:
    :data:`forgetlab.vocabulary.ENTROPIC_GAMMA_CAP`).
    """
    spread = np.ptp(rewards, axis=-1)
    flat = spread <= 0
    scaled = (rewards - rewards.min(axis=-1, keepdims=True)) / np.where(flat, 1.0, spread)[
        ..., None]
    lo = np.zeros(spread.shape)
    hi = np.full(spread.shape, float(gamma_max))
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = kl_to_uniform(scaled, mid) > target_kl
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(flat, 0.0, 0.5 * (lo + hi) / np.where(flat, 1.0, spread))


def ball_tilt_moments(mix: TwoModeMixture, center: Array, radius: Array | float
                      ) -> tuple[Array, Array]:
    """(P_c, F_d - F_{d+2}) for both components, each ``[..., 2]`` (old, new): the success
    probability of N(m_c, Sigma) on the ball D(x, center) <= radius and the factor of
    E_{phi_c}[1_ball (x - m_c)] = (F_d - F_{d+2}) (center - m_c)."""
    means = np.stack([mix.mean_old, mix.mean_new], axis=-2)
    z = mix.whiten(center[..., None, :] - means)
    nc = np.sum(z**2, axis=-1)
    rho2 = np.asarray(radius, dtype=float)[..., None] ** 2
    d = mix.dim
    f_d = noncentral_chi2_cdf(rho2, d, nc)
    return f_d, np.maximum(f_d - noncentral_chi2_cdf(rho2, d + 2, nc), 0.0)


def entropic_population_gradient(learner: TwoModeMixture, centers: list[Array],
                                 radius: Array | float, gamma: Array | float
                                 ) -> tuple[MixtureParams, Array]:
    """grad J for R = a sum of indicators of disjoint balls (raw coordinates) and log Z_c
    ``[..., 2]`` (old, new)."""
    em1 = np.expm1(np.asarray(gamma, dtype=float))[..., None]
    means = np.stack([learner.mean_old, learner.mean_new], axis=-2)
    p_total: Array = np.zeros(means.shape[:-1])
    pulls: Array = np.zeros(means.shape)
    for c in centers:
        p, f = ball_tilt_moments(learner, c, radius)
        p_total = p_total + p
        pulls = pulls + f[..., None] * (c[..., None, :] - means)
    z_c = 1.0 + em1 * p_total
    beta = learner.weight_old
    z = beta * z_c[..., 0] + (1 - beta) * z_c[..., 1]
    g_means = em1[..., None] * learner.precision_times(pulls) / z[..., None, None]
    grad = MixtureParams((z_c[..., 0] - z_c[..., 1]) / z, beta[..., None] * g_means[..., 0, :],
                         (1 - beta)[..., None] * g_means[..., 1, :])
    return grad, np.log(z_c)


@register
class TTTDiscover(Method):
    """-log E_q[e^{gamma R}] + kappa KL(q || q_0) with leave-one-out entropic advantages."""

    name = "ttt_discover"
    knobs = knobs_for("ttt_discover", "mixture")

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.reward = reward_of(self)

    def check_regime(self, regime: str) -> None:
        """Population needs the verifiable reward, a fixed gamma and no reuse buffer."""
        super().check_regime(regime)
        if regime == "population" and (self.knob("reward") != "verifiable"
                                       or self.knob("adaptive_gamma")
                                       or int(np.max(self.knob("reuse"))) > 0):
            raise ValueError(f"regime 'population' for method '{self.name}' needs "
                             "reward='verifiable', adaptive_gamma=false and reuse=0")

    def _centers(self, problem: Problem) -> list[Array]:
        centers = [problem.target.mean_new]
        if self.knob("credit_old"):
            sep = problem.target.separation()
            if np.any(2 * np.asarray(self.knob("radius")) > sep):
                raise ValueError("radius must be <= D(a, b) / 2 for the exact population "
                                 "gradient with credit_old (disjoint balls)")
            centers.append(problem.target.mean_old)
        return centers

    def init_state(self, problem: Problem, params: MixtureParams) -> State:
        """An empty reuse buffer ``buffer_x [C, S, K, d]``, ``buffer_r [C, S, K]`` (-inf: empty)."""
        size = int(np.max(self.knob("reuse")))
        shape = params.weight_old.shape
        if size == 0:
            return {}
        return {"buffer_x": np.zeros((*shape, size, problem.dim)),
                "buffer_r": np.full((*shape, size), -np.inf)}

    def _population(self, problem: Problem, learner: TwoModeMixture) -> MixtureParams:
        grad_j, _ = entropic_population_gradient(learner, self._centers(problem),
                                                 self.knob("radius"), self.knob("gamma"))
        return grad_j

    def _advantages(self, rewards: Array, valid: Array) -> Array:
        """LOO entropic advantages over groups; rewards ``[C, S, G, k]``."""
        if self.knob("adaptive_gamma"):
            masked = np.where(valid, rewards, np.min(np.where(valid, rewards, np.inf), axis=-1,
                                                     keepdims=True))
            gamma = adaptive_gamma(masked)
        else:
            gamma = np.asarray(self.knob("gamma"), dtype=float)[..., None]
        return entropic_loo_advantages(rewards, gamma, valid)

    def gradient(self, problem: Problem, params: MixtureParams, state: State, step: int,
                 rng: Streams | None) -> StepOutput:
        """Exact -grad J + kappa grad KL (population) or the leave-one-out estimate."""
        learner = problem.learner(params)
        kappa = self.knob("kappa")
        if rng is None:
            g = self._population(problem, learner)
            kap = np.asarray(kappa, dtype=float)
            if not np.any(kap > 0):
                return StepOutput(MixtureParams(-g.weight_old, -g.mean_old, -g.mean_new),
                                  state, {})
            anchor = population.reverse_kl_gradient(learner, problem.initial)
            return StepOutput(MixtureParams(-g.weight_old + kap * anchor.weight_old,
                                            -g.mean_old + kap[..., None] * anchor.mean_old,
                                            -g.mean_new + kap[..., None] * anchor.mean_new),
                              state, {})
        k = int(self.knob("group_size"))
        if problem.batch_size % k:
            raise ValueError(f"group_size ({k}) must divide batch_size ({problem.batch_size})")
        x, is_old = sample_mixture(learner, problem.batch_size, rng)
        r = self.reward(problem, x)
        n_groups = problem.batch_size // k
        shape = r.shape[:-1]
        xs = x.reshape(*shape, n_groups, k, problem.dim)
        rs = r.reshape(*shape, n_groups, k)
        valid = np.ones(rs.shape, dtype=bool)
        if state:
            size = state["buffer_r"].shape[-1]
            xs = np.concatenate([xs, np.broadcast_to(state["buffer_x"][..., None, :, :],
                                                     (*shape, n_groups, size, problem.dim))], -2)
            rs = np.concatenate([rs, np.broadcast_to(state["buffer_r"][..., None, :],
                                                     (*shape, n_groups, size))], -1)
            valid = np.isfinite(rs)
        adv = self._advantages(rs, valid)
        flat_x = xs.reshape(*shape, -1, problem.dim)
        g = batch_mean(learner.scores(flat_x), adv.reshape(*shape, -1))
        grad = MixtureParams(-g.weight_old, -g.mean_old, -g.mean_new)
        if np.any(np.asarray(kappa) > 0):
            log_ratio = learner.log_prob(x) - problem.initial.log_prob(x)
            anchor = score_function_gradient(learner.scores(x), centred_signal(log_ratio, "loo"))
            kap = per_sample(kappa)[..., 0]
            grad = MixtureParams(grad.weight_old - kap * anchor.weight_old,
                                 grad.mean_old - kap[..., None] * anchor.mean_old,
                                 grad.mean_new - kap[..., None] * anchor.mean_new)
        diag = {"starved": ~np.any(is_old, axis=-1)}
        if state:
            pool_x = np.concatenate([state["buffer_x"], x], axis=-2)
            pool_r = np.concatenate([state["buffer_r"], r], axis=-1)
            best = np.argsort(-pool_r, axis=-1, kind="stable")[..., :state["buffer_r"].shape[-1]]
            state = {"buffer_x": np.take_along_axis(pool_x, best[..., None], axis=-2),
                     "buffer_r": np.take_along_axis(pool_r, best, axis=-1)}
        return StepOutput(grad, state, diag)

    def em_update(self, problem: Problem, params: MixtureParams, state: State, step: int,
                  rng: Streams | None) -> tuple[MixtureParams, State, dict[str, Array]]:
        """A full move to the tilt q e^{gamma R} / Z (exact, or with self-normalised weights)."""
        if np.any(np.asarray(self.knob("kappa")) > 0) or self.knob("adaptive_gamma"):
            raise ValueError(f"optimizer 'em' for method '{self.name}' needs kappa=0 and "
                             "adaptive_gamma=false")
        learner = problem.learner(params)
        if rng is None:
            return em_from_moments(learner, self._population(problem, learner)), state, {}
        x, is_old = sample_mixture(learner, problem.batch_size, rng)
        logits = per_sample(self.knob("gamma")) * self.reward(problem, x)
        w = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True)) * x.shape[-2]
        mean_score = batch_mean(learner.scores(x), w)
        return em_from_moments(learner, mean_score), state, {"starved": ~np.any(is_old, -1)}
