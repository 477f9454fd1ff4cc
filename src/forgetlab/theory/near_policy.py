"""Claim C8: retained old mass and drift under near-on-policy methods (SDFT, TTT-Discover, OAPL).

Derivations (the project's own; where they refine the working statement of theory.md, the
difference is written next to the function that computes it).

Tilts and odds
--------------
For q = beta phi_o + (1 - beta) phi_n and any reward R, the tilt q e^{g R} / Z is again a sum of
two (tilted) components with masses beta Z_o and (1 - beta) Z_n, Z_c = E_{phi_c}[e^{g R}].
Hence the latent old mass of the tilt has odds  odds' = odds Z_o / Z_n  exactly, whatever the
overlap (this uses only q r_o = beta phi_o).

* 0/1 reward on a Mahalanobis ball, R(x) = 1{D(x, c) <= rho}: with x ~ N(m, Sigma),
  D(x, c)^2 is noncentral chi-square with d degrees of freedom and noncentrality D(m, c)^2, so
  P_m(R = 1) = F_{ncx2(d, D(m, c)^2)}(rho^2) and Z = 1 + (e^g - 1) P (:func:`log_tilt_normaliser`).
* Linear reward R(x) = w.x: phi(x; m) e^{w.x / tau} is proportional to phi(x; m + Sigma w / tau)
  with log Z = w.m / tau + w^T Sigma w / (2 tau^2), so the tilt stays in the two-mode family:
  both means move by Sigma w / tau and log odds changes by w.(m_o - m_n) / tau
  (:func:`linear_tilt`).

TTT-Discover (entropic objective J = log E_q[e^{gamma R}])
---------------------------------------------------------
* grad J = E_q[(w - 1) grad log q], w = e^{gamma R} / E_q[e^{gamma R}]: the gradient of
  -KL(tilt || q) with the tilt held fixed. In the logit eta of beta it is exactly
  dJ/deta = beta Z_o / Z - beta (:func:`entropic_logit_gradient`).
* A full move to the tilt per step (EM / mirror step) gives odds_t = odds_0 (Z_o / Z_n)^t:
  geometric decay when the reward favours the new mode (:func:`tilt_log_odds`). Plain gradient
  steps in eta do not: deta/dt = beta (1 - beta)(Z_o - Z_n) / Z -> beta (Z_o / Z_n - 1) as
  beta -> 0, so beta decays like 1/t (as for forward KL, C2), not geometrically.
* With a KL anchor kappa, J_kappa = log E_q[e^{gamma R}] - kappa KL(q || q_0). Its stationary
  point over all distributions is q_0 exp(w / kappa) / C, w evaluated at the optimum. For a
  0/1 reward this is the tilt q_0 e^{g R} with g solving g = (e^gamma - 1) / (kappa Z*(g)),
  Z*(g) = E_{q_0 e^{g R}}[e^{gamma R}] (:func:`anchored_tilt_exponent`). The working form
  q_0 e^{gamma R / kappa} is the first order in gamma of this (it is exact for the linearised
  objective gamma E_q[R] - kappa KL(q || q_0)). Either way the retained odds are
  odds_0 Z_o(g) / Z_n(g) (:func:`anchored_retained_log_odds`), and as g grows the per-step
  ratio Z_o / Z_n decreases monotonically to P_old(success) / P_new(success): overlap-gated.

OAPL (lagged sampler, period L, K synchronisations)
---------------------------------------------------
Within a period the population loss E_{q_lag}[(tau log(q / q_lag) - r + V)^2] with
V = tau log E_{q_lag}[e^{r / tau}] is zero exactly at q = q_lag e^{r / tau} / Z, so each
synchronisation is one tilt with g = 1 / tau: log odds_K = log odds_0 + sum_k log(Z_o^(k) /
Z_n^(k)) (:func:`cumulative_log_odds`). Old mass is kept iff that sum stays bounded. A linear
reward moves every mean by Sigma w / tau per sync, exactly. With two temperatures (tau_value in
V, tau_ratio on the log-ratio) the residual at the optimum is proportional to q / q_lag instead
of zero (:mod:`forgetlab.methods.oapl`); for a 0/1 reward each sync is then the tilt with the
exponent of :func:`oapl_tilt_exponent`, 1 / tau only when the two are equal.

SDFT (EMA teacher, demonstration anchor lam_demo, reweighting nu)
-----------------------------------------------------------------
Teacher: beta^T = (1 - nu) bar(beta), m_o^T = bar(m_o), m_n^T = (1 - lam) bar(m_n) + lam mu_demo,
bar = EMA with rate tau_ema, absorbing the student's parameters of each step (bar(w) <-
(1 - tau) bar(w) + tau w, w taken before its update, as in :mod:`forgetlab.methods.sdft`).
Write a student parameter as w and its step as w <- w - S (w - bar(w) + F), F a forcing term.
Then (tau / S) w + bar(w) changes only by -tau F per step, so a total forcing sum_t F_t moves
the rest point of (w, bar(w)) by

    -T sum_t F_t,   T = tau S / (tau + S)     (:func:`ema_transmission`).

There is no restoring force towards the initial model: the EMA follows the student.

* Retained mass (lam > 0, nu = 0): the weight is pulled only to its own EMA, so beta stays at
  beta_0 up to the forcing from overlap and from the mismatch of the new components: for
  separated modes dKL/dbeta = logit beta - logit beta^T + (D_o^2 - D_n^2) / 2, with
  D_n = D(m_n, m_n^T), which *raises* beta by a finite amount while the new mean converges.
  With e = m_n - mu_demo, bar(e) its EMA, the gap g = e - (1 - lam) bar(e) is linear in
  z = (e, bar(e)): z <- A z, A = [[1 - S_n, S_n (1 - lam)], [tau, 1 - tau]], so
  sum_t D_n,t^2 = z_0^T P z_0 with P = A^T P A + c c^T, c = (1, -(1 - lam)) (a discrete
  Lyapunov equation), and logit beta_inf = logit beta_0 + T_beta sum_t D_n,t^2 / 2, with T_beta
  the transmission for the weight's step S_beta (:func:`sdft_gap_energy`,
  :func:`sdft_retained_log_odds`). Overlap lowers the rise.
* Drift (lam > 0, nu = 0): the new mean converges to mu_demo (the only fixed point of
  u = (1 - lam) u + lam mu_demo). The old mean's forcing is h(m_n) - h(m_n^T),
  h(u) = eps(u)(u - m_o), eps the soft misassignment of the old component; summed along the
  path it telescopes (Sigma = sigma^2 I): sum_t F_t = (h(m_n(0)) - h(mu_demo)) / S_n, with
  S_n the new mean's step.
  The drift is finite and equals T (h(m_n(0)) - h(mu_demo)) / S_n (:func:`sdft_drift`), of
  order tau_ema eps ||m_n(0) - mu_demo|| / S_n for a slow EMA. The working form
  eps_q ||m_n(0) - mu_demo|| / (lam tau_ema) gets the horizon (1 / (lam tau_ema) steps) right
  but not the size: lam cancels, because a stronger pull closes the same distance faster.
* lam = 0: every student equal to its teacher is a fixed point, so in the population nothing
  moves and the new skill is never learned. In finite batches the rest point performs a random
  walk: E[delta_t^2] grows linearly with slope (tau / (tau + S))^2 tr(Sigma^{-1} Cov(xi)), xi
  the per-step noise of the old mean's update (:func:`random_walk_slope`). This needs an
  estimator whose noise does not vanish at q = teacher: a score-function estimator without
  baseline (for forward KL, f = -T/q = -1 there, so the batch mean of the scores remains).
  With a leave-one-out baseline the centred signal is identically 0 at q = teacher for both
  divergences, and then nothing moves at all.
* nu > 0: when the student tracks its teacher, beta = (1 - nu) bar(beta) and
  bar(beta) <- (1 - tau_ema nu) bar(beta) roughly: geometric decay
  (:func:`sdft_weight_factor` gives the per-step factor of the linearised student-EMA pair).

Shapes: everything broadcasts over leading axes; means ``[..., d]``, covariances ``[..., d, d]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from scipy.special import expit, logit

from forgetlab._validation import as_covariance, as_finite, as_means
from forgetlab.gaussian import factorise, noncentral_chi2_cdf
from forgetlab.mixture import log_odds

Array = NDArray[np.float64]


# -- tilts --------------------------------------------------------------------------------------
def ball_success_probability(mean: ArrayLike, center: ArrayLike, radius: ArrayLike,
                             cov: ArrayLike) -> Array:
    """P_{x~N(mean, Sigma)}[D(x, center) <= radius] = F_{ncx2(d, D(mean, center)^2)}(radius^2)."""
    m, c = as_means(mean, center, names=("mean", "center"))
    rho = as_finite(radius, "radius", low=0.0)
    nc = factorise(np.asarray(cov, dtype=float), m.shape[-1]).distance(m, c) ** 2
    return noncentral_chi2_cdf(rho**2, m.shape[-1], nc)


def log_tilt_normaliser(gamma: ArrayLike, p_success: ArrayLike) -> Array:
    """log Z = log E[e^{gamma R}] for R in {0, 1} with P(R = 1) = p: log((1 - p) + p e^gamma)."""
    g = as_finite(gamma, "gamma")
    p = as_finite(p_success, "p_success", low=0.0, high=1.0)
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-p), g + np.log(p))


def tilt_log_odds(log_odds0: ArrayLike, log_z_old: ArrayLike, log_z_new: ArrayLike,
                  steps: int) -> Array:
    """log odds_t = log odds_0 + t (log Z_o - log Z_n), t = 0..steps, on a new last axis.

    The latent old mass after t full moves to the tilt with the components held fixed.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    ratio = as_finite(log_z_old, "log_z_old") - as_finite(log_z_new, "log_z_new")
    t = np.arange(int(steps) + 1, dtype=float)
    return as_finite(log_odds0, "log_odds0")[..., None] + ratio[..., None] * t


def entropic_logit_gradient(weight_old: ArrayLike, log_z_old: ArrayLike,
                            log_z_new: ArrayLike) -> Array:
    """dJ/deta for J = log E_q[e^{gamma R}]: beta Z_o / (beta Z_o + (1 - beta) Z_n) - beta."""
    beta = as_finite(weight_old, "weight_old", low=0.0, high=1.0, open_low=True, open_high=True)
    lz_o = as_finite(log_z_old, "log_z_old")
    lz_n = as_finite(log_z_new, "log_z_new")
    return expit(logit(beta) + lz_o - lz_n) - beta


def anchored_tilt_exponent(gamma: ArrayLike, kappa: ArrayLike, p_success0: ArrayLike,
                           linearised: bool = False) -> Array:
    """Exponent g of the anchored fixed point q_0 e^{g R} for a 0/1 reward.

    Exact: g = (e^gamma - 1) / (kappa Z*(g)), Z*(g) = 1 + (e^gamma - 1) P_g, P_g the success
    probability under q_0 e^{g R} (p_0 e^g / (1 - p_0 + p_0 e^g)); the right side decreases in
    g, so the root in [0, (e^gamma - 1) / kappa] is unique (found by bisection).
    ``linearised=True`` gives the first-order form g = gamma / kappa.
    """
    gam = as_finite(gamma, "gamma", low=0.0)
    kap = as_finite(kappa, "kappa", low=0.0, open_low=True)
    p0 = as_finite(p_success0, "p_success0", low=0.0, high=1.0)
    if linearised:
        return np.broadcast_to(gam / kap, np.broadcast_shapes(gam.shape, kap.shape, p0.shape))
    em1 = np.expm1(gam)

    def excess(g: Array) -> Array:
        p_g = expit(g - log_odds(p0))
        return g - em1 / (kap * (1.0 + em1 * p_g))

    lo = np.zeros(np.broadcast_shapes(gam.shape, kap.shape, p0.shape))
    hi = lo + em1 / kap
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = excess(mid) > 0
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return 0.5 * (lo + hi)


def anchored_retained_log_odds(log_odds0: ArrayLike, exponent: ArrayLike, p_old: ArrayLike,
                               p_new: ArrayLike) -> Array:
    """log odds_0 + log Z_o(g) - log Z_n(g): old mass of q_0 e^{g R} (g from
    :func:`anchored_tilt_exponent`); P_old, P_new the success probabilities of q_0's modes."""
    return (as_finite(log_odds0, "log_odds0") + log_tilt_normaliser(exponent, p_old)
            - log_tilt_normaliser(exponent, p_new))


# -- OAPL ---------------------------------------------------------------------------------------
def cumulative_log_odds(log_odds0: ArrayLike, log_ratios: ArrayLike) -> Array:
    """log odds_K = log odds_0 + sum_{k <= K} log(Z_o^(k) / Z_n^(k)); ratios on the last axis,
    result ``[..., K + 1]`` starting with log odds_0."""
    r = as_finite(log_ratios, "log_ratios")
    l0 = as_finite(log_odds0, "log_odds0")[..., None]
    return np.concatenate([l0 + 0.0 * r[..., :1], l0 + np.cumsum(r, axis=-1)], axis=-1)


def oapl_tilt_exponent(success_prob: float, tau_value: float, tau_ratio: float) -> float:
    """kappa of the within-period OAPL optimum q_lag e^{kappa r} / Z for a 0/1 reward r.

    The root of tau_r kappa - 1 = (V - tau_r log(1 - P + P e^kappa)) (e^kappa - 1) with
    V = tau_v log(1 - P + P e^{1 / tau_v}) and P = P_{q_lag}(r = 1) in (0, 1) (the residual on
    r = 1 is e^kappa times the residual on r = 0); kappa = 1 / tau when tau_v = tau_r = tau.
    Solved divided by e^kappa - 1, in log space, on a bracket doubled until the sign changes.
    """
    p = float(as_finite(success_prob, "success_prob", low=0.0, high=1.0, open_low=True,
                        open_high=True))
    t_v = float(as_finite(tau_value, "tau_value", low=0.0, open_low=True))
    t_r = float(as_finite(tau_ratio, "tau_ratio", low=0.0, open_low=True))
    log_p, log_q = np.log(p), np.log1p(-p)
    value = t_v * np.logaddexp(log_q, log_p + 1.0 / t_v)

    def gap(kappa: float) -> float:
        ratio = (t_r * kappa - 1.0) * np.exp(-kappa) / -np.expm1(-kappa)
        return float(ratio - value + t_r * np.logaddexp(log_q, log_p + kappa))

    high = 1.0 / t_r
    while gap(high) <= 0.0:
        high *= 2.0
    return float(brentq(gap, 1e-12 * high, high, xtol=1e-14 * high, rtol=4 * np.finfo(float).eps))


def linear_tilt(log_odds: ArrayLike, mean_old: ArrayLike, mean_new: ArrayLike, cov: ArrayLike,
                slope: ArrayLike, tau: ArrayLike) -> tuple[Array, Array, Array]:
    """q e^{w.x / tau} / Z for q a two-mode mixture: (log odds + w.(m_o - m_n) / tau,
    m_o + Sigma w / tau, m_n + Sigma w / tau). Exact (a linear tilt of a Gaussian is a shift)."""
    m_o, m_n, w = as_means(mean_old, mean_new, slope, names=("mean_old", "mean_new", "slope"))
    t = as_finite(tau, "tau", low=0.0, open_low=True)
    sigma = as_covariance(cov, m_o.shape[-1])
    shift = np.einsum("...ij,...j->...i", sigma, w) / t[..., None]
    lo = as_finite(log_odds, "log_odds") + np.sum(w * (m_o - m_n), axis=-1) / t
    return lo, m_o + shift, m_n + shift


# -- SDFT ---------------------------------------------------------------------------------------
def ema_transmission(step: ArrayLike, tau_ema: ArrayLike) -> Array:
    """T = tau S / (tau + S): the share of a student forcing that moves the student-EMA rest
    point (student step S in (0, 1], EMA rate tau in (0, 1], EMA fed the pre-step student)."""
    s = as_finite(step, "step", low=0.0, high=1.0, open_low=True)
    tau = as_finite(tau_ema, "tau_ema", low=0.0, high=1.0, open_low=True)
    return tau * s / (tau + s)


def sdft_drift(step_old: ArrayLike, step_new: ArrayLike, tau_ema: ArrayLike,
               h_start: ArrayLike, h_end: ArrayLike) -> Array:
    """Predicted final old-mean displacement -T (h(m_n(0)) - h(mu_demo)) / S_n, ``[..., d]``.

    h(u) = eps(u) (u - m_o) is the overlap force on the old mean at new mean u (eps the soft
    misassignment of the old component, E_{phi(m_o)}[r_n]); S_o (``step_old``) and S_n
    (``step_new``) are the per-step contraction factors of the old and new means towards their
    teacher (gradient descent with rate s and Sigma = sigma^2 I: S_o = s beta / sigma^2,
    S_n = s (1 - beta) / sigma^2).
    """
    hs, he = as_means(h_start, h_end, names=("h_start", "h_end"))
    s_n = as_finite(step_new, "step_new", low=0.0, high=1.0, open_low=True)
    return -ema_transmission(step_old, tau_ema)[..., None] * (hs - he) / s_n[..., None]


def random_walk_slope(step: ArrayLike, tau_ema: ArrayLike, noise_var: ArrayLike) -> Array:
    """d E[delta_t^2] / dt = (tau / (tau + S))^2 v for lam_demo = 0.

    v = tr(Sigma^{-1} Cov(xi)) is the Mahalanobis variance of the per-step noise xi added to the
    old mean's update, S its contraction step towards the teacher. Noise enters the student
    directly (not through S), so (tau / S) w + bar(w) moves by (tau / S) xi and the rest point by
    tau xi / (tau + S).
    """
    s = as_finite(step, "step", low=0.0, high=1.0, open_low=True)
    tau = as_finite(tau_ema, "tau_ema", low=0.0, high=1.0, open_low=True)
    v = as_finite(noise_var, "noise_var", low=0.0)
    return (tau / (tau + s)) ** 2 * v


def sdft_weight_factor(tau_ema: ArrayLike, nu: ArrayLike, contraction: ArrayLike = 0.0) -> Array:
    """Per-step factor of the old weight for nu > 0 (small beta, linearised).

    Student: beta <- beta^T + c (beta - beta^T), beta^T = (1 - nu) bar(beta); EMA (fed the
    pre-step student): bar(beta) <- (1 - tau) bar(beta) + tau beta. The factor is the spectral
    radius of [[c, (1-c)(1-nu)], [tau, 1 - tau]]; it is 1 for nu = 0 and about
    1 - tau nu / (1 + tau) for c = 0.
    """
    tau = as_finite(tau_ema, "tau_ema", low=0.0, high=1.0, open_low=True)
    n = as_finite(nu, "nu", low=0.0, high=1.0)
    c = as_finite(contraction, "contraction", low=0.0, high=1.0, open_high=True)
    a11, a12 = c, (1 - c) * (1 - n)
    a21, a22 = tau, 1 - tau
    tr, det = a11 + a22, a11 * a22 - a12 * a21
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0.0))
    return tr / 2 + disc


def sdft_gap_energy(step_new: ArrayLike, tau_ema: ArrayLike, lam_demo: ArrayLike,
                    distance0: ArrayLike) -> Array:
    """sum_{t >= 0} D(m_n(t), m_n^T(t))^2 for the linearised new-mean dynamics (Sigma = sigma^2 I).

    z = (e, bar(e)), e = m_n - mu_demo, z <- A z with A = [[1 - S_n, S_n (1 - lam)],
    [tau, 1 - tau]], gap g = c.z, c = (1, -(1 - lam)), z_0 = (e_0, e_0), |e_0| = ``distance0``
    (Mahalanobis). The sum is z_0^T P z_0, P = A^T P A + c c^T, solved as
    vec(P) = (I - A^T (x) A^T)^{-1} vec(c c^T) (batched over leading axes).
    """
    s_n = as_finite(step_new, "step_new", low=0.0, high=1.0, open_low=True)
    tau = as_finite(tau_ema, "tau_ema", low=0.0, high=1.0, open_low=True)
    lam = as_finite(lam_demo, "lam_demo", low=0.0, high=1.0, open_low=True)
    e0 = as_finite(distance0, "distance0", low=0.0)
    s_n, tau, lam, e0 = np.broadcast_arrays(s_n, tau, lam, e0)
    a = np.stack([np.stack([1 - s_n, s_n * (1 - lam)], -1), np.stack([tau, 1 - tau], -1)], -2)
    c = np.stack([np.ones_like(lam), -(1 - lam)], -1)
    at = np.swapaxes(a, -1, -2)
    kron = np.einsum("...ij,...kl->...ikjl", at, at).reshape(*a.shape[:-2], 4, 4)
    q = np.einsum("...i,...j->...ij", c, c).reshape(*a.shape[:-2], 4)
    p = np.linalg.solve(np.eye(4) - kron, q[..., None])[..., 0].reshape(*a.shape[:-2], 2, 2)
    return e0**2 * np.sum(p, axis=(-1, -2))


def sdft_retained_log_odds(log_odds0: ArrayLike, step_weight: ArrayLike, step_new: ArrayLike,
                           tau_ema: ArrayLike, lam_demo: ArrayLike, distance0: ArrayLike
                           ) -> Array:
    """logit beta_inf = logit beta_0 + T(S_beta, tau) sum_t D_n,t^2 / 2 (separated modes, nu = 0).

    S_beta is the weight's contraction step in the logit (gradient descent with rate s:
    s beta (1 - beta)); the sum comes from :func:`sdft_gap_energy`.
    """
    energy = sdft_gap_energy(step_new, tau_ema, lam_demo, distance0)
    return as_finite(log_odds0, "log_odds0") + ema_transmission(step_weight, tau_ema) * energy / 2
