"""Gaussian closed forms against adaptive quadrature and Monte Carlo; validation messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from forgetlab.gaussian import (
    Factorised,
    bhattacharyya_coefficient,
    bhattacharyya_distance,
    bhattacharyya_distance_general,
    gaussian_chi2,
    gaussian_kl,
    hard_misassignment,
    hellinger_squared,
    mahalanobis,
)

COV2 = np.array([[1.5, 0.7], [0.7, 0.8]])


def _quad(fun, lo=-40.0, hi=40.0, points=None):
    return integrate.quad(fun, lo, hi, epsabs=0.0, epsrel=1e-12, limit=500, points=points)[0]


def _logpdf(mean, cov):
    """log N(x; mean, cov) for one point x (a fast scalar-call version for dblquad)."""
    prec = np.linalg.inv(cov)
    const = -0.5 * (len(mean) * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])

    def f(x):
        diff = x - mean
        return const - 0.5 * diff @ prec @ diff
    return f


def _dblquad(fun, box=(-14.0, 16.0, -13.0, 15.0)):
    x0, x1, y0, y1 = box
    return integrate.dblquad(lambda y, x: fun(np.array([x, y])), x0, x1, y0, y1,
                             epsabs=1e-14, epsrel=1e-11)[0]


@pytest.mark.parametrize("u,v,var", [(0.0, 0.05, 1.0), (0.3, 2.0, 2.5), (-1.0, 4.0, 0.7),
                                     (0.0, 12.0, 1.0)])
def test_closed_forms_d1_against_quadrature(u, v, var):
    sd = np.sqrt(var)
    pu, pv = norm(u, sd), norm(v, sd)
    pts = [u, v]
    kl = _quad(lambda x: pu.pdf(x) * (pu.logpdf(x) - pv.logpdf(x)), points=pts)
    bc = _quad(lambda x: np.exp(0.5 * (pu.logpdf(x) + pv.logpdf(x))), points=pts)
    assert np.isclose(mahalanobis(u, v, var), abs(u - v) / sd, rtol=1e-14)
    assert np.isclose(gaussian_kl(u, v, var), kl, rtol=1e-9, atol=1e-14)
    assert np.isclose(bhattacharyya_coefficient(u, v, var), bc, rtol=1e-9)
    assert np.isclose(bhattacharyya_distance(u, v, var), -np.log(bc), rtol=1e-9, atol=1e-14)
    assert np.isclose(hellinger_squared(u, v, var), 1.0 - bc, rtol=1e-8, atol=1e-14)
    if abs(u - v) / sd < 3:  # chi^2 = integral pu^2 / pv - 1 (finite, heavy-tailed integrand)
        chi2 = _quad(lambda x: np.exp(2 * pu.logpdf(x) - pv.logpdf(x)), -60, 60, points=pts) - 1
        assert np.isclose(gaussian_chi2(u, v, var), chi2, rtol=1e-9, atol=1e-14)


def test_closed_forms_d2_nondiagonal_against_dblquad():
    u, v = np.array([0.2, -0.4]), np.array([1.1, 0.9])
    lu, lv = _logpdf(u, COV2), _logpdf(v, COV2)
    assert np.isclose(lu(v), multivariate_normal(u, COV2).logpdf(v), rtol=1e-13)
    bc = _dblquad(lambda x: np.exp(0.5 * (lu(x) + lv(x))))
    kl = _dblquad(lambda x: np.exp(lu(x)) * (lu(x) - lv(x)))
    assert np.isclose(bhattacharyya_coefficient(u, v, COV2), bc, rtol=1e-9)
    assert np.isclose(gaussian_kl(u, v, COV2), kl, rtol=1e-9)
    # general (unequal covariances) form
    cov_b = np.array([[0.6, -0.2], [-0.2, 1.9]])
    lb = _logpdf(v, cov_b)
    bc_general = _dblquad(lambda x: np.exp(0.5 * (lu(x) + lb(x))))
    assert np.isclose(bhattacharyya_distance_general(u, COV2, v, cov_b), -np.log(bc_general),
                      rtol=1e-9)
    # with equal covariances it reduces to D^2 / 8
    assert np.isclose(bhattacharyya_distance_general(u, COV2, v, COV2),
                      bhattacharyya_distance(u, v, COV2), rtol=1e-13)


def test_general_bhattacharyya_d1_against_quadrature():
    p1, p2 = norm(0.3, np.sqrt(0.5)), norm(1.7, np.sqrt(3.0))
    bc = _quad(lambda x: np.exp(0.5 * (p1.logpdf(x) + p2.logpdf(x))), points=[0.3, 1.7])
    assert np.isclose(bhattacharyya_distance_general(0.3, 0.5, 1.7, 3.0), -np.log(bc), rtol=1e-9)


@pytest.mark.parametrize("w_from,dist", [(0.5, 1.0), (0.9, 2.0), (0.1, 3.0), (1e-6, 8.0),
                                         (1 - 1e-6, 0.3)])
def test_hard_misassignment_against_quadrature_d1(w_from, dist):
    """P_{x ~ N(0,1)}[w_to N(x; D, 1) > w_from N(x; 0, 1)]: the half-line x > x0."""
    w_to = 1.0 - w_from
    x0 = dist / 2 - np.log(w_to / w_from) / dist
    ref = integrate.quad(norm.pdf, x0, np.inf, epsabs=0, epsrel=1e-13)[0]
    assert np.isclose(hard_misassignment(w_from, w_to, dist), ref, rtol=1e-9, atol=1e-300)
    assert np.isclose(np.exp(hard_misassignment(w_from, w_to, dist, log=True)), ref, rtol=1e-9)


def test_hard_misassignment_monte_carlo_d3_and_zero_distance():
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 1.5]])
    m_o, m_n, w_o = np.zeros(3), np.array([1.0, -0.5, 0.8]), 0.35
    x = rng.multivariate_normal(m_o, cov, size=400_000)
    hit = (np.log1p(-w_o) + multivariate_normal(m_n, cov).logpdf(x)
           > np.log(w_o) + multivariate_normal(m_o, cov).logpdf(x))
    se = hit.std() / np.sqrt(hit.size)
    exact = hard_misassignment(w_o, 1 - w_o, mahalanobis(m_o, m_n, cov))
    assert abs(exact - hit.mean()) < 4 * se
    assert hard_misassignment(0.3, 0.7, 0.0) == 1.0 and hard_misassignment(0.7, 0.3, 0.0) == 0.0


def test_kl_monte_carlo_d5():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    cov = a @ a.T + np.eye(5)
    u, v = rng.normal(size=5), rng.normal(size=5)
    x = rng.multivariate_normal(u, cov, size=200_000)
    vals = multivariate_normal(u, cov).logpdf(x) - multivariate_normal(v, cov).logpdf(x)
    assert abs(gaussian_kl(u, v, cov) - vals.mean()) < 4 * vals.std() / np.sqrt(vals.size)


def test_batched_shapes_and_scalar_diagonal_full_covariances():
    u = np.zeros((4, 3))
    v = np.arange(12.0).reshape(4, 3)
    full = mahalanobis(u, v, np.diag([1.0, 2.0, 4.0]))
    assert full.shape == (4,)
    assert np.allclose(mahalanobis(u, v, [1.0, 2.0, 4.0]), full, rtol=1e-14)
    assert np.allclose(mahalanobis(u, v, 2.0), np.linalg.norm(v, axis=1) / np.sqrt(2.0))


@pytest.mark.parametrize("cov,match", [
    (np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), "finite"),
    (np.eye(3), r"expected \(\.\.\., 2, 2\)"),
    (np.array([1.0, -1.0]), "diagonal entries"),
    (np.array([1.0, 1.0, 1.0]), "diagonal has length"),
    (-2.0, "variance"),
])
def test_covariance_validation_names_the_field(cov, match):
    with pytest.raises(ValueError, match=match) as err:
        mahalanobis([0.0, 0.0], [1.0, 1.0], cov)
    assert "cov" in str(err.value)


def test_mean_and_weight_validation():
    with pytest.raises(ValueError, match="mismatched dimensions"):
        mahalanobis([0.0, 0.0], [1.0, 1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="u must be finite"):
        mahalanobis([np.inf, 0.0], [1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match=r"weight_from must lie in \(0, 1\]"):
        hard_misassignment(0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="separation"):
        hard_misassignment(0.5, 0.5, -1.0)


# -- properties ------------------------------------------------------------------------------
_coord = st.floats(-20, 20, allow_nan=False)


@st.composite
def _affine_case(draw):
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.3 * np.eye(d)
    u = np.array([draw(_coord) for _ in range(d)])
    v = np.array([draw(_coord) for _ in range(d)])
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    transform = q @ np.diag(rng.uniform(0.3, 3.0, size=d))
    shift = rng.normal(size=d) * 10
    return u, v, cov, transform, shift


@settings(max_examples=60, deadline=None)
@given(_affine_case())
def test_bc_in_unit_interval_and_affine_invariance(case):
    u, v, cov, a_mat, c = case
    bc = bhattacharyya_coefficient(u, v, cov)
    assert 0.0 < bc <= 1.0 or (bc == 0.0 and mahalanobis(u, v, cov) > 50)
    cov2 = a_mat @ cov @ a_mat.T
    d1, d2 = mahalanobis(u, v, cov), mahalanobis(a_mat @ u + c, a_mat @ v + c, cov2)
    assert np.isclose(d1, d2, rtol=1e-9, atol=1e-9)
    assert np.isclose(bc, bhattacharyya_coefficient(a_mat @ u + c, a_mat @ v + c, cov2),
                      rtol=1e-8, atol=1e-300)
    assert np.isclose(mahalanobis(u, v, cov), mahalanobis(v, u, cov), rtol=1e-14)


def test_factorised_distance_whitening_and_normaliser_against_numpy_solve() -> None:
    """D(u, v) = ||L^{-1}(u - v)|| with a batch of covariances [2, 1, d, d] broadcast against
    means [2, 4, d] and [4, d], against np.linalg.solve on each pair; whiten/colour are inverse;
    the normaliser is scipy's log-density at the mean."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 3, 3))
    covs = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(3)
    factor = Factorised(covs[:, None], 3)
    u, v = rng.normal(size=(2, 4, 3)), rng.normal(size=(4, 3))
    got = factor.distance(u, v)
    assert got.shape == (2, 4)
    for i in range(2):
        chol = np.linalg.cholesky(covs[i])
        for j in range(4):
            want = np.linalg.norm(np.linalg.solve(chol, u[i, j] - v[j]))
            assert got[i, j] == pytest.approx(want, rel=1e-13)
    x = rng.normal(size=(2, 1, 5, 3))
    np.testing.assert_allclose(factor.colour(factor.whiten(x)), x, rtol=1e-12, atol=1e-14)
    for i in range(2):
        want = multivariate_normal(np.zeros(3), covs[i]).logpdf(np.zeros(3))
        assert factor.log_normaliser()[i, 0] == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("shape", [(1,), (4, 1), (2, 3, 1)])
def test_whiten_and_colour_keep_the_shape_of_d1_inputs(shape):
    """d = 1 takes a broadcast product instead of a matrix product: same shapes, same numbers
    as solving with the standard deviation, for a shared and a batched covariance."""
    from forgetlab.gaussian import Factorised

    x = np.linspace(-2.0, 3.0, int(np.prod(shape))).reshape(shape)
    shared = Factorised(2.25, 1)
    assert shared.whiten(x).shape == shape and shared.colour(x).shape == shape
    np.testing.assert_allclose(shared.whiten(x), x / 1.5, rtol=1e-15)
    np.testing.assert_allclose(shared.colour(shared.whiten(x)), x, rtol=1e-15)
    if len(shape) >= 2:
        batched = Factorised(np.array([[[4.0]], [[0.25]]]).reshape(2, *([1] * (len(shape) - 2)),
                                                                  1, 1), 1)
        z = batched.whiten(np.broadcast_to(x, (2, *shape)))
        np.testing.assert_allclose(z[0], x / 2.0, rtol=1e-15)
        np.testing.assert_allclose(z[1], x / 0.5, rtol=1e-15)
