"""The exact K-mode engine against independent references.

- d = 1: scipy.integrate.quad of the defining integrals over x (with break points at the
  pairwise boundaries for large separations);
- d = 2, non-diagonal covariance: scipy.integrate.dblquad;
- d = 5 (rank 2) and rank 4 (d = 6): large Monte Carlo, within 5 standard errors;
- K = 2: the two-mode engine (:mod:`forgetlab.population`, a different algorithm: 1-D
  quadrature of closed-form reductions);
- gradients: central differences of ``kl_divergence`` (same engine: a consistency test of the
  gradient formulas, not of the integrals);
- the Fisher information against Monte Carlo of E_q[s s^T].
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from forgetlab import kpopulation as kp
from forgetlab import population
from forgetlab.kmixture import KModeMixture
from forgetlab.mixture import TwoModeMixture

COV2 = np.array([[1.0, 0.3], [0.3, 0.7]])


def mix4() -> KModeMixture:
    return KModeMixture([0.4, 0.3, 0.2, 0.1], [[0, 0], [2.5, 0.3], [0.5, 2.2], [2.0, 2.0]], COV2)


@pytest.mark.slow  # 20 s of dblquad; test_d1_against_quad checks the same engine in d = 1
def test_soft_misassignment_against_dblquad():
    mix = mix4()
    eps = kp.soft_misassignments(mix)
    assert np.allclose(eps.sum(axis=1), 1.0, atol=1e-12)
    for j, k in [(3, 1)]:
        def f(y, x, j=j, k=k):
            pt = np.array([x, y])
            return (multivariate_normal(mix.means[j], COV2).pdf(pt)
                    * mix.responsibilities(pt[None])[0, k])
        ref = integrate.dblquad(f, -10, 12, -10, 12, epsabs=1e-12, epsrel=1e-11)[0]
        assert abs(eps[j, k] - ref) < 1e-10, (j, k, eps[j, k], ref)


def test_lemma_bound_and_certified_interval():
    mix = mix4()
    eps = kp.soft_misassignments(mix)
    bound = mix.misassignment_bounds()
    off = ~np.eye(4, dtype=bool)
    assert np.all(eps[off] <= bound[off])
    lo, hi = kp.responsibility_bounds(mix, mix.means)
    assert np.all(lo <= eps + 1e-12) and np.all(eps <= hi + 1e-12)


@pytest.mark.parametrize("scale", [1.0, 12.0])
def test_d1_against_quad(scale):
    """d = 1, K = 3 at moderate and large separations (the sharp-logistic regime)."""
    means = scale * np.array([[0.0], [1.7], [3.1]])
    mix = KModeMixture([0.5, 0.3, 0.2], means, 0.8)
    target = KModeMixture([0.2, 0.5, 0.3], means + np.array([[0.3], [-0.2], [0.1]]), 0.8)
    sd = np.sqrt(0.8)
    lo, hi = means.min() - 12 * sd - 2, means.max() + 12 * sd + 2
    grid = np.linspace(lo, hi, 60)  # break points: quad sees every sharp boundary
    eps = kp.soft_misassignments(mix)
    ratio = kp.expected_log_ratio(mix, target, mix.means)[0]
    for j in range(3):
        def resp(x, j=j, k=0):
            return norm.pdf(x, means[j, 0], sd) * mix.responsibilities(np.array([[x]]))[0, k]

        def lr(x, j=j):
            xx = np.array([[x]])
            return norm.pdf(x, means[j, 0], sd) * (mix.log_prob(xx) - target.log_prob(xx))[0]
        for k in range(3):
            ref = integrate.quad(resp, lo, hi, args=(j, k), points=grid, limit=400,
                                 epsabs=1e-14, epsrel=1e-13)[0]
            assert abs(eps[j, k] - ref) < 1e-10, (j, k)
        ref = integrate.quad(lr, lo, hi, points=grid, limit=400, epsabs=1e-14, epsrel=1e-13)[0]
        assert abs(ratio[j] - ref) < 1e-10 * max(1.0, abs(ref)), (j, ratio[j], ref)
    # between two modes a boundary crosses the bulk of the Gaussian: the sharp regime
    mids = 0.5 * (means[:-1] + means[1:]) + 0.05
    got = kp.expected_responsibilities(mix, mids)
    for m, mid in enumerate(mids[:, 0]):
        def r_mid(x, mid=mid):
            return norm.pdf(x, mid, sd) * mix.responsibilities(np.array([[x]]))[0, 1]
        ref = integrate.quad(r_mid, lo, hi, points=np.append(grid, mids[:, 0] + 0.0),
                             limit=400, epsabs=1e-14, epsrel=1e-13)[0]
        assert abs(got[m, 1] - ref) < 1e-10, (m, got[m, 1], ref)


def test_sharpness_of_the_rule_matters(monkeypatch):
    """Mutation: a rule that ignores the separation (fixed panels) fails the d = 1 check."""
    original = kp._rule
    monkeypatch.setattr(kp, "_rule", lambda rank, sharp: original(rank, 1.0))
    with pytest.raises(AssertionError):
        test_d1_against_quad(12.0)


def test_high_dimension_against_monte_carlo():
    """d = 5, K = 3 (rank 2): E[r_k] and E[log q - log p] within 5 standard errors."""
    rng = np.random.default_rng(7)
    d = 5
    a = rng.standard_normal((d, d))
    cov = a @ a.T / d + np.eye(d)
    means = rng.standard_normal((3, d)) * 1.5
    mix = KModeMixture([0.5, 0.3, 0.2], means, cov)
    # target means in the affine hull of the learner's (rank 2 together); mu anywhere
    target = KModeMixture([0.3, 0.3, 0.4], 0.7 * means + 0.3 * means[[1, 2, 0]], cov)
    mu = means[1] + 0.4
    got_r = kp.expected_responsibilities(mix, mu)[0]
    got_l = kp.expected_log_ratio(mix, target, mu)[0][0]
    x = rng.multivariate_normal(mu, cov, size=400_000)
    r = mix.responsibilities(x)
    lr = mix.log_prob(x) - target.log_prob(x)
    se_r = r.std(axis=0) / np.sqrt(len(x))
    assert np.all(np.abs(got_r - r.mean(axis=0)) < 5 * se_r + 1e-12)
    assert abs(got_l - lr.mean()) < 5 * lr.std() / np.sqrt(len(x))


def test_certified_bounds_rank_four_monte_carlo():
    """Rank 4 (five modes in d = 6): no exact rule; the bounds contain a Monte Carlo value."""
    rng = np.random.default_rng(3)
    means = 4.0 * rng.standard_normal((5, 6))
    mix = KModeMixture(np.full(5, 0.2), means, 1.0)
    with pytest.raises(ValueError, match="discriminant directions"):
        kp.expected_responsibilities(mix, means)
    lo, hi = kp.responsibility_bounds(mix, means[:2])
    x = rng.standard_normal((200_000, 6)) + means[0]
    mc = mix.responsibilities(x).mean(axis=0)
    assert np.all(lo[0] <= mc + 1e-3) and np.all(mc <= hi[0] + 1e-3)
    assert np.max(hi - lo) < 0.05  # tight for separated modes


def _two_mode_pair(beta=0.35, sep=2.2):
    mix2 = TwoModeMixture(beta, [0.0, 0.0], [sep, 0.5], COV2)
    k = KModeMixture([beta, 1 - beta], [[0.0, 0.0], [sep, 0.5]], COV2)
    return mix2, k


def test_k2_matches_two_mode_engine():
    mix2, k = _two_mode_pair()
    t2 = TwoModeMixture(0.6, [0.2, -0.1], [2.5, 0.2], COV2)
    tk = KModeMixture([0.6, 0.4], [[0.2, -0.1], [2.5, 0.2]], COV2)
    eps = kp.soft_misassignments(k)
    mis = population.soft_misassignments(mix2, t2)
    assert abs(eps[0, 1] - mis["eps_q"]) < 1e-11 and abs(eps[1, 0] - mis["rho_q"]) < 1e-11
    assert abs(kp.kl_divergence(k, tk) - population.kl_divergence(mix2, t2)) < 1e-11
    assert abs(kp.kl_divergence(tk, k) - population.kl_divergence(t2, mix2)) < 1e-11
    g_eta, g_m = kp.reverse_kl_gradient(k, tk)
    ref = population.reverse_kl_gradient(mix2, t2)
    beta = 0.35
    # eta_1 = logit(1 - beta): dL/deta_1 = -beta (1 - beta) dL/dbeta
    assert abs(g_eta[1] + beta * (1 - beta) * ref.weight_old) < 1e-11
    assert np.allclose(g_m, [ref.mean_old, ref.mean_new], atol=1e-11)
    f_eta, f_m = kp.forward_kl_gradient(k, tk)
    ref = population.forward_kl_gradient(mix2, t2)
    assert abs(f_eta[1] + beta * (1 - beta) * ref.weight_old) < 1e-11
    assert np.allclose(f_m, [ref.mean_old, ref.mean_new], atol=1e-11)


def test_fisher_k2_matches_two_mode_engine():
    mix2, k = _two_mode_pair()
    beta = 0.35
    f2 = population.fisher_information(mix2)
    jac = np.diag([-beta * (1 - beta), 1, 1, 1, 1])  # d beta / d eta_1, identity on the means
    assert np.allclose(kp.fisher_information(k), jac @ f2 @ jac, atol=1e-10)


def test_fisher_against_monte_carlo():
    mix = KModeMixture([0.5, 0.3, 0.2], [[0, 0, 0], [1.5, 0.5, 0], [0.3, 1.8, 0.4]], 1.0)
    fisher = kp.fisher_information(mix)
    x = mix.sample(400_000, np.random.default_rng(11))
    s_eta, s_m = mix.scores(x)
    s = np.concatenate([s_eta[:, 1:], s_m.reshape(len(x), -1)], axis=1)
    mc = s.T @ s / len(x)
    se = np.sqrt(np.maximum((s[:, :, None] * s[:, None, :]).var(axis=0), 1e-30) / len(x))
    assert np.all(np.abs(fisher - mc) < 5 * se + 1e-12)


def test_gradients_against_finite_differences():
    """Consistency (same engine both sides): the gradient formulas against differences of KL."""
    mix = KModeMixture([0.5, 0.3, 0.2], [[0, 0], [1.8, 0.4], [0.2, 2.1]], COV2)
    target = KModeMixture([0.3, 0.4, 0.3], [[0.1, 0], [2.0, 0.2], [0.0, 2.4]], COV2)
    eta = np.log(mix.weights)
    h = 1e-5
    for name, grad_fn, kl in [
        ("reverse", kp.reverse_kl_gradient, lambda m: kp.kl_divergence(m, target)),
        ("forward", kp.forward_kl_gradient, lambda m: kp.kl_divergence(target, m)),
    ]:
        g_eta, g_m = grad_fn(mix, target)
        for k in range(3):
            e = np.zeros(3)
            e[k] = h
            num = (kl(KModeMixture.from_logits(eta + e, mix.means, COV2))
                   - kl(KModeMixture.from_logits(eta - e, mix.means, COV2))) / (2 * h)
            assert abs(num - g_eta[k]) < 1e-7, (name, k)
            for i in range(2):
                dm = np.zeros((3, 2))
                dm[k, i] = h
                num = (kl(mix.with_params(mix.weights, mix.means + dm))
                       - kl(mix.with_params(mix.weights, mix.means - dm))) / (2 * h)
                assert abs(num - g_m[k, i]) < 1e-7, (name, k, i)
