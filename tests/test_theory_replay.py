"""C6 and C7: replay fixed points, importance weights and starvation.

References: brute-force maximisation (Nelder-Mead) of E_D[log q] computed on a fine grid in
d = 1 for the frozen-model fixed point; Monte Carlo of scores, importance weights and batches
(independent of the closed forms) within 4 standard errors; a fine-grid integral of E_q[w].
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize
from scipy.special import expit
from scipy.stats import norm

from forgetlab.mixture import TwoModeMixture
from forgetlab.population import forward_kl_gradient
from forgetlab.theory import replay

_GRID = np.linspace(-20.0, 26.0, 9201)


# -- C6 ---------------------------------------------------------------------------------------
def test_old_data_optimum_is_stationary() -> None:
    a, b = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    lams = np.array([0.05, 0.3, 0.9])
    opt = replay.old_data_optimum(a, b, lams)
    assert opt.mean_old.shape == (3, 2)
    q = TwoModeMixture(opt.weight_old, opt.mean_old, opt.mean_new, np.diag([1.0, 2.0]))
    data = TwoModeMixture(lams, a, b, np.diag([1.0, 2.0]))
    for field in forward_kl_gradient(q, data):
        assert np.all(np.abs(field) < 1e-12)


def _neg_loglik(theta: np.ndarray, means: np.ndarray, masses: np.ndarray) -> float:
    """-E_D[log q] on a grid, D = sum_k masses_k N(means_k, 1), theta = (logit beta, m_o, m_n)."""
    beta = expit(theta[0])
    x = _GRID
    log_q = np.logaddexp(np.log(beta) + norm.logpdf(x, theta[1]),
                         np.log1p(-beta) + norm.logpdf(x, theta[2]))
    dens = sum(w * norm.pdf(x, m) for w, m in zip(masses, means, strict=True))
    return -float(integrate.trapezoid(dens * log_q, x))


@pytest.mark.parametrize(("m0", "b", "lam"), [(1.5, 3.0, 0.2), (4.5, 6.0, 0.4), (1.0, 2.0, 0.5)])
def test_frozen_model_optimum_against_brute_force(m0: float, b: float, lam: float) -> None:
    beta0 = 0.5
    q0 = TwoModeMixture(beta0, 0.0, m0, 1.0)
    opt, grad_norm = replay.frozen_model_optimum(q0, b, lam)
    assert grad_norm < 1e-9
    means = np.array([0.0, m0, b])
    masses = np.array([lam * beta0, lam * (1 - beta0), 1 - lam])
    best = None
    for start in ([np.log(0.2), 0.0, b], [0.0, 0.5 * m0, b], [1.0, 0.5 * b, m0 + 1]):
        res = optimize.minimize(_neg_loglik, np.array(start, dtype=float), args=(means, masses),
                                method="Nelder-Mead",
                                options={"xatol": 1e-9, "fatol": 1e-15, "maxiter": 6000})
        best = res if best is None or res.fun < best.fun else best
    got = np.array([np.log(opt.weight_old / (1 - opt.weight_old)), opt.mean_old[0],
                    opt.mean_new[0]])
    value = _neg_loglik(got, means, masses)
    assert value <= best.fun + 1e-10  # at least as good as the brute-force search
    # canonical labels: compare with the brute-force optimum relabelled to "old nearer a"
    ref = best.x.copy()
    if abs(ref[2]) < abs(ref[1]):
        ref = np.array([-ref[0], ref[2], ref[1]])
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_frozen_model_separated_retains_lambda_beta0() -> None:
    lam = np.array([0.1, 0.3, 0.6])
    beta0 = 0.4
    a, b = 0.0, 12.0
    q0 = TwoModeMixture(beta0, a, a + 1.2 * (b - a), 1.0)  # m_n(0) groups with b
    opt, grad_norm = replay.frozen_model_optimum(q0, b, lam)
    np.testing.assert_allclose(opt.weight_old, lam * beta0, rtol=1e-6)
    np.testing.assert_allclose(opt.mean_old[..., 0], a, atol=1e-6)
    assert np.all(grad_norm < 1e-9)


def test_frozen_model_without_replay_is_the_c2_limit() -> None:
    q0 = TwoModeMixture(0.5, np.zeros((2, 1)), [[2.0], [3.0]], 1.0)
    opt, grad_norm = replay.frozen_model_optimum(q0, [[4.0], [4.0]], np.array([0.0, 0.3]))
    assert opt.weight_old[0] == 0.0 and grad_norm[0] == 0.0
    np.testing.assert_array_equal(opt.mean_new[0], [4.0])
    assert 0.0 < opt.weight_old[1] < 1.0 and grad_norm[1] < 1e-9


def test_current_model_replay_is_scaled_sft() -> None:
    """E_q[grad log q] = 0 (engine and Monte Carlo), so lambda q + (1 - lambda) p_new gives the
    SFT gradient times 1 - lambda."""
    q = TwoModeMixture(0.35, [0.0, 0.5], [2.0, -1.0], np.diag([1.0, 0.5]))
    p_new = TwoModeMixture(0.0, [3.0, 0.0], [3.0, 0.0], np.diag([1.0, 0.5]))
    lam = 0.3
    self_grad = forward_kl_gradient(q, q)
    for field in self_grad:
        assert np.all(np.abs(field) < 1e-12)
    sft = forward_kl_gradient(q, p_new)
    for mix, plain in zip(self_grad, sft, strict=True):
        np.testing.assert_allclose(lam * mix + (1 - lam) * plain,
                                   replay.current_model_scale(lam) * plain, rtol=1e-12)
    x = q.sample(400_000, np.random.default_rng(11))
    for field in q.scores(x):
        vals = field.reshape(field.shape[0], -1)
        mean, se = vals.mean(axis=0), vals.std(axis=0) / np.sqrt(vals.shape[0])
        assert np.all(np.abs(mean) < 4 * se)


# -- C7 ---------------------------------------------------------------------------------------
def test_starvation_against_simulated_batches() -> None:
    rng = np.random.default_rng(2026)
    n = 200_000
    for beta, size, lam in [(0.05, 16, 0.0), (0.05, 16, 0.1), (0.2, 8, 0.05), (0.01, 64, 0.02)]:
        from_replay = rng.random((n, size)) < lam  # R = p_old: an old draw
        from_model_old = rng.random((n, size)) < beta
        starved = ~np.any(from_replay | from_model_old, axis=1)
        p = replay.starvation_probability(beta, size, lam)
        se = np.sqrt(p * (1 - p) / n)
        assert abs(starved.mean() - p) < 4 * se
        assert p <= replay.starvation_bound(size, lam) + 1e-15 or lam == 0.0


@settings(max_examples=200, deadline=None)
@given(beta=st.floats(0.0, 1.0), lam=st.floats(0.0, 0.999), size=st.integers(1, 10_000))
def test_starvation_properties(beta: float, lam: float, size: int) -> None:
    p = replay.starvation_probability(beta, size, lam)
    assert 0.0 <= p <= 1.0
    assert p <= replay.starvation_bound(size, lam) * (1 + 1e-12)
    assert p <= replay.starvation_probability(beta, size) * (1 + 1e-12)
    log_p = replay.starvation_probability(beta, size, lam, log=True)
    assert log_p <= 0.0 and (np.isfinite(log_p) or beta == 1.0)


def test_starvation_validation_and_tiny_values() -> None:
    assert replay.starvation_probability(0.5, 2000, 0.5, log=True) == pytest.approx(
        2000 * (2 * np.log(0.5)), rel=1e-14)
    with pytest.raises(ValueError, match="batch_size"):
        replay.starvation_probability(0.1, 2.5)
    with pytest.raises(ValueError, match="replay"):
        replay.starvation_probability(0.1, 4, 1.0)
    with pytest.raises(ValueError, match="weight_old"):
        replay.starvation_probability(1.5, 4)


@pytest.mark.parametrize(("beta", "delta", "lam"), [(0.3, 1.0, 0.3), (0.05, 3.0, 0.5),
                                                    (0.6, 0.2, 0.1), (0.3, 8.0, 0.3)])
def test_importance_weights(beta: float, delta: float, lam: float) -> None:
    q = TwoModeMixture(beta, 0.0, delta, 1.0)
    factor = float(replay.importance_second_moment(q, lam))
    bound = float(replay.importance_weight_bound(lam))
    assert 1.0 <= factor <= bound
    x = _GRID
    dens_q = beta * norm.pdf(x, 0.0) + (1 - beta) * norm.pdf(x, delta)
    dens_b = (1 - lam) * dens_q + lam * norm.pdf(x, 0.0)
    grid = integrate.trapezoid(dens_q**2 / dens_b, x)
    assert factor == pytest.approx(grid, rel=1e-10)
    # Monte Carlo from the behaviour distribution: E_b[w^2] within 4 standard errors
    rng = np.random.default_rng(9)
    n = 400_000
    old = rng.random(n) < lam + (1 - lam) * beta
    xs = np.where(old, 0.0, delta) + rng.standard_normal(n)
    lq = np.logaddexp(np.log(beta) + norm.logpdf(xs, 0.0), np.log1p(-beta) + norm.logpdf(xs, delta))
    lb = np.logaddexp(np.log1p(-lam) + lq, np.log(lam) + norm.logpdf(xs, 0.0))
    w = np.exp(lq - lb)
    assert w.max() <= bound
    assert abs(np.mean(w**2) - factor) < 4 * np.std(w**2) / np.sqrt(n)
    assert abs(np.mean(w) - 1.0) < 4 * np.std(w) / np.sqrt(n)  # unbiased: E_b[w] = 1
