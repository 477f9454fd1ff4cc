"""C5: Hessian of L_R at the optimum = Fisher information, spectrum and contraction factor.

- the Hessian by central finite differences of the engine's reverse-KL gradient;
- the separated-mode block-diagonal approximation, error within Delta^2 BC;
- the predicted contraction factor against the measured ratio ||theta_{t+1} - theta*|| /
  ||theta_t - theta*|| of exact population gradient descent started next to theta*
  (raw coordinates, and the logit / Sigma-preconditioned flow for ``natural``).
"""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab.dynamics import reverse_kl_flow
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import reverse_kl_gradient
from forgetlab.theory import geometry

COV = np.array([[1.0, 0.3], [0.3, 2.0]])


def _flat(p) -> np.ndarray:
    return np.concatenate([np.atleast_1d(p.weight_old), p.mean_old, p.mean_new], axis=-1)


def _gradient(theta: np.ndarray, target: TwoModeMixture) -> np.ndarray:
    d = target.dim
    return _flat(reverse_kl_gradient(
        TwoModeMixture(theta[0], theta[1:d + 1], theta[d + 1:], target.cov), target))


@pytest.mark.parametrize(("dim", "delta"), [(1, 0.5), (2, 2.0), (2, 5.0)])
def test_hessian_is_fisher_by_finite_differences(dim: int, delta: float) -> None:
    cov = COV[:dim, :dim]
    b = delta * np.linalg.cholesky(cov)[:, 0]
    target = TwoModeMixture(0.3, np.zeros(dim), b, cov)
    theta = _flat(target.params)
    h = 1e-5
    steps = np.eye(theta.size) * h
    fd = np.stack([(_gradient(theta + e, target) - _gradient(theta - e, target)) / (2 * h)
                   for e in steps], axis=-1)
    geo = geometry.local_geometry(target, 0.1)
    np.testing.assert_allclose(geo.hessian, fd, atol=1e-8 * np.abs(fd).max())
    np.testing.assert_allclose(geo.eigenvalues, np.linalg.eigvalsh(0.5 * (fd + fd.T)),
                               rtol=1e-7)
    assert geo.condition_number == pytest.approx(geo.lambda_max / geo.lambda_min)


def test_separated_approximation() -> None:
    deltas = np.array([3.0, 6.0, 10.0])
    b = deltas[:, None] * np.linalg.cholesky(COV)[:, 0]
    target = TwoModeMixture(0.3, np.zeros(2), b, COV)
    raw = geometry.local_geometry(target, 0.1)
    sep = geometry.separated_fisher(0.3, COV)
    err = np.abs(raw.hessian - sep).max(axis=(-1, -2))
    assert np.all(err <= deltas**2 * np.exp(-deltas**2 / 8))
    nat = geometry.local_geometry(target, 0.1, "natural")
    sep_nat = np.linalg.eigvalsh(geometry.separated_fisher(0.3, COV, "natural"))
    np.testing.assert_allclose(nat.eigenvalues[-1], sep_nat, atol=1e-4)
    np.testing.assert_allclose(sep_nat, [0.21, 0.3, 0.3, 0.7, 0.7])


def test_raw_contraction_matches_gradient_descent() -> None:
    target = TwoModeMixture(0.3, np.zeros(2), [4.0, 0.0], np.eye(2))
    s = 0.3
    predicted = float(geometry.local_geometry(target, s).contraction)
    theta_star = _flat(target.params)
    theta = theta_star + 1e-5 * np.random.default_rng(3).standard_normal(theta_star.size)
    norms = []
    for _ in range(150):
        theta = theta - s * _gradient(theta, target)
        norms.append(np.linalg.norm(theta - theta_star))
    measured = norms[-1] / norms[-2]
    assert measured == pytest.approx(predicted, abs=1e-4)


def test_natural_contraction_matches_preconditioned_flow() -> None:
    target = TwoModeMixture(0.3, np.zeros(2), [3.0, 1.0], COV)
    s = 1.0
    predicted = float(geometry.local_geometry(target, s, "natural").contraction)
    rng = np.random.default_rng(5)
    start = TwoModeMixture(0.3 + 1e-5, rng.normal(0, 1e-5, 2), target.mean_new + 1e-5, COV)
    path = reverse_kl_flow(start, target, s, 100)
    xi = np.concatenate([np.log(path.weight_old / (1 - path.weight_old))[:, None],
                         path.mean_old, path.mean_new], axis=-1)
    xi_star = np.concatenate([[np.log(0.3 / 0.7)], target.mean_old, target.mean_new])
    norms = np.linalg.norm(xi - xi_star, axis=-1)
    assert norms[-1] / norms[-2] == pytest.approx(predicted, abs=1e-4)


def test_validation() -> None:
    target = TwoModeMixture(0.3, 0.0, 2.0)
    with pytest.raises(ValueError, match="parameterisation"):
        geometry.local_geometry(target, 0.1, "euclid")
    with pytest.raises(ValueError, match="step_size"):
        geometry.local_geometry(target, -1.0)
    with pytest.raises(ValueError, match="cov"):
        geometry.separated_fisher(0.3, 1.0)
