"""C2 predictions against independent references.

- rho and the weight identity: adaptive quadrature (scipy.integrate.quad) of the defining
  integrals in d = 1, and the weight component of the engine's forward-KL gradient;
- the small-weight expansion rho - beta = -c1 beta^2 + (c1 + c2) beta^3 + ...: quadrature of
  beta (1 - beta) E[(R - 1) / (1 + beta (R - 1))] (no cancellation);
- the decay laws: the exact population iteration against the closed-form asymptotes, with
  tolerances set by the size of the first neglected term.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.integrate import solve_ivp
from scipy.special import expit, logit
from scipy.stats import norm

from forgetlab.dynamics import weight_trajectory
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import forward_kl_gradient
from forgetlab.theory import forward_kl


def _quad(f, lo: float, hi: float, points=()) -> float:
    """Adaptive quadrature split at ``points`` (relative tolerance 1e-12)."""
    cuts = sorted({lo, hi, *[p for p in points if lo < p < hi]})
    return sum(integrate.quad(f, u, v, epsabs=0.0, epsrel=1e-12, limit=500)[0]
               for u, v in zip(cuts[:-1], cuts[1:], strict=False))


def _rho_quad(beta: float, a: float, b: float) -> float:
    """E_{N(b, 1)}[r_o(x)] for q = beta N(a, 1) + (1 - beta) N(b, 1), by quadrature in x."""
    d = b - a
    lam = np.log(beta) - np.log1p(-beta)

    def f(x):
        return expit(lam - d * (x - 0.5 * (a + b))) * norm.pdf(x, b)

    centre = 0.5 * (a + b) + lam / d
    return _quad(f, b - 40.0, b + 40.0, points=(centre, b))


@pytest.mark.parametrize("delta", [0.05, 1.0, 3.0, 8.0])
@pytest.mark.parametrize("beta", [1e-6, 0.01, 0.5, 0.99])
def test_rho_against_quadrature(delta: float, beta: float) -> None:
    learner = TwoModeMixture(beta, 0.0, delta, 1.0)
    ref = _rho_quad(beta, 0.0, delta)
    assert forward_kl.rho(learner) == pytest.approx(ref, rel=1e-8, abs=1e-300)


def test_weight_identity_against_quadrature_and_engine() -> None:
    """d/dbeta E_{p_new}[log q] = E[(phi_o - phi_n)/q] = (rho - beta)/(beta (1 - beta))."""
    betas = np.array([0.02, 0.3, 0.7])
    a, b = -0.4, 1.1
    learner = TwoModeMixture(betas, a, b, 1.0)
    raw = forward_kl.weight_gradient(learner)
    for k, beta in enumerate(betas):
        def f(x, beta=beta):
            po, pn = norm.pdf(x, a), norm.pdf(x, b)
            return (po - pn) / (beta * po + (1 - beta) * pn) * pn
        assert raw[k] == pytest.approx(_quad(f, b - 15, b + 15, (a, b)), rel=1e-9)
    engine = -forward_kl_gradient(learner, TwoModeMixture(0.0, b, b, 1.0)).weight_old
    np.testing.assert_allclose(raw, engine, rtol=1e-10)
    lg = forward_kl.weight_gradient(learner, coordinate="logit")
    np.testing.assert_allclose(lg, betas * (1 - betas) * raw, rtol=1e-12)
    np.testing.assert_allclose(forward_kl.em_map(learner), lg + betas, rtol=1e-12)


def test_fixed_point_zero_everywhere() -> None:
    """rho(beta) < beta on (0, 1) for m_n = b, across separations and dimensions."""
    betas = np.geomspace(1e-6, 1 - 1e-6, 40)
    for delta in [0.05, 0.5, 2.0, 6.0, 20.0]:
        cov = np.array([[2.0, 0.3], [0.3, 0.5]])
        b = delta * np.linalg.cholesky(cov)[:, 0]
        learner = TwoModeMixture(betas, np.zeros(2), b, cov)
        r = forward_kl.rho(learner)
        assert np.all(r < betas) and np.all(r > 0)
        assert np.all(np.isfinite(forward_kl.weight_gradient(learner)))


@pytest.mark.parametrize("delta", [0.5, 1.0])
def test_small_weight_expansion(delta: float) -> None:
    """(rho - beta) / beta^2 -> -c1 + (c1 + c2) beta, checked against quadrature of f."""
    log_c1, log_c2 = forward_kl.decay_constants(delta)
    c1, c2 = np.exp(log_c1), np.exp(log_c2)
    assert c1 == pytest.approx(np.expm1(delta**2), rel=1e-14)
    x = np.exp(delta**2)
    # c2 = E[(R - 1)^3] = E[R^3] - 3 E[R^2] + 2 with E[R^k] = e^{k(k-1) Delta^2 / 2}
    assert c2 == pytest.approx(np.exp(3 * delta**2) - 3 * x + 2, rel=1e-12)
    for beta in [1e-3, 1e-4]:
        def f(u, beta=beta):
            ratio_m1 = np.expm1(delta * u - 0.5 * delta**2)
            return ratio_m1 / (1 + beta * ratio_m1) * norm.pdf(u)
        diff = beta * (1 - beta) * _quad(f, -40, 40 + delta, (0.0, delta))
        engine = forward_kl.weight_gradient(TwoModeMixture(beta, delta, 0.0, 1.0),
                                            coordinate="logit")
        assert engine == pytest.approx(diff, rel=1e-7)
        second = -c1 * beta**2 + (c1 + c2) * beta**3
        # The next term is O(beta^4 E[(R - 1)^4]); E[(R-1)^4] <= e^{6 Delta^2} + 6 e^{Delta^2}.
        assert abs(diff - second) <= 2 * beta**4 * (np.exp(6 * delta**2) + 6 * x)


def test_old_mean_gradient_is_second_order() -> None:
    """grad_{m_o} E_{p_new}[-log q] = -beta^2 e^{Delta^2} Sigma^{-1} (b - a) (1 + O(beta)):
    E_{p_new}[r_o Sigma^{-1}(x - a)] has no first-order term because E_{phi_a}[x - a] = 0."""
    cov = np.array([[1.0, 0.2], [0.2, 0.5]])
    a, b = np.array([0.3, 0.0]), np.array([1.0, 0.4])
    delta2 = float((b - a) @ np.linalg.solve(cov, b - a))
    for beta in [1e-5, 1e-7]:
        q = TwoModeMixture(beta, a, b, cov)
        grad = forward_kl_gradient(q, TwoModeMixture(0.0, b, b, cov)).mean_old
        lead = -beta**2 * np.exp(delta2) * np.linalg.solve(cov, b - a)
        np.testing.assert_allclose(grad, lead, rtol=20 * beta * np.exp(2 * delta2))


def test_logit_gd_small_weight_law() -> None:
    """Logit GD in the asymptotic regime: y = beta^{-2} follows dy/dtau = 2 c1 - 2 c1 (x^2 + x)
    y^{-1/2} (tau = s t). The exact iteration matches this ODE (solved independently) far
    better than the leading law y0 + 2 c1 tau, so the correction term is real."""
    deltas = np.array([0.5, 1.0])
    s, steps, beta0 = 50.0, 300, 0.005
    path = weight_trajectory(
        TwoModeMixture(beta0, np.zeros((2, 1)), deltas[:, None], 1.0), steps, s, "gd")
    assert np.all(np.diff(path, axis=0) < 0)
    c1, x = np.expm1(deltas**2), np.exp(deltas**2)
    for i in range(2):
        sol = solve_ivp(lambda _, y, i=i: 2 * c1[i] * (1 - (x[i] ** 2 + x[i]) / np.sqrt(y)),
                        (0.0, s * steps), [beta0**-2], rtol=1e-11, atol=1e-8)
        ode = sol.y[0, -1] ** -0.5
        lead = (beta0**-2 + 2 * c1[i] * s * steps) ** -0.5
        assert abs(path[-1, i] / ode - 1) < 0.25 * abs(path[-1, i] / lead - 1)


@pytest.mark.slow
def test_logit_gd_asymptote_long_run() -> None:
    """beta_t (2 s c1 t)^{1/2} -> 1 + (x^2 + x)/sqrt(2 s c1 t) from beta0 = 0.5 (20000 steps)."""
    deltas = np.array([0.5, 1.0])
    steps = 20_000
    path = weight_trajectory(
        TwoModeMixture(0.5, np.zeros((2, 1)), deltas[:, None], 1.0), steps, 1.0, "gd")
    lead = forward_kl.asymptotic_weight(steps, deltas, 1.0, "gd")
    corr = forward_kl.asymptotic_weight(steps, deltas, 1.0, "gd", corrected=True)
    first = corr / lead - 1.0
    assert np.all(np.abs(path[-1] / lead - 1.0 - first) < 0.25 * first)


def test_em_asymptote() -> None:
    """EM: beta_t c1 t -> 1; next order ((c1 + c2 - c1^2)/c1^2) log t / t."""
    delta, steps = 1.0, 600
    path = weight_trajectory(TwoModeMixture(0.5, 0.0, delta, 1.0), steps, method="em")
    c1, c2 = np.exp(forward_kl.decay_constants(delta))
    k = (c1 + c2 - c1**2) / c1**2
    ratio = path[-1] / forward_kl.asymptotic_weight(steps, delta, method="em")
    assert 1.0 < ratio < 1.0 + 2.0 * k * np.log(steps) / steps


def test_separated_transient_law() -> None:
    """Delta = 10: rho ~ 0, so logit GD follows 1/beta - logit beta = const + s t (Euler error
    O(s) relative), and beta_t ~ 1 / (s t)."""
    s, steps = 0.05, 400
    path = weight_trajectory(TwoModeMixture(0.5, 0.0, 10.0, 1.0), steps, s)
    law = forward_kl.separated_weight(np.arange(steps + 1), 0.5, s)
    np.testing.assert_allclose(path, law, rtol=s)
    beta = forward_kl.separated_weight([0.0, 1e3, 1e8], 0.5, 1.0)
    assert beta[0] == pytest.approx(0.5, rel=1e-14)
    implicit = 1 / beta - logit(beta)
    np.testing.assert_allclose(implicit, 2.0 + np.array([0.0, 1e3, 1e8]), rtol=1e-13)
    assert beta[-1] * 1e8 == pytest.approx(1.0, rel=1e-6)


def test_thresholds_and_validation() -> None:
    trans, asym = forward_kl.regime_thresholds([2.0, 6.0])
    np.testing.assert_allclose(trans, np.exp(-np.array([2.0, 18.0])))
    np.testing.assert_allclose(asym, np.exp(-np.array([6.0, 54.0])))
    assert np.isfinite(forward_kl.asymptotic_weight(10.0, 40.0, corrected=True))
    with pytest.raises(ValueError, match="separation"):
        forward_kl.decay_constants(0.0)
    with pytest.raises(ValueError, match="method"):
        weight_trajectory(TwoModeMixture(0.5, 0.0, 1.0), 3, method="newton")
    with pytest.raises(ValueError, match="beta0"):
        forward_kl.separated_weight(1.0, 1.0)
