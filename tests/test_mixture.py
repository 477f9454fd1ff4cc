"""The two-mode mixture: densities, responsibilities, scores, sampling, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from forgetlab.mixture import TwoModeMixture, log_odds

COV = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.4], [0.0, -0.4, 1.5]])


def _batch():
    return TwoModeMixture([0.2, 0.7], [[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]],
                          [[2.0, 1.0, -1.0], [0.0, 0.0, 3.0]], COV)


def test_log_prob_and_responsibilities_match_scipy():
    mix = _batch()
    x = np.random.default_rng(0).normal(size=(2, 7, 3)) * 3
    for i in range(2):
        po = multivariate_normal(mix.mean_old[i], COV).pdf(x[i])
        pn = multivariate_normal(mix.mean_new[i], COV).pdf(x[i])
        q = mix.weight_old[i] * po + (1 - mix.weight_old[i]) * pn
        assert np.allclose(mix.log_prob(x)[i], np.log(q), rtol=1e-12)
        r_o = mix.responsibilities(x)[i]
        assert np.allclose(r_o, mix.weight_old[i] * po / q, rtol=1e-12)
        assert np.allclose(r_o + (1 - mix.weight_old[i]) * pn / q, 1.0, rtol=1e-12)
        lp_o, _ = mix.component_log_probs(x)
        assert np.allclose(lp_o[i], np.log(po), rtol=1e-12)


def test_scores_match_finite_differences_of_log_prob():
    mix = _batch()
    x = np.random.default_rng(1).normal(size=(2, 5, 3)) * 2
    sc = mix.scores(x)
    h = 1e-4

    def fd(shift):
        def logp(t):
            params = [np.array(p, dtype=float) for p in mix.params]
            field, idx = shift
            if field == 0:
                params[0] = params[0] + t
            else:
                params[field][..., idx] += t
            return mix.with_params(*params).log_prob(x)

        def central(step):
            return (logp(step) - logp(-step)) / (2 * step)
        return (4 * central(h / 2) - central(h)) / 3

    assert np.allclose(sc.weight_old, fd((0, None)), rtol=1e-8, atol=1e-10)
    for idx in range(3):
        assert np.allclose(sc.mean_old[..., idx], fd((1, idx)), rtol=1e-8, atol=1e-10)
        assert np.allclose(sc.mean_new[..., idx], fd((2, idx)), rtol=1e-8, atol=1e-10)
    beta = mix.weight_old[:, None]
    assert np.allclose(mix.logit_scores(x), beta * (1 - beta) * sc.weight_old, rtol=1e-12)


def test_sampling_moments_within_four_standard_errors():
    mix = TwoModeMixture(0.3, [0.0, 1.0], [2.0, -1.0], [[1.0, 0.4], [0.4, 0.5]])
    n = 200_000
    x, is_old = mix.sample_with_labels(n, np.random.default_rng(2))
    assert x.shape == (n, 2) and is_old.shape == (n,)
    freq, se = is_old.mean(), np.sqrt(0.3 * 0.7 / n)
    assert abs(freq - 0.3) < 4 * se
    diff = mix.mean_new - mix.mean_old
    mean = 0.3 * mix.mean_old + 0.7 * mix.mean_new
    cov = mix.cov + 0.3 * 0.7 * np.outer(diff, diff)
    assert np.all(np.abs(x.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / n))
    centred = x - mean
    prods = centred[:, :, None] * centred[:, None, :]
    assert np.all(np.abs(prods.mean(0) - cov) < 4 * prods.std(0) / np.sqrt(n))
    # each component's draws have that component's mean and covariance
    old = x[is_old]
    assert np.all(np.abs(old.mean(0) - mix.mean_old) < 4 * np.sqrt(np.diag(mix.cov) / len(old)))


def test_batch_sampling_is_reproducible_and_shaped():
    mix = _batch()
    a = mix.sample(4, np.random.default_rng(3))
    b = mix.sample(4, np.random.default_rng(3))
    assert a.shape == (2, 4, 3) and np.array_equal(a, b)
    single = TwoModeMixture(1.0, 0.0, 5.0, 0.01)
    assert np.all(np.abs(single.sample(50, np.random.default_rng(4))) < 1.0)


def test_geometry_helpers():
    mix = _batch()
    diff = mix.mean_new - mix.mean_old
    expected = np.sqrt(np.einsum("bi,ij,bj->b", diff, np.linalg.inv(COV), diff))
    assert np.allclose(mix.separation(), expected, rtol=1e-13)
    z = mix.whiten(diff[:, None, :])[:, 0]
    assert np.allclose(np.linalg.norm(z, axis=-1), expected, rtol=1e-13)
    assert np.allclose(mix.precision_times(diff[:, None, :])[:, 0],
                       diff @ np.linalg.inv(COV), rtol=1e-12)
    assert mix.batch_shape == (2,) and mix.dim == 3 and "batch_shape=(2,)" in repr(mix)


@pytest.mark.parametrize("args,match", [
    ((1.5, 0.0, 1.0, 1.0), r"weight_old must lie in \[0, 1\]"),
    ((np.nan, 0.0, 1.0, 1.0), "weight_old must be finite"),
    ((0.5, [0.0, 0.0], [1.0], 1.0), "mismatched dimensions"),
    ((0.5, [0.0, np.inf], [1.0, 1.0], 1.0), "mean_old must be finite"),
    ((0.5, [0.0, 0.0], [1.0, 1.0], [[1.0, 0.2], [0.0, 1.0]]), "cov must be symmetric"),
    ((0.5, [0.0, 0.0], [1.0, 1.0], [[1.0, 0.0], [0.0, -1.0]]), "cov must be positive definite"),
    ((0.5, [0.0, 0.0], [1.0, 1.0], "a"), "cov must be a number"),
])
def test_validation_names_the_field(args, match):
    with pytest.raises(ValueError, match=match):
        TwoModeMixture(*args)


def test_learner_weight_and_sample_size_validation():
    with pytest.raises(ValueError, match=r"learner.weight_old must lie in \(0, 1\)"):
        TwoModeMixture(0.0, 0.0, 1.0).require_learner()
    assert TwoModeMixture(0.5, 0.0, 1.0).require_learner().weight_old == 0.5
    with pytest.raises(ValueError, match="n \\(number of samples\\)"):
        TwoModeMixture(0.5, 0.0, 1.0).sample(-1, np.random.default_rng(0))


# -- properties ------------------------------------------------------------------------------
@st.composite
def _mixture_and_points(draw):
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.normal(size=(d, d))
    beta = draw(st.floats(1e-6, 1 - 1e-6))
    scale = draw(st.floats(0.01, 30.0))
    mix = TwoModeMixture(beta, rng.normal(size=d) * scale, rng.normal(size=d) * scale,
                         a @ a.T + 0.2 * np.eye(d))
    x = rng.normal(size=(6, d)) * scale * 2
    return mix, x


@settings(max_examples=60, deadline=None)
@given(_mixture_and_points())
def test_responsibilities_sum_to_one_and_swap_symmetry(case):
    mix, x = case
    r_o = mix.responsibilities(x)
    swapped = mix.swapped()
    r_n = swapped.responsibilities(x)  # the swapped mixture's "old" is the new mode
    # 1 - (1 - beta) differs from beta by up to 2^-53 / min(beta, 1 - beta) relative: the
    # swapped weight is only that accurate in float64; log densities of magnitude L carry an
    # absolute rounding error of about L * 2^-52
    log_scale = np.max(np.abs(mix.component_log_probs(x)))
    tol = 1e-15 / min(mix.weight_old, 1 - mix.weight_old) + 1e-15 * log_scale
    assert np.allclose(r_o + r_n, 1.0, rtol=0, atol=tol)
    assert np.allclose(mix.log_prob(x), swapped.log_prob(x), rtol=1e-13, atol=tol)
    assert np.all(np.isfinite(mix.log_prob(x)))
    sc, sc_sw = mix.scores(x), swapped.scores(x)
    assert np.allclose(sc.mean_old, sc_sw.mean_new, rtol=1e-10 + tol, atol=1e-10)


def test_log_odds_against_the_direct_formula_and_at_the_ends():
    """lambda = log((1 - beta) / beta), +inf at beta = 0 and -inf at beta = 1 (no warning)."""
    beta = np.array([1e-300, 1e-9, 0.2, 0.5, 0.7, 1 - 1e-9])
    want = np.array([np.log((1 - b) / b) for b in beta[1:-1]])
    np.testing.assert_allclose(log_odds(beta)[1:-1], want, rtol=1e-12)
    assert log_odds(1e-300) == pytest.approx(300 * np.log(10), rel=1e-12)
    assert log_odds(1 - 1e-9) == pytest.approx(np.log(1e-9 / (1 - 1e-9)), rel=1e-6)
    with np.errstate(all="raise"):
        assert log_odds(0.0) == np.inf and log_odds(1.0) == -np.inf
    mix = _batch()
    np.testing.assert_array_equal(mix.log_odds(), log_odds(mix.weight_old))
    assert mix.log_odds()[0] == pytest.approx(np.log(0.8 / 0.2), rel=1e-14)


def test_require_same_covariance_names_the_argument():
    mix = _batch()
    mix.require_same_covariance(mix.with_params(0.5, np.zeros(3), np.ones(3)), "target")
    with pytest.raises(ValueError, match=r"^target has d=2, the learner has d=3$"):
        mix.require_same_covariance(TwoModeMixture(0.5, [0.0, 0.0], [1.0, 1.0]), "target")
    other = TwoModeMixture(0.5, np.zeros(3), np.ones(3), COV * 1.01)
    with pytest.raises(ValueError, match=r"^data\.cov must equal the learner's cov"):
        mix.require_same_covariance(other, "data")
