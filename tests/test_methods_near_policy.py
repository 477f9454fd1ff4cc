"""Near-on-policy estimators: LOO entropic weights, gamma rule, exact entropic gradient,
distillation divergences, OAPL residuals and self-SFT mass, each against an independent check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from forgetlab import population
from forgetlab.methods import make_method
from forgetlab.methods.base import Problem, Streams
from forgetlab.methods.distill import distillation_gradient
from forgetlab.methods.oapl import group_value, oapl_residuals
from forgetlab.methods.ttt_discover import (
    LN2,
    adaptive_gamma,
    ball_tilt_moments,
    entropic_loo_advantages,
)
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.theory.near_policy import linear_tilt

N_SE = 4.0
COV = np.array([[1.5, 0.4], [0.4, 0.8]])


def _problem(batch: int, new_start: list[float] | None = None) -> Problem:
    a, b = np.array([0.0, 0.0]), np.array([2.5, -1.0])
    target = TwoModeMixture(np.full((1, 1), 0.4), a, b, COV)
    initial = TwoModeMixture(np.full((1, 1), 0.6), a, np.array(new_start or [1.0, 0.5]), COV)
    return Problem(target, initial, batch)


def _params(n: int) -> MixtureParams:
    return MixtureParams(np.full((1, n), 0.35), np.broadcast_to([0.3, -0.2], (1, n, 2)),
                         np.broadcast_to([1.8, -0.4], (1, n, 2)))


def _assert_mean(est: np.ndarray, ref: np.ndarray) -> None:
    mean = est.mean(axis=1)
    se = est.std(axis=1, ddof=1) / np.sqrt(est.shape[1])
    assert np.all(np.abs(mean - ref) <= N_SE * se), (mean, ref, se)


def test_loo_advantages_match_direct_formula() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(50, 6)) * 3
    gamma = rng.uniform(0.1, 2.0, size=50)
    e = np.exp(gamma[:, None] * r)
    direct = e / ((e.sum(-1, keepdims=True) - e) / 5) - 1
    np.testing.assert_allclose(entropic_loo_advantages(r, gamma), direct, rtol=1e-10)
    big = entropic_loo_advantages(np.array([[0.0, 1.0, 1.0]]), 800.0)
    assert np.all(np.isfinite(big)) and big[0, 0] == -1.0


def test_adaptive_gamma_reaches_ln2() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 8))
    gamma = adaptive_gamma(r)
    logits = gamma[:, None] * r
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    kl = np.sum(p * np.log(p * 8), axis=-1)
    np.testing.assert_allclose(kl, LN2, atol=1e-9)
    assert np.all(adaptive_gamma(np.ones((3, 4))) == 0.0)


def test_ball_moments_against_monte_carlo() -> None:
    """P(ball) and E[1_ball (x - m)] = (F_d - F_{d+2})(c - m) vs 10^6 draws."""
    mix = TwoModeMixture(0.3, [0.2, 0.1], [1.5, -0.5], COV)
    center, radius = np.array([2.5, -1.0]), 1.2
    p, f = ball_tilt_moments(mix, center, radius)
    rng = np.random.default_rng(2)
    for c, m in enumerate((mix.mean_old, mix.mean_new)):
        x = rng.multivariate_normal(m, COV, size=1_000_000)
        z = np.linalg.solve(mix.chol, (x - center).T).T
        inside = (np.sum(z**2, -1) <= radius**2).astype(float)
        assert abs(inside.mean() - p[c]) <= N_SE * inside.std() / 1e3
        vec = inside[:, None] * (x - m)
        _assert_mean(vec.T, f[c] * (center - m))


@pytest.mark.parametrize("credit_old", [False, True])
def test_entropic_population_gradient_against_monte_carlo(credit_old: bool) -> None:
    """E_q[e^{gamma R} score] = Z grad J (Z from the ball moments), by 5 10^5 draws from q."""
    gamma, radius = 1.3, 1.2
    problem = _problem(1)
    method = make_method("ttt-discover", adaptive_gamma=False, gamma=gamma, radius=radius,
                         credit_old=credit_old)
    grad_loss = method.gradient(problem, _params(1), {}, 0, None).grad
    learner = problem.learner(_params(1))
    centers = [problem.target.mean_new] + ([problem.target.mean_old] if credit_old else [])
    p_c = sum(ball_tilt_moments(learner, c, radius)[0] for c in centers)[0, 0]
    z = 0.35 * (1 + np.expm1(gamma) * p_c[0]) + 0.65 * (1 + np.expm1(gamma) * p_c[1])
    x = learner.sample(500_000, np.random.default_rng(3))
    e = np.exp(gamma * method.reward(problem, x))[0, 0]
    s = learner.scores(x)
    _assert_mean((e * s.weight_old[0, 0])[None], -z * grad_loss.weight_old[0])
    for field in (1, 2):
        _assert_mean((e[:, None] * s[field][0, 0]).T, -z * grad_loss[field][0, 0])


def test_loo_estimator_is_c_k_times_entropic_gradient() -> None:
    """E[(1/k) sum A_i score_i] = c_k grad J, c_k = Z E[1 / M_{k-1}] (binomial sum)."""
    k, gamma, n = 4, 1.0, 20000
    problem = _problem(k)
    method = make_method("ttt-discover", adaptive_gamma=False, gamma=gamma, group_size=k,
                         radius=1.2)
    exact = method.gradient(problem, _params(1), {}, 0, None).grad
    learner = problem.learner(_params(1))
    p_c, _ = ball_tilt_moments(learner, problem.target.mean_new, 1.2)
    p = float(0.35 * p_c[0, 0, 0] + 0.65 * p_c[0, 0, 1])
    j = np.arange(k)
    inv_m = 1.0 / (1.0 + np.expm1(gamma) * j / (k - 1))
    c_k = (1.0 + np.expm1(gamma) * p) * np.sum(stats.binom.pmf(j, k - 1, p) * inv_m)
    assert c_k > 1.0
    est = method.gradient(problem, _params(n), {}, 0, Streams([5], [0], n)).grad
    _assert_mean(est.weight_old, c_k * exact.weight_old[:, 0])
    for e, ref in zip(est[1:], exact[1:], strict=True):
        _assert_mean(np.moveaxis(e, -1, 0)[:, 0], c_k * ref[0, 0])


@pytest.mark.parametrize("divergence", ["reverse", "forward"])
def test_distillation_estimators_are_unbiased(divergence: str) -> None:
    n = 20000
    problem = _problem(8)
    method = make_method("distill", divergence=divergence, baseline="loo")
    exact = method.gradient(problem, _params(1), {}, 0, None).grad
    est = method.gradient(problem, _params(n), {}, 0, Streams([7], [0], n)).grad
    _assert_mean(est.weight_old, exact.weight_old[:, 0])
    for e, ref in zip(est[1:], exact[1:], strict=True):
        _assert_mean(np.moveaxis(e, -1, 0)[:, 0], ref[0, 0])


def _jsd_1d(q: TwoModeMixture, t: TwoModeMixture, beta: float) -> float:
    def integrand(x: float) -> float:
        lq = float(q.log_prob(np.array([[x]]))[0])
        lt = float(t.log_prob(np.array([[x]]))[0])
        lm = np.logaddexp(np.log(beta) + lt, np.log1p(-beta) + lq)
        return beta * np.exp(lt) * (lt - lm) + (1 - beta) * np.exp(lq) * (lq - lm)
    return integrate.quad(integrand, -15, 20, epsabs=1e-13, limit=200)[0] / (beta * (1 - beta))


@pytest.mark.parametrize("beta", [0.2, 0.7])
def test_jsd_estimator_matches_finite_differences(beta: float) -> None:
    """Mean score-function estimate vs central differences of the quadrature JSD (d = 1)."""
    teacher = TwoModeMixture(0.5, 0.0, 3.0, 1.0)
    theta = np.array([0.3, 0.4, 1.5])
    h = 1e-4
    fd = []
    for i in range(3):
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        fd.append((_jsd_1d(TwoModeMixture(*up, 1.0), teacher, beta)
                   - _jsd_1d(TwoModeMixture(*dn, 1.0), teacher, beta)) / (2 * h))
    n = 40000
    learner = TwoModeMixture(np.full((n,), theta[0]), [theta[1]], [theta[2]], 1.0)
    x = learner.sample(16, np.random.default_rng(9))
    g = distillation_gradient(learner, TwoModeMixture(0.5, [0.0], [3.0], 1.0), x, "jsd", beta)
    _assert_mean(np.stack([g.weight_old, g.mean_old[:, 0], g.mean_new[:, 0]])[:, :],
                 np.array(fd))


def test_jsd_limits_are_forward_and_reverse_signals() -> None:
    from forgetlab.methods.distill import divergence_signal
    lq, lt = np.array([-1.0, -2.5]), np.array([-1.7, -0.3])
    np.testing.assert_allclose(divergence_signal(lq, lt, "jsd", 1.0), lq - lt, rtol=1e-12)
    np.testing.assert_allclose(divergence_signal(lq, lt, "jsd", 1e-7),
                               1 - np.exp(lt - lq), rtol=1e-5)


def test_oapl_residual_vanishes_at_the_linear_tilt() -> None:
    """q* = q_lag e^{w.x/tau}/Z (linear_tilt) with exact V: every residual is 0."""
    tau, w = 0.7, np.array([0.4, -0.3])
    lag = TwoModeMixture(0.3, [0.0, 0.0], [2.5, -1.0], COV)
    log_odds, m_o, m_n = linear_tilt(np.log(0.3 / 0.7), lag.mean_old, lag.mean_new, COV, w, tau)
    star = TwoModeMixture(1 / (1 + np.exp(-log_odds)), m_o, m_n, COV)
    log_z = [w @ m / tau + w @ COV @ w / (2 * tau**2) for m in (lag.mean_old, lag.mean_new)]
    value = tau * np.logaddexp(np.log(0.3) + log_z[0], np.log(0.7) + log_z[1])
    x = lag.sample(500, np.random.default_rng(4))
    res = oapl_residuals(star.log_prob(x), lag.log_prob(x), x @ w, tau, value)
    assert np.max(np.abs(res)) < 1e-10
    groups = (x @ w).reshape(50, 10)
    np.testing.assert_allclose(group_value(groups, tau),
                               tau * np.log(np.mean(np.exp(groups / tau), -1)), rtol=1e-12)


def test_self_sft_em_fits_the_filtered_odds() -> None:
    """One EM step on verified q_0 draws: odds' = odds_0 P_o / P_n (separated modes)."""
    a, b = np.array([0.0]), np.array([8.0])
    target = TwoModeMixture(np.full((1, 1), 0.5), a, b, 1.0)
    initial = TwoModeMixture(np.full((1, 1), 0.4), a, np.array([8.9]), 1.0)
    problem = Problem(target, initial, 4000)
    method = make_method("self-sft", radius=1.5, credit_old=True)
    n = 64
    params = MixtureParams(np.full((1, n), 0.4), np.zeros((1, n, 1)), np.full((1, n, 1), 8.9))
    state = method.init_state(problem, params)
    new, _, _ = method.em_update(problem, params, state, 0, Streams([3], [0], n))
    p_o = stats.chi2.cdf(1.5**2, 1)
    p_n = stats.ncx2.cdf(1.5**2, 1, 0.9**2)
    pred = 0.4 * p_o / (0.4 * p_o + 0.6 * p_n)
    _assert_mean(new.weight_old, np.array([pred]))
    assert abs(pred - 0.4) > 0.03


def test_ttt_anchor_estimator_is_unbiased() -> None:
    """gamma = 0 leaves only the anchor: the LOO estimate of kappa grad KL(q || q_0) is
    unbiased against the engine's exact gradient."""
    n, kappa = 20000, 0.7
    problem = _problem(8)
    method = make_method("ttt-discover", adaptive_gamma=False, gamma=0.0, kappa=kappa)
    exact = kappa * np.asarray(
        population.reverse_kl_gradient(problem.learner(_params(1)), problem.initial).weight_old)
    est = method.gradient(problem, _params(n), {}, 0, Streams([13], [0], n)).grad
    _assert_mean(est.weight_old, exact[:, 0])
    ref = population.reverse_kl_gradient(problem.learner(_params(1)), problem.initial)
    for e, r in zip(est[1:], ref[1:], strict=True):
        _assert_mean(np.moveaxis(e, -1, 0)[:, 0], kappa * r[0, 0])
