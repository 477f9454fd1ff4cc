"""Forgetting measures against independent references.

- distances: sqrt((u - v)^T Sigma^{-1} (u - v)) with ``np.linalg.solve`` (no Cholesky factor);
- overlaps: adaptive quadrature in d = 1 and a dense grid in d = 2 of min(p_k, q_k);
- misassignments and KLs of the snapshot: adaptive quadrature of their defining integrals in d = 1
  with scipy's normal density;
- the label swap exchanges the old-mode and new-mode measures;
- the summary table: a tiny example computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from forgetlab.metrics import (
    EXACT_FIELDS,
    GEOMETRY_FIELDS,
    drift,
    overlap_accuracy,
    snapshot,
    summary,
)
from forgetlab.mixture import TwoModeMixture

COV = np.array([[1.2, -0.5], [-0.5, 0.8]])


def _mahalanobis(u: np.ndarray, v: np.ndarray, cov: np.ndarray) -> np.ndarray:
    diff = u - v
    return np.sqrt(np.einsum("...i,...i->...", diff, np.linalg.solve(cov, diff[..., None])[..., 0]))


def _pair(seed: int = 0) -> tuple[TwoModeMixture, TwoModeMixture]:
    """A learner ``[2, 3]`` and a target ``[2, 1]`` in d = 2 with a non-diagonal covariance."""
    rng = np.random.default_rng(seed)
    target = TwoModeMixture(np.array([[0.3], [0.7]]), rng.normal(size=(2, 1, 2)),
                            rng.normal(size=(2, 1, 2)) + 3.0, COV)
    learner = TwoModeMixture(rng.uniform(0.1, 0.9, (2, 3)), rng.normal(size=(2, 3, 2)),
                             rng.normal(size=(2, 3, 2)) + 2.0, COV)
    return learner, target


def test_drift_separation_and_new_mode_error_are_mahalanobis_distances() -> None:
    learner, target = _pair()
    geo = snapshot(learner, target, exact=False)
    assert set(geo) == set(GEOMETRY_FIELDS)
    np.testing.assert_allclose(drift(learner, target),
                               _mahalanobis(learner.mean_old, target.mean_old, COV), rtol=1e-12)
    np.testing.assert_allclose(geo["drift"], drift(learner, target), rtol=0)
    np.testing.assert_allclose(geo["separation"],
                               _mahalanobis(learner.mean_old, learner.mean_new, COV), rtol=1e-12)
    np.testing.assert_allclose(geo["new_mode_error"],
                               _mahalanobis(learner.mean_new, target.mean_new, COV), rtol=1e-12)
    assert geo["drift"].shape == (2, 3)


@pytest.mark.parametrize("w_p,w_q,mu_q,sd", [(0.75, 0.6, -0.5, 1.0), (0.25, 0.4, 2.0, 0.7),
                                             (0.3, 0.3, 0.0, 1.3), (0.5, 0.01, 6.0, 1.0),
                                             (0.2, 0.9, 0.0, 1.0)])
def test_overlap_accuracy_matches_quadrature(w_p: float, w_q: float, mu_q: float,
                                             sd: float) -> None:
    """Closed-form Chen et al. overlap against adaptive quadrature in d = 1."""

    def f(x: float) -> float:
        return min(w_p * stats.norm.pdf(x, 0.0, sd), w_q * stats.norm.pdf(x, mu_q, sd))

    ref = integrate.quad(f, -15, 15, points=[0.0, mu_q], epsabs=1e-13, limit=200)[0] / w_p
    got = overlap_accuracy(np.array(w_p), np.array(w_q), np.array(abs(mu_q) / sd))
    assert abs(got - ref) < 1e-9


def test_snapshot_overlaps_match_a_dense_grid_in_two_dimensions() -> None:
    """acc_old = int min(alpha phi_a, beta phi_{m_o}) / alpha (likewise new) on a 2-d grid."""
    target = TwoModeMixture(0.4, [0.0, 0.0], [3.0, 1.0], COV)
    learner = TwoModeMixture(0.25, [0.8, -0.3], [2.0, 1.5], COV)
    grid = np.linspace(-8.0, 11.0, 1201)
    xy = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1)
    pdf = lambda m: stats.multivariate_normal(m, COV).pdf(xy)  # noqa: E731
    cell = (grid[1] - grid[0]) ** 2
    acc_old = np.sum(np.minimum(0.4 * pdf([0.0, 0.0]), 0.25 * pdf([0.8, -0.3]))) * cell / 0.4
    acc_new = np.sum(np.minimum(0.6 * pdf([3.0, 1.0]), 0.75 * pdf([2.0, 1.5]))) * cell / 0.6
    geo = snapshot(learner, target, exact=False)
    assert abs(float(geo["acc_old"]) - acc_old) < 1e-6
    assert abs(float(geo["acc_new"]) - acc_new) < 1e-6


def test_overlap_accuracy_of_coincident_means_is_the_weight_ratio() -> None:
    """D = 0: min(w_p, w_q) / w_p."""
    w_p, w_q = np.array([0.3, 0.6, 0.5]), np.array([0.6, 0.2, 0.5])
    np.testing.assert_allclose(overlap_accuracy(w_p, w_q, np.zeros(3)), [1.0, 1 / 3, 1.0],
                               rtol=1e-12)


def _quad(f, lo: float = -20.0, hi: float = 25.0) -> float:
    return integrate.quad(f, lo, hi, epsabs=1e-13, epsrel=1e-11, limit=400)[0]


@pytest.mark.parametrize("beta,m_o,m_n", [(0.3, 0.4, 2.2), (0.8, -0.6, 1.1)])
def test_snapshot_misassignments_and_kls_match_quadrature(beta: float, m_o: float,
                                                          m_n: float) -> None:
    """eps_q = E_{phi(m_o)}[r_n], rho_q = E_{phi(m_n)}[r_o], eps_* and rho_* with the target's
    responsibilities, kl_reverse = KL(q || p*), kl_forward = KL(p* || q) in d = 1, sd 0.9."""
    alpha, a, b, sd = 0.6, 0.0, 3.0, 0.9
    out = snapshot(TwoModeMixture(beta, m_o, m_n, sd**2), TwoModeMixture(alpha, a, b, sd**2))
    assert set(out) == {*GEOMETRY_FIELDS, *EXACT_FIELDS}
    phi = lambda x, m: stats.norm.pdf(x, m, sd)  # noqa: E731
    q = lambda x: beta * phi(x, m_o) + (1 - beta) * phi(x, m_n)  # noqa: E731
    p = lambda x: alpha * phi(x, a) + (1 - alpha) * phi(x, b)  # noqa: E731
    ref = {
        "eps_q": _quad(lambda x: phi(x, m_o) * (1 - beta) * phi(x, m_n) / q(x)),
        "rho_q": _quad(lambda x: phi(x, m_n) * beta * phi(x, m_o) / q(x)),
        "eps_star": _quad(lambda x: phi(x, m_o) * (1 - alpha) * phi(x, b) / p(x)),
        "rho_star": _quad(lambda x: phi(x, m_n) * alpha * phi(x, a) / p(x)),
        "kl_reverse": _quad(lambda x: q(x) * np.log(q(x) / p(x)), -12, 16),
        "kl_forward": _quad(lambda x: p(x) * np.log(p(x) / q(x)), -12, 16),
    }
    for name, value in ref.items():
        assert abs(float(out[name]) - value) < 1e-8, name


def test_label_swap_exchanges_the_old_and_new_measures() -> None:
    learner, target = _pair(3)
    out = snapshot(learner, target)
    swapped = snapshot(learner.swapped(), target.swapped())
    pairs = [("drift", "new_mode_error"), ("acc_old", "acc_new"), ("eps_q", "rho_q"),
             ("eps_star", "rho_star"), ("separation", "separation"),
             ("kl_reverse", "kl_reverse"), ("kl_forward", "kl_forward")]
    for one, other in pairs:
        np.testing.assert_allclose(swapped[one], out[other], rtol=1e-9, atol=1e-14,
                                   err_msg=one)


def test_summary_on_a_hand_example() -> None:
    """C = 2 configurations, S = 2 seeds, T = 2 recorded steps."""
    weight_old = np.array([[[0.5, 0.2], [0.5, 0.4]], [[0.6, 0.6], [0.6, 0.3]]])
    weight_min = np.array([[[0.5, 0.1], [0.5, 0.35]], [[0.6, 0.5], [0.6, 0.3]]])
    drift_path = np.array([[[0.0, 1.0], [0.0, 3.0]], [[0.0, 0.5], [0.0, 0.5]]])
    drift_sup = np.array([[[0.0, 1.5], [0.0, 3.0]], [[0.0, 0.9], [0.0, 0.7]]])
    beta0, alpha = np.array([0.5, 0.6]), np.array([0.25, 0.5])
    table = summary(weight_old, weight_min, drift_path, drift_sup, beta0, alpha)
    np.testing.assert_array_equal(table["config"], [0, 1])
    np.testing.assert_allclose(table["beta_final"], [0.3, 0.45], rtol=1e-12)
    np.testing.assert_allclose(table["beta_final_sd"], [0.1, 0.15], rtol=1e-12)
    np.testing.assert_allclose(table["beta_worst"], [0.1, 0.3], rtol=1e-12)
    np.testing.assert_allclose(table["mass_ratio_beta0"], [0.6, 0.75], rtol=1e-12)
    np.testing.assert_allclose(table["mass_ratio_alpha"], [1.2, 0.9], rtol=1e-12)
    np.testing.assert_allclose(table["drift_final"], [2.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(table["drift_worst"], [3.0, 0.9], rtol=1e-12)
