"""Rewards on the mixture's output space against independent computations.

- the target log-density: scipy's multivariate normal densities, mixed by hand;
- the verifiable reward: Mahalanobis distances with ``np.linalg.solve`` on fixed points, and its
  mean under p* against the chi-square closed form P(D(x, c) <= r) for x ~ N(m, Sigma), which is
  the non-central chi-square cdf F(r^2; d, D(m, c)^2) (central when m = c);
- the reward selection: every kind, the checks on a user function, and a method's knobs.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from forgetlab.methods import make_method
from forgetlab.methods.base import Problem
from forgetlab.methods.rewards import (
    REWARD_KINDS,
    make_reward,
    reward_of,
    target_log_density,
    verifiable,
)
from forgetlab.mixture import TwoModeMixture

COV = np.array([[1.0, 0.6], [0.6, 0.9]])
A, B = np.array([0.0, 0.0]), np.array([2.5, 1.0])


def _problem(alpha: float = 0.35) -> Problem:
    target = TwoModeMixture(np.full((1, 1), alpha), A, B, COV)
    return Problem(target, TwoModeMixture(np.full((1, 1), 0.5), A, A, COV))


def _mahalanobis(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    diff = x - c
    return np.sqrt(np.sum(diff * np.linalg.solve(COV, diff[..., None])[..., 0], axis=-1))


def test_target_log_density_matches_scipy() -> None:
    x = np.random.default_rng(0).normal(size=(1, 1, 9, 2)) * 3
    ref = logsumexp([np.log(0.35) + stats.multivariate_normal(A, COV).logpdf(x),
                     np.log(0.65) + stats.multivariate_normal(B, COV).logpdf(x)], axis=0)
    np.testing.assert_allclose(target_log_density(_problem(), x), ref.reshape(1, 1, 9), rtol=1e-12)
    assert make_reward("target") is target_log_density


@pytest.mark.parametrize("credit_old", [False, True])
def test_verifiable_reward_on_fixed_points(credit_old: bool) -> None:
    x = np.random.default_rng(1).normal(size=(1, 1, 200, 2)) * 2 + 1
    radius = 1.1
    hit = _mahalanobis(x, B) <= radius
    if credit_old:
        hit |= _mahalanobis(x, A) <= radius
    got = verifiable(_problem(), x, radius, credit_old)
    np.testing.assert_array_equal(got, hit.astype(float))
    assert 0 < got.sum() < got.size  # both outcomes occur among the points
    np.testing.assert_array_equal(make_reward("verifiable", radius, credit_old)(_problem(), x), got)


def test_verifiable_reward_counts_the_boundary_and_takes_a_radius_per_configuration() -> None:
    """d = 1, Sigma = 1: D(x, b) = |x - b| exactly; radius ``[C, 1]`` broadcast over seeds."""
    target = TwoModeMixture(np.full((2, 1), 0.5), 0.0, 3.0)
    problem = Problem(target, target)
    x = np.broadcast_to(np.array([3.0, 4.0, 4.5, 2.0, 6.0])[:, None], (2, 3, 5, 1))
    got = verifiable(problem, x, np.array([[1.0], [1.5]]))
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got[0], np.broadcast_to([1, 1, 0, 1, 0], (3, 5)))
    np.testing.assert_array_equal(got[1], np.broadcast_to([1, 1, 1, 1, 0], (3, 5)))


@pytest.mark.parametrize("credit_old", [False, True])
def test_mean_verifiable_reward_under_the_target_matches_chi_square(credit_old: bool) -> None:
    """E_{p*}[r] = (1 - alpha) F(r^2; 2) + alpha F(r^2; 2, D^2) for the new ball, plus the same
    with the roles exchanged for the old ball (disjoint balls: r < D / 2)."""
    problem, radius, n = _problem(), 1.0, 400_000
    sep2 = float(_mahalanobis(A, B)) ** 2
    assert radius < np.sqrt(sep2) / 2
    x = problem.target.sample(n, np.random.default_rng(2))
    r = verifiable(problem, x, radius, credit_old)
    central, shifted = stats.chi2.cdf(radius**2, 2), stats.ncx2.cdf(radius**2, 2, sep2)
    exact = 0.65 * central + 0.35 * shifted
    if credit_old:
        exact += 0.35 * central + 0.65 * shifted
    se = np.sqrt(exact * (1 - exact) / n)
    assert abs(r.mean() - exact) < 4 * se


def test_callable_reward_is_broadcast_and_checked() -> None:
    x = np.random.default_rng(3).normal(size=(1, 2, 4, 2))
    fn = make_reward("callable", fn=lambda x: x[..., 0] - 2 * x[..., 1])
    np.testing.assert_allclose(fn(_problem(), x), x[..., 0] - 2 * x[..., 1], rtol=0)
    constant = make_reward("callable", fn=lambda x: np.array([[[0.5]]]))(_problem(), x)
    np.testing.assert_array_equal(constant, np.full((1, 2, 4), 0.5))
    with pytest.raises(ValueError, match="non-finite"):
        make_reward("callable", fn=lambda x: np.full(x.shape[:-1], np.nan))(_problem(), x)
    with pytest.raises(ValueError, match="reward_fn must be a callable"):
        make_reward("callable")
    with pytest.raises(ValueError, match="reward must be one of target, verifiable"):
        make_reward("likelihood")
    assert set(REWARD_KINDS) == {"target", "verifiable", "callable"}


def test_reward_of_reads_the_method_knobs() -> None:
    x = np.random.default_rng(4).normal(size=(1, 1, 300, 2)) * 2 + 1
    method = make_method("rl", reward="verifiable", radius=0.8, credit_old=True)
    hit = (_mahalanobis(x, B) <= 0.8) | (_mahalanobis(x, A) <= 0.8)
    np.testing.assert_array_equal(reward_of(method)(_problem(), x), hit.astype(float))
    assert reward_of(make_method("rl")) is target_log_density
