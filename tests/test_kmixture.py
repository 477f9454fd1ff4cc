"""K-mode mixture: densities, scores and pairwise closed forms against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from forgetlab.kmixture import KModeMixture
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import misassignment


def test_density_and_scores_against_scipy_and_differences():
    mix = KModeMixture([0.2, 0.5, 0.3], [[0.0], [1.5], [-2.0]], 0.6)
    x = np.linspace(-4, 4, 9)[:, None]
    ref = sum(w * norm.pdf(x[:, 0], m, np.sqrt(0.6)) for w, m in
              zip(mix.weights, mix.means[:, 0], strict=True))
    assert np.allclose(mix.log_prob(x), np.log(ref), atol=1e-13)
    assert np.allclose(mix.responsibilities(x).sum(axis=-1), 1.0)
    s_eta, s_m = mix.scores(x)
    eta, h = np.log(mix.weights), 1e-6
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        num = (KModeMixture.from_logits(eta + e, mix.means, 0.6).log_prob(x)
               - KModeMixture.from_logits(eta - e, mix.means, 0.6).log_prob(x)) / (2 * h)
        assert np.allclose(num, s_eta[:, k], atol=1e-8)
        dm = np.zeros((3, 1))
        dm[k] = h
        num = (mix.with_params(mix.weights, mix.means + dm).log_prob(x)
               - mix.with_params(mix.weights, mix.means - dm).log_prob(x)) / (2 * h)
        assert np.allclose(num, s_m[:, k, 0], atol=1e-8)


def test_bhattacharyya_against_quad():
    mix = KModeMixture([0.5, 0.5], [[0.0], [2.3]], 1.7)
    ref = integrate.quad(lambda x: np.sqrt(norm.pdf(x, 0, np.sqrt(1.7))
                                           * norm.pdf(x, 2.3, np.sqrt(1.7))), -30, 30)[0]
    assert abs(mix.bhattacharyya()[0, 1] - ref) < 1e-12


def test_hard_misassignment_pairs_against_two_mode():
    mix = KModeMixture([0.6, 0.1, 0.3], [[0.0, 0.0], [3.0, 0.0], [0.0, 2.0]], 1.0)
    hard = mix.hard_misassignments()
    # pair (0, 1) as a two-mode problem with weights (0.6, 0.1) renormalised: the Bayes rule
    # depends on the weight ratio only
    ref = misassignment(0.6 / 0.7, [0.0, 0.0], [3.0, 0.0], 1.0, kind="hard")
    assert abs(hard[0, 1] - ref) < 1e-14
    assert np.all(np.diag(hard) == 0)


def test_sampling_is_deterministic_and_correct():
    mix = KModeMixture([0.7, 0.3], [[0.0], [5.0]], 1.0)
    x1, lab1 = mix.sample_with_labels(20_000, np.random.default_rng(1))
    x2, _ = mix.sample_with_labels(20_000, np.random.default_rng(1))
    assert np.array_equal(x1, x2)
    assert abs(lab1.mean() - 0.3) < 5 * np.sqrt(0.21 / 20_000)
    two = TwoModeMixture(0.7, 0.0, 5.0, 1.0)
    assert np.allclose(mix.log_prob(x1[:50]), two.log_prob(x1[:50]), atol=1e-13)


@pytest.mark.parametrize("bad, match", [
    (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]]), "sum to 1"),
    (dict(weights=[0.5, 0.5], means=[[0.0], [1.0], [2.0]]), "shape"),
    (dict(weights=[1.5, -0.5], means=[[0.0], [1.0]]), "weights must lie"),
])
def test_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        KModeMixture(**bad)
