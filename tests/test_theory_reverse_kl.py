"""C3: the reverse-KL optimum is the target (up to the label swap); the gradient vanishes there.

References: a fine-grid integral of KL(q || p*) in d = 1 minimised by Nelder-Mead (independent of
the engine), and the separated-mode weight gradient against the exact engine with an error of
order BC.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy.special import expit
from scipy.stats import norm

from forgetlab.mixture import TwoModeMixture
from forgetlab.population import kl_divergence, reverse_kl_gradient
from forgetlab.theory import reverse_kl


def _random_cov(rng: np.random.Generator, dim: int) -> np.ndarray:
    m = rng.standard_normal((dim, dim))
    return m @ m.T + dim * np.eye(dim)


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_gradient_vanishes_at_optimum_and_swap(dim: int) -> None:
    rng = np.random.default_rng(7)
    cov = _random_cov(rng, dim)
    deltas = np.array([0.05, 0.7, 3.0, 12.0, 40.0])
    alphas = np.array([1e-6, 0.2, 0.5, 0.9, 1 - 1e-6])
    direction = np.linalg.cholesky(cov) @ rng.standard_normal(dim)
    direction /= np.linalg.norm(np.linalg.solve(np.linalg.cholesky(cov), direction))
    a = rng.standard_normal(dim)
    b = a + deltas[:, None] * direction
    target = TwoModeMixture(alphas, a, b, cov)
    star, swapped = reverse_kl.reverse_kl_optimum(target)
    np.testing.assert_array_equal(star.weight_old, alphas)
    np.testing.assert_allclose(swapped.weight_old, 1 - alphas)
    np.testing.assert_array_equal(swapped.mean_old, target.mean_new)
    for grad in (reverse_kl.optimum_gradient(target),
                 reverse_kl_gradient(target.swapped(), target)):
        for field in grad:
            assert np.all(np.abs(field) <= 1e-10), field
    assert np.all(kl_divergence(target.swapped(), target) <= 1e-12)


_GRID = np.linspace(-16.0, 18.0, 8001)


def _kl_grid(theta: np.ndarray, alpha: float, a: float, b: float) -> float:
    """KL(q || p*) in d = 1 by the trapezoid rule on a fine grid (spectrally accurate for these
    smooth, rapidly decaying integrands), theta = (logit beta, m_o, m_n)."""
    beta = expit(theta[0])
    x = _GRID
    log_q = np.logaddexp(np.log(beta) + norm.logpdf(x, theta[1]),
                         np.log1p(-beta) + norm.logpdf(x, theta[2]))
    log_p = np.logaddexp(np.log(alpha) + norm.logpdf(x, a), np.log1p(-alpha) + norm.logpdf(x, b))
    return float(integrate.trapezoid(np.exp(log_q) * (log_q - log_p), x))


def test_brute_force_minimiser_is_the_target() -> None:
    alpha, a, b = 0.3, -1.0, 1.5
    start = np.array([0.4, -0.6, 2.2])  # logit beta, m_o, m_n
    res = optimize.minimize(_kl_grid, start, args=(alpha, a, b), method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-14, "maxiter": 4000})
    star, _ = reverse_kl.reverse_kl_optimum(TwoModeMixture(alpha, a, b, 1.0))
    assert expit(res.x[0]) == pytest.approx(float(star.weight_old), abs=1e-5)
    assert res.x[1] == pytest.approx(float(star.mean_old[0]), abs=1e-5)
    assert res.x[2] == pytest.approx(float(star.mean_new[0]), abs=1e-5)
    assert res.fun < 1e-10


@pytest.mark.parametrize("delta", [4.0, 8.0, 12.0])
def test_separated_weight_gradient_within_bc(delta: float) -> None:
    betas = np.array([0.1, 0.3, 0.6, 0.9])
    alpha = 0.3
    exact = reverse_kl_gradient(TwoModeMixture(betas, 0.0, delta, 1.0),
                                TwoModeMixture(alpha, 0.0, delta, 1.0)).weight_old
    approx = reverse_kl.separated_weight_gradient(betas, alpha)
    bc = np.exp(-delta**2 / 8)
    r_b, r_a = np.sqrt((1 - betas) / betas), np.sqrt((1 - alpha) / alpha)
    bound = (np.maximum(r_b, r_a) + np.maximum(1 / r_b, 1 / r_a)) * bc
    assert np.all(np.abs(exact - approx) <= bound)
    assert np.max(np.abs(exact - approx)) >= 0.1 * bc  # the error is of order BC, not smaller
    with pytest.raises(ValueError, match="alpha"):
        reverse_kl.separated_weight_gradient(0.5, 1.0)
