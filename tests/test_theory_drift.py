"""C4: the drift along the exact reverse-KL flow obeys the overlap-gated bounds.

- the nested bounds exact <= Bhattacharyya <= closed form, and sup drift <= exact bound, on
  flows in d = 2 with an anisotropic covariance (the learner's new mean starts between the
  modes and beyond b);
- the exact bound's misassignments against adaptive quadrature in d = 1;
- the flow's update against a hand-written step of the engine's gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit
from scipy.stats import norm

from forgetlab.dynamics import reverse_kl_flow
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import reverse_kl_gradient
from forgetlab.theory import drift


def _drift(path: TwoModeMixture, a: np.ndarray) -> np.ndarray:
    return np.linalg.norm(path.whiten((path.mean_old - a)[..., None, :])[..., 0, :], axis=-1)


def test_bounds_hold_along_flows() -> None:
    cov = np.array([[1.0, 0.4], [0.4, 2.0]])
    deltas = np.array([1.5, 2.5, 3.5, 5.0, 7.0])
    chol = np.linalg.cholesky(cov)
    a = np.array([0.3, -0.2])
    b = a + deltas[:, None] * chol[:, 0]
    target = TwoModeMixture(0.3, a, b, cov)
    starts = np.stack([a + 0.5 * (b - a), a + 1.5 * (b - a)])  # [2, 5, d]
    learner = TwoModeMixture(np.array([[0.5], [0.2]]), a, starts, cov)
    path = reverse_kl_flow(learner, target, 0.5, 120)
    assert path.batch_shape == (121, 2, 5)
    bound = drift.drift_bound(path, target)
    sup = _drift(path, a).max(axis=0)
    assert np.all(sup <= bound.exact)
    assert np.all(bound.exact <= bound.bhattacharyya)
    assert np.all(bound.bhattacharyya <= bound.closed_form)
    assert np.all(bound.delta_min <= deltas + 1e-12)
    assert np.all(bound.delta_max >= deltas - 1e-12)
    # starting beyond b keeps the learner's separation >= Delta: Delta_min = Delta up to drift
    np.testing.assert_allclose(bound.delta_min[1], deltas, rtol=0.05)
    # the flow moves towards the target: no mass forgetting
    assert np.all(np.abs(path.weight_old[-1] - 0.3) < np.abs(path.weight_old[0] - 0.3))


def test_exact_bound_against_quadrature() -> None:
    """eps_q Delta_q + eps_* Delta at three trajectory points, d = 1, by quadrature."""
    alpha, a, b = 0.4, 0.0, 2.0
    betas = np.array([0.5, 0.3, 0.45])
    m_o = np.array([0.0, 0.1, -0.05])
    m_n = np.array([1.0, 2.5, 1.8])
    path = TwoModeMixture(betas, m_o[:, None], m_n[:, None], 1.0)
    got = drift.drift_bound(path, TwoModeMixture(alpha, a, b, 1.0)).exact
    vals = []
    for beta, mo, mn in zip(betas, m_o, m_n, strict=True):
        def r_n(x, beta=beta, mo=mo, mn=mn):
            return expit(np.log((1 - beta) / beta) + (mn - mo) * (x - 0.5 * (mo + mn)))

        def pi_n(x):
            return expit(np.log((1 - alpha) / alpha) + (b - a) * (x - 0.5 * (a + b)))

        eps_q = integrate.quad(lambda x, mo=mo, f=r_n: f(x) * norm.pdf(x, mo), mo - 30, mo + 30,
                               epsabs=0, epsrel=1e-12, limit=200)[0]
        eps_s = integrate.quad(lambda x, mo=mo: pi_n(x) * norm.pdf(x, mo), mo - 30, mo + 30,
                               epsabs=0, epsrel=1e-12, limit=200)[0]
        vals.append(eps_q * abs(mn - mo) + eps_s * (b - a))
    assert got == pytest.approx(max(vals), rel=1e-9)


def test_flow_step_matches_engine() -> None:
    cov = np.diag([1.0, 3.0])
    target = TwoModeMixture(0.3, np.zeros(2), [3.0, 1.0], cov)
    learner = TwoModeMixture(0.6, [0.1, 0.0], [1.0, 2.0], cov)
    path = reverse_kl_flow(learner, target, 0.3, 1)
    g = reverse_kl_gradient(learner, target)
    eta = np.log(0.6 / 0.4) - 0.3 * 0.6 * 0.4 * g.weight_old
    assert path.weight_old[1] == pytest.approx(expit(eta), rel=1e-14)
    np.testing.assert_allclose(path.mean_old[1], learner.mean_old - 0.3 * cov @ g.mean_old)
    np.testing.assert_allclose(path.mean_new[1], learner.mean_new - 0.3 * cov @ g.mean_new)
    with pytest.raises(ValueError, match="step_size"):
        reverse_kl_flow(learner, target, 1.5, 3)
    with pytest.raises(ValueError, match="time axis"):
        drift.drift_bound(learner, target)


@pytest.mark.slow
def test_drift_slope_beyond_b() -> None:
    """Start beyond b: log(sup drift) against Delta^2 has slope close to -1/8."""
    deltas = np.array([4.0, 5.0, 6.0, 7.0])
    a = np.zeros((4, 1))
    b = deltas[:, None]
    target = TwoModeMixture(0.5, a, b, 1.0)
    path = reverse_kl_flow(TwoModeMixture(0.5, a, 2.0 * b, 1.0), target, 0.5, 200)
    sup = _drift(path, a).max(axis=0)
    slope = np.polyfit(deltas**2, np.log(sup), 1)[0]
    assert -0.2 < slope < -0.1
