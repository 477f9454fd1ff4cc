"""C8 predictions against direct computation and against simulation of the methods."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logit

from forgetlab import population, simulate
from forgetlab.methods import make_method
from forgetlab.methods.base import Problem
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig
from forgetlab.theory.near_policy import (
    anchored_retained_log_odds,
    anchored_tilt_exponent,
    ball_success_probability,
    entropic_logit_gradient,
    linear_tilt,
    log_tilt_normaliser,
    random_walk_slope,
    sdft_drift,
    sdft_gap_energy,
    sdft_retained_log_odds,
    sdft_weight_factor,
    tilt_log_odds,
)

N_SE = 4.0


def test_ball_probability_and_normaliser() -> None:
    cov = np.diag([1.0, 2.0, 0.5])
    m, c, rho = np.array([0.5, -0.2, 0.3]), np.array([1.0, 0.0, 0.0]), 1.3
    p = ball_success_probability(m, c, rho, cov)
    x = np.random.default_rng(0).multivariate_normal(m, cov, 400_000)
    inside = np.sum((x - c) ** 2 / np.diag(cov), -1) <= rho**2
    assert abs(inside.mean() - p) <= N_SE * inside.std() / np.sqrt(len(x))
    gam = np.array([0.0, 0.7, 3.0, 800.0])
    direct = np.log1p(np.expm1(gam[:3]) * 0.2)
    np.testing.assert_allclose(log_tilt_normaliser(gam[:3], 0.2), direct, rtol=1e-12)
    extreme = log_tilt_normaliser(gam, np.array([0.0, 1.0, 1e-300, 0.5]))
    assert np.all(np.isfinite(extreme))


def test_entropic_logit_gradient_matches_the_method() -> None:
    """beta Z_o / Z - beta = beta (1 - beta) dJ/dbeta from the exact population gradient."""
    cov = np.array([[1.5, 0.4], [0.4, 0.8]])
    target = TwoModeMixture(np.full((1, 1), 0.4), [0.0, 0.0], [2.5, -1.0], cov)
    problem = Problem(target, target)
    params = MixtureParams(np.full((1, 1), 0.35), np.array([[[0.3, -0.2]]]),
                           np.array([[[1.8, -0.4]]]))
    gamma, rho = 1.7, 1.1
    method = make_method("ttt-discover", adaptive_gamma=False, gamma=gamma, radius=rho)
    g = method.gradient(problem, params, {}, 0, None).grad
    p_o = ball_success_probability([0.3, -0.2], [2.5, -1.0], rho, cov)
    p_n = ball_success_probability([1.8, -0.4], [2.5, -1.0], rho, cov)
    pred = entropic_logit_gradient(0.35, log_tilt_normaliser(gamma, p_o),
                                   log_tilt_normaliser(gamma, p_n))
    np.testing.assert_allclose(-0.35 * 0.65 * g.weight_old[0, 0], pred, rtol=1e-10)


def test_anchored_fixed_point_by_mirror_ascent_on_a_grid() -> None:
    """Mirror ascent on log E_q[e^{gamma R}] - kappa KL(q || q_0) over all densities (1-D grid)
    converges to q_0 e^{g R} with the exact g; the linearised g = gamma / kappa differs."""
    x = np.linspace(-10, 18, 8001)
    b, rho, gamma, kappa = 6.0, 1.0, 2.0, 0.5
    log_q0 = np.logaddexp(np.log(0.4) + stats.norm.logpdf(x, 0, 1),
                          np.log(0.6) + stats.norm.logpdf(x, 4.5, 1))
    log_q0 -= np.log(np.sum(np.exp(log_q0)))
    r = (np.abs(x - b) <= rho).astype(float)
    log_q = log_q0.copy()
    for _ in range(3000):
        q = np.exp(log_q)
        w = np.exp(gamma * r) / np.sum(q * np.exp(gamma * r))
        log_q = log_q + 0.3 * (w - kappa * (log_q - log_q0))
        log_q -= np.log(np.sum(np.exp(log_q)))
    p0 = np.sum(np.exp(log_q0) * r)
    g = float(anchored_tilt_exponent(gamma, kappa, p0))
    pred = log_q0 + g * r
    pred -= np.log(np.sum(np.exp(pred)))
    assert np.max(np.abs(log_q - pred)) < 1e-8
    g_lin = float(anchored_tilt_exponent(gamma, kappa, p0, linearised=True))
    assert abs(g_lin - g) > 0.5
    # retained odds: latent old mass of q_0 e^{g R}, against the grid with labels
    old = np.log(0.4) + stats.norm.logpdf(x, 0, 1) + g * r
    new = np.log(0.6) + stats.norm.logpdf(x, 4.5, 1) + g * r
    grid_odds = np.log(np.sum(np.exp(old)) / np.sum(np.exp(new)))
    phi_o, phi_n = stats.norm.pdf(x, 0, 1), stats.norm.pdf(x, 4.5, 1)
    p_o, p_n = np.sum(phi_o * r) / np.sum(phi_o), np.sum(phi_n * r) / np.sum(phi_n)
    np.testing.assert_allclose(anchored_retained_log_odds(np.log(0.4 / 0.6), g, p_o, p_n),
                               grid_odds, rtol=1e-10)


def test_linear_tilt_is_a_shift() -> None:
    x = np.linspace(-12, 16, 20001)[:, None]
    q = TwoModeMixture(0.3, [0.0], [3.0], 1.7)
    lo, m_o, m_n = linear_tilt(logit(0.3), [0.0], [3.0], 1.7, [0.8], 2.0)
    tilted = q.log_prob(x[None])[0] + 0.8 * x[:, 0] / 2.0
    tilted -= np.log(np.trapezoid(np.exp(tilted), x[:, 0]))
    shifted = TwoModeMixture(expit(lo), m_o, m_n, 1.7).log_prob(x[None])[0]
    np.testing.assert_allclose(tilted, shifted, atol=1e-9)


def test_ttt_em_odds_follow_the_tilt_recursion() -> None:
    """Population EM (full move to the tilt), m_n(0) = b: log odds_t = log odds_0 - t log Z_n
    up to the old mode's success probability, t (e^gamma - 1) P_o (< 1e-9 here)."""
    gamma, rho, steps = 1.5, 1.5, 25
    cfg = SimulationConfig(method="ttt-discover", regime="population", optimizer="em",
                           steps=steps, stride=1,
                           knobs={"adaptive_gamma": False, "gamma": gamma, "radius": rho},
                           problem={"separation": 10.0, "beta0": 0.6, "new_mean_start": 1.0})
    tr = simulate(cfg)
    beta = tr.weight_old[0, 0]
    p_n = ball_success_probability(10.0, 10.0, rho, 1.0)
    p_o = ball_success_probability(0.0, 10.0, rho, 1.0)
    pred = tilt_log_odds(logit(0.6), 0.0, log_tilt_normaliser(gamma, p_n), steps)
    err = np.abs(logit(beta) - pred)
    assert np.all(err <= steps * np.expm1(gamma) * p_o + 1e-9), err.max()
    assert pred[-1] < logit(0.6) - 10


def _sdft(knobs: dict, **kw: object) -> SimulationConfig:
    return SimulationConfig(method="sdft", knobs=knobs, **kw)  # type: ignore[arg-type]


def test_sdft_drift_is_the_telescoped_overlap_force() -> None:
    """lam_demo > 0: final old-mean drift = -T (h(m_n(0)) - h(mu_demo)) / S_n (population)."""
    lr, tau, beta0 = 0.5, 0.1, 0.5
    tr = simulate(_sdft({"lam_demo": 0.5, "tau_ema": tau}, regime="population", steps=500,
                        stride=500, learning_rate=lr,
                        problem={"separation": 6.0, "beta0": beta0, "learner_new_mean": [4.0]}))

    def h(u: float) -> np.ndarray:
        mix = TwoModeMixture(beta0, 0.0, u, 1.0)
        return population.soft_misassignments(mix, mix)["eps_q"] * u

    pred = float(sdft_drift(lr * beta0, lr * (1 - beta0), tau, h(4.0), h(6.0))[0])
    drift = float(tr.mean_old[0, 0, -1, 0])
    assert abs(tr.mean_new[0, 0, -1, 0] - 6.0) < 1e-6
    assert abs(tr.weight_old[0, 0, -1] - beta0) < 0.02
    assert abs(drift - pred) <= 0.05 * abs(pred), (drift, pred)


def test_sdft_without_anchor_stands_still_in_the_population() -> None:
    tr = simulate(_sdft({"lam_demo": 0.0}, regime="population", steps=50, stride=50,
                        problem={"separation": 3.0}))
    np.testing.assert_allclose(tr.weight_old[0, 0, -1], 0.5, atol=1e-12)
    np.testing.assert_allclose(tr.mean_old[0, 0, -1], 0.0, atol=1e-12)
    np.testing.assert_allclose(tr.mean_new[0, 0, -1], 1.5, atol=1e-12)


def test_sdft_without_anchor_random_walk_slope() -> None:
    """lam_demo = 0, forward KL on student draws without baseline: E[delta^2] grows linearly
    with slope (tau / (tau + S))^2 lr^2 beta / B (separated modes, Sigma = 1)."""
    lr, tau, batch, beta0, seeds = 0.2, 0.1, 16, 0.5, 300
    tr = simulate(_sdft({"lam_demo": 0.0, "tau_ema": tau, "divergence": "forward",
                         "baseline": "none"}, regime="finite", steps=400, stride=100,
                        learning_rate=lr, batch_size=batch, seeds=seeds,
                        problem={"separation": 10.0, "beta0": beta0, "new_mean_start": 1.0}))
    d2 = tr.mean_old[0, :, :, 0] ** 2
    inc = (d2[:, -1] - d2[:, 1]) / 300.0
    pred = float(random_walk_slope(lr * beta0, tau, lr**2 * beta0 / batch))
    assert abs(inc.mean() - pred) <= N_SE * inc.std(ddof=1) / np.sqrt(seeds), (inc.mean(), pred)


def test_sdft_reweighting_decays_geometrically() -> None:
    """nu > 0: late per-step factor of beta vs the linearised student-EMA pair (student
    contraction c = 1 - lr beta (1 - beta) in the logit); 10% of the decay rate allowed for the
    change of c along the path and the nonlinearity of the logit."""
    lr, tau, nu = 1.0, 0.1, 0.2
    tr = simulate(_sdft({"lam_demo": 0.1, "tau_ema": tau, "nu": nu}, regime="population",
                        steps=200, stride=1, learning_rate=lr,
                        problem={"separation": 10.0, "beta0": 0.5, "new_mean_start": 1.0}))
    beta = tr.weight_old[0, 0]
    ratio = beta[-1] / beta[-2]
    c = 1.0 - lr * beta[-2] * (1 - beta[-2])
    pred = float(sdft_weight_factor(tau, nu, c))
    assert beta[-1] < 0.1
    assert abs((1 - ratio) - (1 - pred)) <= 0.1 * (1 - pred), (ratio, pred)


def _ttt(steps: int, stride: int, **knobs: float) -> SimulationConfig:
    return SimulationConfig(method="ttt-discover", regime="population", steps=steps,
                            stride=stride, learning_rate=1.0,
                            knobs={"adaptive_gamma": False, "gamma": 1.5, "radius": 1.5,
                                   **knobs},
                            problem={"separation": 10.0, "beta0": 0.6, "new_mean_start": 1.0})


def test_ttt_gradient_steps_decay_like_one_over_t() -> None:
    """Plain gradient steps in the logit (means frozen at the modes): d(1/beta)/dt =
    s (1 - beta)^2 (Z_n - Z_o) / Z, which tends to the constant s (1 - Z_o / Z_n): beta ~ 1/t,
    not geometric. Tolerance: the change of the instantaneous rate across the window."""
    cfg = _ttt(400, 100).with_updates(lr_scale={"mean_old": 0.0, "mean_new": 0.0})
    beta = simulate(cfg).weight_old[0, 0]
    log_z = [log_tilt_normaliser(1.5, ball_success_probability(m, 10.0, 1.5, 1.0))
             for m in (0.0, 10.0)]
    z_o, z_n = np.exp(log_z[0]), np.exp(log_z[1])
    rate = (1 - beta) ** 2 * (z_n - z_o) / (beta * z_o + (1 - beta) * z_n)
    measured = (1 / beta[-1] - 1 / beta[-2]) / 100
    assert abs(measured - 0.5 * (rate[-1] + rate[-2])) <= abs(rate[-1] - rate[-2]) + 1e-4
    assert abs(measured - (1 - z_o / z_n)) < 0.01
    decrements = np.diff(np.log(beta))
    assert np.all(np.diff(decrements[1:]) > 0)  # log beta flattens: slower than geometric


@pytest.mark.slow
def test_ttt_anchor_keeps_the_exact_tilt_mass() -> None:
    """kappa > 0: beta_inf of the population learner vs the latent old mass of q_0 e^{g R}
    (exact g); the linearised g = gamma / kappa misses it. 2% allowed for the two-mode family
    not containing the tilted distribution (its new component is a Gaussian, not a tilt)."""
    kappa = 2.0
    beta = simulate(_ttt(800, 800, kappa=kappa)).weight_old[0, 0, -1]
    p_o = ball_success_probability(0.0, 10.0, 1.5, 1.0)
    p_n = ball_success_probability(10.0, 10.0, 1.5, 1.0)
    p0 = 0.6 * p_o + 0.4 * p_n
    exact = expit(anchored_retained_log_odds(logit(0.6), anchored_tilt_exponent(1.5, kappa, p0),
                                             p_o, p_n))
    linear = expit(anchored_retained_log_odds(
        logit(0.6), anchored_tilt_exponent(1.5, kappa, p0, linearised=True), p_o, p_n))
    assert abs(beta - exact) <= 0.02 * exact, (beta, exact)
    assert abs(linear - exact) > 0.02


def test_sdft_loo_baseline_has_no_noise_at_the_teacher() -> None:
    """lam_demo = 0 with a leave-one-out baseline: the centred signal is 0, nothing moves."""
    tr = simulate(_sdft({"lam_demo": 0.0, "divergence": "forward"}, regime="finite", steps=20,
                        stride=20, batch_size=8, seeds=4, problem={"separation": 3.0}))
    np.testing.assert_allclose(tr.mean_old[0, :, -1], 0.0, atol=1e-12)
    np.testing.assert_allclose(tr.weight_old[0, :, -1], 0.5, atol=1e-12)


def _oapl_run(group: int, seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    slope, tau, lag = 0.5, 2.0, 300
    cfg = SimulationConfig(method="oapl", regime="finite", steps=2 * lag, stride=lag,
                           learning_rate=0.1, batch_size=64, seeds=seeds,
                           knobs={"tau": tau, "lag": lag, "group_size": group,
                                  "reward": "callable", "reward_fn": lambda x: slope * x[..., 0]},
                           problem={"separation": 8.0, "beta0": 0.5, "new_mean_start": 1.0})
    tr = simulate(cfg)
    return (tr.mean_old[0, :, 1:, 0], tr.mean_new[0, :, 1:, 0],
            logit(tr.weight_old[0, :, 1:]))


def test_oapl_syncs_apply_the_linear_tilt() -> None:
    """Linear reward r = w x: each sync moves both means by Sigma w / tau = 0.25 and the log
    odds by w (m_o - m_n) / tau = -2. V_hat's finite-G bias is O(1/G), so the G = 16 and G = 64
    runs are extrapolated to G = infinity ((64 x_64 - 16 x_16) / 48) and compared within 4 SE."""
    seeds = 60
    runs = {g: _oapl_run(g, seeds) for g in (16, 64)}
    lo, m_o, m_n = linear_tilt(0.0, [0.0], [8.0], 1.0, [0.5], 2.0)
    lo2, m_o2, m_n2 = linear_tilt(lo, m_o, m_n, 1.0, [0.5], 2.0)
    preds = [np.array([m_o[0], m_o2[0]]), np.array([m_n[0], m_n2[0]]), np.array([lo, lo2])]
    for field, pred in enumerate(preds):
        a, b = runs[16][field], runs[64][field]
        extrapolated = (64 * b - 16 * a) / 48
        se = np.sqrt((64 / 48) ** 2 * b.var(0, ddof=1) + (16 / 48) ** 2 * a.var(0, ddof=1))
        se /= np.sqrt(seeds)
        assert np.all(np.abs(extrapolated.mean(0) - pred) <= N_SE * se), (field, extrapolated
                                                                         .mean(0), pred, se)


def test_sdft_gap_energy_against_the_recursion() -> None:
    s_n, tau, lam, e0 = 0.3, 0.05, 0.4, 1.7
    e = eb = e0
    total = 0.0
    for _ in range(20000):
        total += (e - (1 - lam) * eb) ** 2
        e, eb = e - s_n * (e - (1 - lam) * eb), (1 - tau) * eb + tau * e
    np.testing.assert_allclose(sdft_gap_energy(s_n, tau, lam, e0), total, rtol=1e-10)


@pytest.mark.slow
def test_sdft_retained_mass_rises_by_the_gap_energy() -> None:
    """Separated modes, nu = 0: logit beta_inf = logit beta_0 + T_beta sum_t D_n,t^2 / 2.
    Tolerance: the prediction holds S_n = s (1 - beta) at beta_0, while beta rises by
    Delta beta, a relative error of Delta beta / (1 - beta_0) in the rise."""
    lr, tau, lam, beta0 = 0.5, 0.1, 0.5, 0.5
    tr = simulate(_sdft({"lam_demo": lam, "tau_ema": tau}, regime="population", steps=400,
                        stride=400, learning_rate=lr,
                        problem={"separation": 10.0, "beta0": beta0,
                                 "learner_new_mean": [8.0]}))
    pred = float(expit(sdft_retained_log_odds(0.0, lr * beta0 * (1 - beta0), lr * (1 - beta0),
                                              tau, lam, 2.0)))
    rise, measured = pred - beta0, tr.weight_old[0, 0, -1] - beta0
    assert rise > 0.01
    assert abs(measured - rise) <= rise * rise / (1 - beta0), (measured, rise)
