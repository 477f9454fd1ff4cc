"""1-D Gaussian expectations of logistic-type functions against adaptive quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from forgetlab.quadrature import INTEGRANDS, gaussian_expectation, log_gaussian_expectation

# independent definitions of the integrands (log f), with series in the far tails
REFERENCE_LOG_F = {
    "sigmoid": log_expit,
    "sigmoid_prime": lambda u: log_expit(u) + log_expit(-u),
    "softplus": lambda u: np.log(u + np.log1p(np.exp(-u))) if u > 30 else (  # log(1+e^u) =
        u + np.log1p(-np.exp(u) / 2 + np.exp(2 * u) / 3) if u < -30  # e^u - e^2u/2 + e^3u/3
        else np.log(np.log1p(np.exp(u)))),
    "sigmoid_sq_prime": lambda u: 2 * log_expit(u) + log_expit(-u),
}


def reference_log_expectation(kind: str, m: float, s: float) -> float:
    """log E[f(m + s t)], t ~ N(0, 1), by scipy.integrate.quad around the maximiser and the
    kink of the integrand, scaled by its maximum."""
    log_f = REFERENCE_LOG_F[kind]

    def g(t):
        return log_f(m + s * t) - 0.5 * t * t

    opt = minimize_scalar(lambda t: -g(t), bounds=(-3 * s - 1, 3 * s + 1), method="bounded",
                          options={"xatol": 1e-12})
    t_star, g_star = opt.x, -opt.fun
    knots = [t_star - 40, t_star, t_star + 40]
    if s > 0 and abs(m / s + t_star) < 40:
        knots.append(-m / s)
    knots = sorted(knots)
    total = sum(integrate.quad(lambda t: np.exp(g(t) - g_star), lo, hi, epsabs=0.0,
                               epsrel=2e-14, limit=2000)[0]
                for lo, hi in zip(knots[:-1], knots[1:], strict=True))
    return float(np.log(total) + g_star - 0.5 * np.log(2 * np.pi))


_RNG = np.random.default_rng(0)
CASES = [(0.0, 0.0), (0.3, 0.0), (-2.0, 1e-8), (0.0, 1e-3), (1.0, 0.5), (-3.0, 2.0),
         (0.0, 40.0), (-800.0, 40.0), (800.0, 40.0), (-820.0, 40.0), (5.0, 60.0),
         (-1800.0, 60.0), (30.0, 0.05), (-13.8, 0.05), (13.8, 1e-6),
         (-20000.0, 200.0), (20000.0, 200.0), (0.0, 500.0), (-2e5, 600.0), (3000.0, 100.0)]
CASES += [(float(m), float(s)) for m, s in zip(_RNG.uniform(-3000, 3000, 10),
                                                _RNG.uniform(0, 80, 10), strict=True)]
CASES += [(float(m), float(s)) for m, s in zip(_RNG.uniform(-30, 30, 10),
                                                _RNG.uniform(0, 4, 10), strict=True)]


@pytest.mark.parametrize("kind", sorted(INTEGRANDS))
def test_log_expectation_matches_adaptive_quadrature(kind):
    m, s = np.array(CASES).T
    got = log_gaussian_expectation(kind, m, s)
    ref = np.array([reference_log_expectation(kind, mi, si) for mi, si in CASES])
    # |log got - log ref| is the relative error of E[f]; 1e-12 plus the rounding of log values
    assert np.all(np.abs(got - ref) <= 1e-12 + 1e-15 * np.abs(ref)), np.max(np.abs(got - ref))


def test_zero_width_is_the_function_value_and_limits_at_infinity():
    m = np.array([-700.0, -3.0, 0.0, 2.5, 700.0])
    assert np.allclose(gaussian_expectation("sigmoid", m, 0.0), expit(m), rtol=1e-14, atol=0)
    assert np.allclose(gaussian_expectation("sigmoid_prime", m, 0.0), expit(m) * expit(-m),
                       rtol=1e-13, atol=0)
    inf = np.array([-np.inf, np.inf])
    assert np.array_equal(gaussian_expectation("sigmoid", inf, 3.0), [0.0, 1.0])
    assert np.array_equal(gaussian_expectation("sigmoid_prime", inf, 3.0), [0.0, 0.0])
    assert np.array_equal(gaussian_expectation("softplus", inf, 3.0), [0.0, np.inf])


def test_known_closed_forms():
    # E[sigmoid(u)] = 1/2 for m = 0 (symmetry); E[softplus(u)] - E[softplus(-u)] = m
    s = np.array([0.01, 1.0, 7.0, 40.0])
    assert np.allclose(gaussian_expectation("sigmoid", 0.0, s), 0.5, rtol=1e-14, atol=0)
    m = np.array([-5.0, 0.3, 2.0, 12.0])
    diff = gaussian_expectation("softplus", m, s) - gaussian_expectation("softplus", -m, s)
    assert np.allclose(diff, m, rtol=1e-13, atol=1e-13)
    # E[sigmoid'(u)] = d/dm E[sigmoid(u)] (central difference)
    h = 1e-5
    num = (gaussian_expectation("sigmoid", m + h, s) - gaussian_expectation("sigmoid", m - h, s))
    assert np.allclose(gaussian_expectation("sigmoid_prime", m, s), num / (2 * h), rtol=1e-8)


def test_broadcasting_chunking_and_bad_input():
    m = np.linspace(-50, 50, 9000).reshape(3, 3000)
    s = np.array([[0.5], [5.0], [30.0]])
    out = log_gaussian_expectation("sigmoid", m, s)
    assert out.shape == (3, 3000) and np.all(np.isfinite(out))
    assert np.all(np.diff(out, axis=1) > 0)  # increasing in the mean
    with pytest.raises(ValueError, match="kind"):
        log_gaussian_expectation("tanh", 0.0, 1.0)
    with pytest.raises(ValueError, match="std"):
        log_gaussian_expectation("sigmoid", 0.0, -1.0)
    with pytest.raises(ValueError, match="mean"):
        log_gaussian_expectation("sigmoid", np.nan, 1.0)


TYPICAL = [(float(m), float(s)) for m, s in zip(np.random.default_rng(7).uniform(-30, 30, 24),
                                                 np.random.default_rng(8).uniform(0, 10, 24),
                                                 strict=True)]


@pytest.mark.parametrize("kind", sorted(INTEGRANDS))
def test_typical_range_to_1e_14_relative(kind):
    """The range the population engine feeds (u-means within +-30, spreads Delta_q <= 10):
    relative error of E[f] below 2e-14 against scipy.integrate.quad (3.6e-15 seen)."""
    m, s = np.array(TYPICAL).T
    got = log_gaussian_expectation(kind, m, s)
    ref = np.array([reference_log_expectation(kind, mi, si) for mi, si in TYPICAL])
    assert np.max(np.abs(got - ref)) <= 2e-14


@pytest.mark.parametrize("mutation", ["no kink grid", "8 nodes", "one uniform panel",
                                      "narrow interval"])
def test_the_accuracy_checks_catch_a_coarser_rule(monkeypatch, mutation):
    """Mutation check: each plausible coarsening of the rule fails the checks above."""
    from forgetlab import quadrature
    if mutation == "no kink grid":
        monkeypatch.setattr(quadrature, "_KINK_OFFSETS", np.array([]))
    elif mutation == "8 nodes":
        nodes, weights = np.polynomial.legendre.leggauss(8)
        monkeypatch.setattr(quadrature, "_NODES", nodes)
        monkeypatch.setattr(quadrature, "_WEIGHTS", weights)
    elif mutation == "one uniform panel":
        monkeypatch.setattr(quadrature, "_N_UNIFORM", 1)
    else:
        monkeypatch.setattr(quadrature, "_DROP", 12.0)
    with pytest.raises(AssertionError):
        for kind in sorted(INTEGRANDS):
            test_log_expectation_matches_adaptive_quadrature(kind)
            test_typical_range_to_1e_14_relative(kind)


@pytest.mark.parametrize("kind", sorted(INTEGRANDS))
def test_a_row_does_not_depend_on_its_batch(kind):
    """Same inputs, same bits, whatever else shares the call (sweeps chunk configurations, and
    the population engine stacks several expectations into one call). The rows differ in
    their number of halvings for the mode (s), of panels (m near or far from the kink), and
    include a point mass and an infinite mean."""
    m = np.array([0.3, -2.0, 7.5, 40.0, 1.0, -25.0, 0.0, 2.0, np.inf])
    s = np.array([0.5, 3.0, 12.0, 200.0, 0.01, 9.0, 1e-5, 0.0, 1.0])
    together = log_gaussian_expectation(kind, m, s)
    alone = np.array([log_gaussian_expectation(kind, m[i:i + 1], s[i:i + 1])[0]
                      for i in range(len(m))])
    np.testing.assert_array_equal(together, alone)
    pairs = log_gaussian_expectation(kind, np.stack([m, -m]), s)  # as the engine stacks them
    np.testing.assert_array_equal(pairs[0], together)
