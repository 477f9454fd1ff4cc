"""Covariance factorisation caching (gaussian.Factorised / factorise) and the same-covariance
test: reuse only where the entries are unchanged, and the same numbers as factorising afresh."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab import gaussian, population
from forgetlab.gaussian import Factorised, factorise
from forgetlab.methods.base import SampleBatch
from forgetlab.mixture import TwoModeMixture

COV = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.5]])


def test_factorise_reuses_views_and_matches_a_fresh_factorisation() -> None:
    f = Factorised(COV, 3)
    np.testing.assert_array_equal(f.chol, np.linalg.cholesky(COV))  # independent: numpy
    np.testing.assert_allclose(f.chol @ f.chol_inv, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(f.precision, np.linalg.inv(COV), rtol=1e-13)
    view = np.broadcast_to(f.cov, (4, 2, 3, 3))
    g = factorise(view, 3)
    assert g.cov.shape == (4, 2, 3, 3) and g.same(f)
    assert np.shares_memory(g.chol, f.chol) and np.shares_memory(g.chol_inv, f.chol_inv)


def test_a_changed_source_array_is_factorised_again() -> None:
    src = COV.copy()
    first = gaussian.factorise(src, 3)
    assert gaussian.factorise(src, 3) is first
    src[0, 0] = 2.0  # the caller mutates its array: the old factor must not be reused
    second = gaussian.factorise(src, 3)
    assert second is not first
    np.testing.assert_array_equal(second.chol, np.linalg.cholesky(src))


def test_same_covariance_exact_tolerant_and_different() -> None:
    p = TwoModeMixture(0.3, np.zeros(3), np.ones(3), COV)
    q = p.with_params(0.5, np.ones(3), np.zeros(3))
    assert q.factor is p.factor and q.same_covariance(p)
    near = TwoModeMixture(0.3, np.zeros(3), np.ones(3), COV * (1 + 1e-12))
    far = TwoModeMixture(0.3, np.zeros(3), np.ones(3), COV * 1.01)
    assert near.same_covariance(p) and not far.same_covariance(p)
    with pytest.raises(ValueError, match="cov must equal"):
        population.kl_divergence(p, far)


def test_mixtures_from_the_cache_give_the_numbers_of_a_fresh_build(monkeypatch) -> None:
    """Consistency: the cached path against the uncached one (factorise disabled)."""
    p = TwoModeMixture(0.3, np.zeros(3), np.array([2.0, 0.0, 1.0]), COV)
    q = TwoModeMixture(0.6, np.full(3, 0.2), np.array([1.5, 0.5, 1.0]), p.cov)
    cached = population.reverse_kl_gradient(q, p)
    monkeypatch.setattr(gaussian, "_FACTORS", {})
    fresh_p = TwoModeMixture(0.3, np.zeros(3), np.array([2.0, 0.0, 1.0]), COV.copy())
    fresh_q = TwoModeMixture(0.6, np.full(3, 0.2), np.array([1.5, 0.5, 1.0]), COV.copy())
    for a, b in zip(cached, population.reverse_kl_gradient(fresh_q, fresh_p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)


def test_sample_batch_reuses_log_densities_but_not_across_mixtures() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 5, 3))
    p = TwoModeMixture(0.3, np.zeros(3), np.ones(3), COV)
    q = p.with_params(0.7, np.ones(3), np.zeros(3))
    batch = SampleBatch(x, p.factor)
    first = batch.log_prob(q)
    assert batch.log_prob(q) is first
    np.testing.assert_allclose(batch.log_prob(p)[0], p.log_prob(x), rtol=1e-13)  # independent
    np.testing.assert_allclose(first[0], q.log_prob(x), rtol=1e-13)


def test_a_cache_that_ignores_the_entries_is_caught(monkeypatch) -> None:
    """Mutation check: a factorise that reuses by identity alone fails the mutation test."""
    real = gaussian.factorise

    def by_identity(cov, dim):  # type: ignore[no-untyped-def]
        hit = gaussian._FACTORS.get(id(gaussian._root(cov))) if isinstance(cov, np.ndarray) \
            else None
        known = hit[1]() if hit is not None else None
        return known if known is not None else real(cov, dim)

    monkeypatch.setattr(gaussian, "factorise", by_identity)
    with pytest.raises(AssertionError):
        test_a_changed_source_array_is_factorised_again()
