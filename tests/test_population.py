"""The exact population engine against independent references.

- d = 1: adaptive quadrature (scipy.integrate.quad) of the defining integrals over x;
- d = 2, non-diagonal covariance: scipy.integrate.dblquad;
- d = 5 .. 1000: large Monte Carlo, within 4 standard errors;
- gradients: Richardson-extrapolated central differences of ``kl_divergence``;
- the Hessian of KL(q || p*) at q = p* equals the Fisher information (theory C5).

Accuracy target: 1e-9 relative or 1e-12 absolute.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.special import expit

from forgetlab.mixture import TwoModeMixture
from forgetlab.population import (
    expected_responsibility,
    expected_scores,
    fisher_information,
    forward_kl_gradient,
    kl_divergence,
    misassignment,
    misassignment_bound,
    reverse_kl_gradient,
    soft_misassignments,
)

RTOL, ATOL = 1e-9, 1e-12


def assert_close(got, ref, rtol=RTOL, atol=ATOL):
    got, ref = np.asarray(got, dtype=float), np.asarray(ref, dtype=float)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(ref))
    err = np.abs(got - ref)
    bad = err > rtol * np.abs(ref) + atol
    assert not np.any(bad), f"got {got[bad]}, reference {ref[bad]}, error {err[bad]}"


# -- d = 1 references by adaptive quadrature over x ----------------------------------------
SIGMA = 1.7  # standard deviation of the shared variance in d = 1


def _log_phi(x, mean):
    return -0.5 * np.log(2 * np.pi * SIGMA**2) - (x - mean) ** 2 / (2 * SIGMA**2)


def _log_mix(x, w, m_o, m_n):
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(w) + _log_phi(x, m_o), np.log1p(-w) + _log_phi(x, m_n))


def _quad(fun, knots, epsrel=1e-12, epsabs=0.0):
    """integral of fun over R, split at the knots, each piece to epsrel relative (or epsabs)."""
    knots = np.sort(np.asarray(knots, dtype=float))
    edges = np.concatenate([[knots[0] - 45 * SIGMA], knots, [knots[-1] + 45 * SIGMA]])
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi > lo:
            total += integrate.quad(fun, lo, hi, epsabs=epsabs, epsrel=epsrel, limit=400)[0]
    return total


def _boundary(w, m_o, m_n):
    """The x where the responsibilities are equal (u(x) = 0), or None."""
    if m_o == m_n or w in (0.0, 1.0):
        return []
    x0 = 0.5 * (m_o + m_n) - SIGMA**2 * np.log((1 - w) / w) / (m_n - m_o)
    return [x0]


CONFIGS_1D = [
    # beta, m_o, m_n, alpha, a, b   (means in units of SIGMA)
    (0.3, 0.2, 2.5, 0.6, 0.0, 3.0),
    (0.4, 0.0, 0.05, 0.5, 0.0, 0.05),
    (0.2, 0.0, 40.0, 0.5, 0.0, 40.0),
    (1e-6, 0.1, 3.0, 1 - 1e-6, 0.0, 4.0),
    (1 - 1e-6, -0.3, 6.0, 1e-6, 0.0, 5.0),
    (0.5, 0.0, 0.05, 0.3, 0.0, 40.0),
    (0.7, 1.0, 1.0, 0.5, 0.0, 2.0),
    (1e-6, 0.0, 40.0, 0.5, 0.3, 38.0),
    (0.9, 5.0, -2.0, 0.1, -1.0, 1.5),
]


def _mixtures(cfg):
    beta, m_o, m_n, alpha, a, b = cfg
    q = TwoModeMixture(beta, m_o * SIGMA, m_n * SIGMA, SIGMA**2)
    p = TwoModeMixture(alpha, a * SIGMA, b * SIGMA, SIGMA**2)
    return q, p, (beta, m_o * SIGMA, m_n * SIGMA), (alpha, a * SIGMA, b * SIGMA)


@pytest.mark.parametrize("cfg", CONFIGS_1D)
def test_misassignments_match_quadrature_d1(cfg):
    q, p, (beta, m_o, m_n), (alpha, a, b) = _mixtures(cfg)
    knots = [m_o, m_n, a, b, *_boundary(beta, m_o, m_n), *_boundary(alpha, a, b)]

    def r_n(x, w, mo, mn):
        return expit(np.log1p(-w) + _log_phi(x, mn) - np.log(w) - _log_phi(x, mo))

    ref = {
        "eps_q": _quad(lambda x: np.exp(_log_phi(x, m_o)) * r_n(x, beta, m_o, m_n), knots),
        "rho_q": _quad(lambda x: np.exp(_log_phi(x, m_n)) * (1 - r_n(x, beta, m_o, m_n)), knots),
        "eps_star": _quad(lambda x: np.exp(_log_phi(x, m_o)) * r_n(x, alpha, a, b), knots),
        "rho_star": _quad(lambda x: np.exp(_log_phi(x, m_n)) * (1 - r_n(x, alpha, a, b)), knots),
    }
    got = soft_misassignments(q, p)
    for key, value in ref.items():
        assert_close(got[key], value)
    assert_close(misassignment(beta, m_o, m_n, SIGMA**2), ref["eps_q"])
    assert_close(1.0 - expected_responsibility(q, m_o), ref["eps_q"])
    assert_close(expected_responsibility(q, m_n), ref["rho_q"])


@pytest.mark.parametrize("cfg", CONFIGS_1D)
def test_kl_both_directions_match_quadrature_d1(cfg):
    q, p, (beta, m_o, m_n), (alpha, a, b) = _mixtures(cfg)
    knots = [m_o, m_n, a, b, *_boundary(beta, m_o, m_n), *_boundary(alpha, a, b)]

    def kl_ref(w1, mo1, mn1, w2, mo2, mn2):
        def f(x):
            lp = _log_mix(x, w1, mo1, mn1)
            return np.exp(lp) * (lp - _log_mix(x, w2, mo2, mn2))
        return _quad(f, knots)

    assert_close(kl_divergence(q, p), kl_ref(beta, m_o, m_n, alpha, a, b))
    assert_close(kl_divergence(p, q), kl_ref(alpha, a, b, beta, m_o, m_n))


@pytest.mark.parametrize("cfg", CONFIGS_1D)
def test_gradients_and_fisher_match_quadrature_d1(cfg):
    q, p, (beta, m_o, m_n), (alpha, a, b) = _mixtures(cfg)
    knots = [m_o, m_n, a, b, *_boundary(beta, m_o, m_n), *_boundary(alpha, a, b)]
    prec = 1.0 / SIGMA**2

    def scores(x):
        """grad log q(x) in (beta, m_o, m_n), from log densities (no overflow in the tails)."""
        lq = _log_mix(x, beta, m_o, m_n)
        r_o = np.exp(np.log(beta) + _log_phi(x, m_o) - lq)
        return (np.exp(_log_phi(x, m_o) - lq) - np.exp(_log_phi(x, m_n) - lq),
                r_o * prec * (x - m_o), (1 - r_o) * prec * (x - m_n))

    def q_times(x, fun):
        return np.exp(_log_mix(x, beta, m_o, m_n)) * fun(x)

    def log_ratio(x):
        return _log_mix(x, beta, m_o, m_n) - _log_mix(x, alpha, a, b)

    rev = reverse_kl_gradient(q, p)
    for i, field in enumerate(rev):
        ref = _quad(lambda x, i=i: q_times(x, lambda y: scores(y)[i] * log_ratio(y)), knots,
                    epsrel=1e-11, epsabs=1e-15)
        assert_close(field, ref, atol=1e-11)

    fwd = forward_kl_gradient(q, p)
    for i, field in enumerate(fwd):
        ref = _quad(lambda x, i=i: -np.exp(_log_mix(x, alpha, a, b)) * scores(x)[i], knots,
                    epsrel=1e-11, epsabs=1e-15)
        assert_close(field, ref, atol=1e-11)

    fisher = fisher_information(q)
    for i in range(3):
        for j in range(i, 3):
            ref = _quad(lambda x, i=i, j=j: q_times(x, lambda y: scores(y)[i] * scores(y)[j]),
                        knots, epsrel=1e-11, epsabs=1e-15)
            assert_close(fisher[i, j], ref, atol=1e-11)
            assert fisher[j, i] == fisher[i, j]


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_single_gaussian_data_and_targets(weight):
    """Weights 0 or 1 are a single Gaussian: closed forms for KL and the misassignments."""
    cov = np.array([[2.0, 0.6], [0.6, 1.0]])
    q = TwoModeMixture(0.3, [0.0, 0.0], [3.0, -1.0], cov)
    single = TwoModeMixture(weight, [1.0, 0.5], [-2.0, 2.0], cov)
    mean = single.mean_old if weight == 1.0 else single.mean_new
    mis = soft_misassignments(q, single)
    assert mis["eps_star"] == 1.0 - weight and mis["rho_star"] == weight
    # KL(single || q) = -H(N) - E_N[log q]; E_N[log q] by the same engine's cross term
    gauss = TwoModeMixture(0.5, mean, mean, cov)  # the same Gaussian written as a mixture
    assert_close(kl_divergence(single, q), kl_divergence(gauss, q))
    assert_close(kl_divergence(q, single), kl_divergence(q, gauss))
    assert_close(kl_divergence(single, gauss), 0.0)
    fwd_single, fwd_gauss = forward_kl_gradient(q, single), forward_kl_gradient(q, gauss)
    for f1, f2 in zip(fwd_single, fwd_gauss, strict=True):
        assert_close(f1, f2)


# -- d = 2 with a non-diagonal covariance: dblquad -------------------------------------------
def test_d2_nondiagonal_against_dblquad():
    cov = np.array([[1.5, 0.7], [0.7, 0.8]])
    q = TwoModeMixture(0.35, [0.2, -0.1], [1.8, 1.1], cov)
    p = TwoModeMixture(0.6, [0.0, 0.0], [2.2, 0.9], cov)
    prec = np.linalg.inv(cov)
    log_norm = -np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(cov)[1]

    def log_phi(x, mean):
        diff = x - mean
        return log_norm - 0.5 * diff @ prec @ diff

    def log_mix(x, mix):
        w = float(mix.weight_old)
        return np.logaddexp(np.log(w) + log_phi(x, mix.mean_old), np.log1p(-w)
                            + log_phi(x, mix.mean_new))

    def dbl(fun):
        return integrate.dblquad(lambda y, x: fun(np.array([x, y])), -13.0, 15.0, -12.0, 14.0,
                                 epsabs=1e-13, epsrel=1e-11)[0]

    def kl_integrand(x):
        lq = log_mix(x, q)
        return np.exp(lq) * (lq - log_mix(x, p))

    assert_close(kl_divergence(q, p), dbl(kl_integrand), rtol=1e-9, atol=1e-11)

    def eps_star(x):
        r_n = expit(np.log1p(-p.weight_old) + log_phi(x, p.mean_new) - np.log(p.weight_old)
                    - log_phi(x, p.mean_old))
        return np.exp(log_phi(x, q.mean_old)) * r_n

    assert_close(soft_misassignments(q, p)["eps_star"], dbl(eps_star), rtol=1e-9, atol=1e-11)

    def grad_beta(x):
        return (np.exp(log_phi(x, q.mean_old)) - np.exp(log_phi(x, q.mean_new))) * (
            log_mix(x, q) - log_mix(x, p))

    assert_close(reverse_kl_gradient(q, p).weight_old, dbl(grad_beta), rtol=1e-9, atol=1e-11)


# -- higher d: Monte Carlo within 4 standard errors ------------------------------------------
def _random_config(d, rng, delta_q, delta_p, beta, alpha):
    a_mat = rng.normal(size=(d, d)) / np.sqrt(d)
    cov = a_mat @ a_mat.T + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)

    def unit():
        v = rng.normal(size=d)
        return v / np.linalg.norm(v)

    a = rng.normal(size=d)
    b = a + delta_p * chol @ unit()
    m_o = a + 0.3 * chol @ unit()
    m_n = m_o + delta_q * chol @ unit()
    return TwoModeMixture(beta, m_o, m_n, cov), TwoModeMixture(alpha, a, b, cov)


def _mc_check(est, samples_mean, samples_se, k=4.0):
    assert np.all(np.abs(est - samples_mean) <= k * samples_se + 1e-12), (est, samples_mean,
                                                                          samples_se)


@pytest.mark.parametrize("d,n", [(5, 400_000), (50, 100_000),
                                 pytest.param(1000, 20_000, marks=pytest.mark.slow)])
def test_monte_carlo_high_dimension(d, n):
    rng = np.random.default_rng(20 + d)
    q, p = _random_config(d, rng, delta_q=2.0, delta_p=2.5, beta=0.3, alpha=0.6)
    # directions to compare vector gradients on (whitened span plus a random direction)
    dirs = np.stack([q.mean_new - q.mean_old, p.mean_new - p.mean_old,
                     q.mean_old - p.mean_old, rng.normal(size=d)])
    x = q.sample(n, rng)
    log_ratio = q.log_prob(x) - p.log_prob(x)
    sc = q.scores(x)

    def stats(v):
        return v.mean(axis=0), v.std(axis=0, ddof=1) / np.sqrt(v.shape[0])

    _mc_check(kl_divergence(q, p), *stats(log_ratio))
    rev = reverse_kl_gradient(q, p)
    centred = log_ratio - log_ratio.mean()
    _mc_check(rev.weight_old, *stats(sc.weight_old * centred))
    _mc_check(dirs @ rev.mean_old, *stats((sc.mean_old @ dirs.T) * centred[:, None]))
    _mc_check(dirs @ rev.mean_new, *stats((sc.mean_new @ dirs.T) * centred[:, None]))

    xp = p.sample(n, rng)
    sp = q.scores(xp)
    fwd = forward_kl_gradient(q, p)
    _mc_check(fwd.weight_old, *stats(-sp.weight_old))
    _mc_check(dirs @ fwd.mean_old, *stats(-(sp.mean_old @ dirs.T)))
    _mc_check(dirs @ fwd.mean_new, *stats(-(sp.mean_new @ dirs.T)))

    z = rng.standard_normal((n, d)) @ q.chol.T
    mis = soft_misassignments(q, p)
    _mc_check(mis["eps_q"], *stats(1.0 - q.responsibilities(q.mean_old + z)))
    _mc_check(mis["rho_star"], *stats(p.responsibilities(q.mean_new + z)))


def test_fisher_monte_carlo_d5():
    rng = np.random.default_rng(5)
    q, _ = _random_config(5, rng, delta_q=1.5, delta_p=2.0, beta=0.4, alpha=0.5)
    x = q.sample(400_000, rng)
    sc = q.scores(x)
    s = np.concatenate([sc.weight_old[:, None], sc.mean_old, sc.mean_new], axis=1)
    outer = s[:, :, None] * s[:, None, :]
    mean, se = outer.mean(axis=0), outer.std(axis=0, ddof=1) / np.sqrt(len(s))
    _mc_check(fisher_information(q), mean, se, k=4.5)


# -- finite differences of kl_divergence -----------------------------------------------------
def _richardson(fun, x0, h):
    def central(step):
        return (fun(x0 + step) - fun(x0 - step)) / (2 * step)

    return (4 * central(h / 2) - central(h)) / 3


@pytest.mark.parametrize("seed,delta_q,delta_p,beta,alpha", [
    (0, 1.0, 2.0, 0.3, 0.6), (1, 3.0, 5.0, 0.05, 0.8), (2, 0.2, 8.0, 0.7, 0.2),
    (3, 6.0, 1.0, 0.5, 0.5),
])
def test_gradients_are_derivatives_of_kl(seed, delta_q, delta_p, beta, alpha):
    rng = np.random.default_rng(seed)
    q, p = _random_config(3, rng, delta_q, delta_p, beta, alpha)
    h = 1e-3

    def along(field, idx, fn):
        def f(t):
            params = [q.weight_old, q.mean_old.copy(), q.mean_new.copy()]
            if field == 0:
                params[0] = q.weight_old + t
            else:
                params[field] = params[field] + t * np.eye(3)[idx]
            return fn(q.with_params(*params))
        return _richardson(f, 0.0, h)

    rev = reverse_kl_gradient(q, p)
    fwd = forward_kl_gradient(q, p)
    for field in range(3):
        for idx in range(1 if field == 0 else 3):
            got_r = rev[field] if field == 0 else rev[field][idx]
            got_f = fwd[field] if field == 0 else fwd[field][idx]
            assert_close(got_r, along(field, idx, lambda m: kl_divergence(m, p)), rtol=1e-8,
                         atol=1e-10)
            assert_close(got_f, along(field, idx, lambda m: kl_divergence(p, m)), rtol=1e-8,
                         atol=1e-10)


@pytest.mark.parametrize("alpha,delta", [(0.3, 1.0), (0.6, 3.0), (0.1, 0.5)])
def test_reverse_kl_hessian_at_target_is_fisher(alpha, delta):
    """C5: at q = p* the Hessian of KL(q || p*) equals F(theta*) (finite differences of the
    exact gradient)."""
    rng = np.random.default_rng(7)
    _, p = _random_config(2, rng, delta, delta, alpha, alpha)
    theta = np.concatenate([[alpha], p.mean_old, p.mean_new])

    def grad(vec):
        q = p.with_params(vec[0], vec[1:3], vec[3:5])
        g = reverse_kl_gradient(q, p)
        return np.concatenate([[g.weight_old], g.mean_old, g.mean_new])

    hess = np.stack([_richardson(lambda t, i=i: grad(theta + t * np.eye(5)[i]), 0.0, 1e-3)
                     for i in range(5)])
    assert_close(grad(theta), np.zeros(5), atol=1e-13)
    assert_close(hess, fisher_information(p.with_params(alpha, p.mean_old, p.mean_new)),
                 rtol=1e-7, atol=1e-9)


# -- bounds, batching, extremes ----------------------------------------------------------------
def test_soft_misassignment_below_bhattacharyya_bound_and_near_hard():
    w = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6])[:, None]
    dist = np.array([0.05, 0.5, 2.0, 8.0, 40.0])
    soft = misassignment(w, 0.0, dist[:, None], 1.0)
    bound = misassignment_bound(w, 0.0, dist[:, None], 1.0)
    assert soft.shape == (6, 5) and np.all(soft <= bound * (1 + 1e-12))
    hard = misassignment(w, 0.0, dist[:, None], 1.0, kind="hard")
    with np.errstate(divide="ignore"):
        ref = stats.norm.cdf(-dist / 2 + (np.log1p(-w) - np.log(w)) / dist)
    np.testing.assert_allclose(hard, ref, rtol=1e-12, atol=1e-300)
    # log form matches and stays finite where the probability underflows
    log_soft = misassignment(0.5, 0.0, 80.0, 1.0, log=True)
    assert np.isfinite(log_soft) and log_soft < -700


def test_batched_equals_elementwise():
    rng = np.random.default_rng(11)
    pairs = [_random_config(3, rng, dq, dp, b, a) for dq, dp, b, a in
             [(0.5, 1.0, 0.2, 0.7), (4.0, 2.0, 0.6, 0.3), (10.0, 30.0, 0.01, 0.99)]]
    q_b = TwoModeMixture([q.weight_old for q, _ in pairs], [q.mean_old for q, _ in pairs],
                         [q.mean_new for q, _ in pairs], [q.cov for q, _ in pairs])
    p_b = TwoModeMixture([p.weight_old for _, p in pairs], [p.mean_old for _, p in pairs],
                         [p.mean_new for _, p in pairs], [p.cov for _, p in pairs])
    batched = (kl_divergence(q_b, p_b), reverse_kl_gradient(q_b, p_b),
               forward_kl_gradient(q_b, p_b), fisher_information(q_b))
    for i, (q, p) in enumerate(pairs):
        single = (kl_divergence(q, p), reverse_kl_gradient(q, p), forward_kl_gradient(q, p),
                  fisher_information(q))
        assert_close(batched[0][i], single[0], rtol=1e-13, atol=0)
        for fb, fs in zip(batched[1], single[1], strict=True):
            assert_close(fb[i], fs, rtol=1e-13, atol=1e-15)
        for fb, fs in zip(batched[2], single[2], strict=True):
            assert_close(fb[i], fs, rtol=1e-13, atol=1e-15)
        assert_close(batched[3][i], single[3], rtol=1e-13, atol=1e-15)


def test_expected_scores_stack_shape_and_zero_mean_under_learner():
    rng = np.random.default_rng(3)
    q, p = _random_config(4, rng, 1.5, 2.0, 0.3, 0.5)
    means = np.stack([q.mean_old, q.mean_new, p.mean_new])
    sc = expected_scores(q, means)
    assert sc.weight_old.shape == (3,) and sc.mean_old.shape == (3, 4)
    # E_q[score] = 0: beta * (score under phi_o) + (1 - beta) * (score under phi_n)
    w = np.array([q.weight_old, 1 - q.weight_old])
    for field in sc:
        assert_close(np.tensordot(w, field[:2], axes=1), np.zeros_like(field[0]), atol=1e-14)


EXTREMES = [(dq, dp, b, a) for dp in (0.05, 40.0) for a in (0.0, 1e-6, 1 - 1e-6, 1.0)
            for dq in (0.0, 0.05, 40.0) for b in (1e-6, 1 - 1e-6)]


@pytest.mark.parametrize("d", [1, 1000])
def test_extremes_are_finite(d):
    rng = np.random.default_rng(d)
    if d == 1:
        cov = np.array([[2.0]])
    else:
        cov = np.diag(rng.uniform(0.5, 2.0, size=d))
    chol = np.sqrt(np.diag(cov))
    u, v = rng.normal(size=d), rng.normal(size=d)
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    dq, dp, b, a = (np.array(c) for c in zip(*EXTREMES, strict=True))
    m_o = np.zeros((len(dq), d))
    q = TwoModeMixture(b, m_o, m_o + dq[:, None] * chol * u, np.diag(np.diag(cov)) if d > 1
                       else cov)
    p = TwoModeMixture(a, m_o, m_o + dp[:, None] * chol * v, q.cov[0])
    learners = TwoModeMixture(b[:6], m_o[:6], q.mean_new[:6], q.cov[0])  # every (dq, b) pair
    assert len(set(zip(dq[:6], b[:6], strict=True))) == 6
    outs = [kl_divergence(q, p), kl_divergence(p, q), fisher_information(learners)]
    outs += list(reverse_kl_gradient(q, p)) + list(forward_kl_gradient(q, p))
    outs += list(soft_misassignments(q, p).values())
    for out in outs:
        assert np.all(np.isfinite(out))
    mis = soft_misassignments(q, p)
    for key in mis:
        assert np.all(mis[key] <= 1)
    # KL is clipped at 0, so its sign says nothing: relabelling either mixture must not change it
    for one, other in ((q.swapped(), p), (q, p.swapped())):
        np.testing.assert_allclose(kl_divergence(one, other), outs[0], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(kl_divergence(other, one), outs[1], rtol=1e-8, atol=1e-9)


def test_shared_covariance_required():
    q = TwoModeMixture(0.3, 0.0, 1.0, 1.0)
    p = TwoModeMixture(0.3, 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="cov"):
        kl_divergence(q, p)
    with pytest.raises(ValueError, match="learner.weight_old"):
        reverse_kl_gradient(TwoModeMixture(0.0, 0.0, 1.0), p)
    with pytest.raises(ValueError, match="kind"):
        misassignment(0.3, 0.0, 1.0, 1.0, kind="medium")



# -- properties ---------------------------------------------------------------------------------
@st.composite
def _pair(draw):
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    beta = draw(st.floats(1e-6, 1 - 1e-6))
    alpha = draw(st.sampled_from([0.0, 1.0, 1e-6, 0.5, 1 - 1e-6])) if draw(st.booleans()) \
        else draw(st.floats(1e-6, 1 - 1e-6))
    q, p = _random_config(d, rng, draw(st.floats(0.0, 40.0)), draw(st.floats(0.05, 40.0)),
                          beta, alpha)
    return q, p, rng


def _affine(q, p, rng):
    d = q.dim
    v1, v2 = rng.normal(size=d), rng.normal(size=d)  # two Householder reflections: orthogonal
    orth = (np.eye(d) - 2 * np.outer(v1, v1) / (v1 @ v1)) @ (
        np.eye(d) - 2 * np.outer(v2, v2) / (v2 @ v2))
    a_mat = orth @ np.diag(rng.uniform(0.5, 2.0, size=d))
    shift = rng.normal(size=d) * 5

    def move(mix):
        return TwoModeMixture(mix.weight_old, mix.mean_old @ a_mat.T + shift,
                              mix.mean_new @ a_mat.T + shift, a_mat @ q.cov @ a_mat.T)
    return move(q), move(p), a_mat


def _close_props(a, b, rtol=1e-8, atol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    return np.allclose(a, b, rtol=rtol, atol=atol)


@settings(max_examples=25, deadline=None)
@given(_pair())
def test_swap_symmetry_property(case):
    q, p, _ = case
    # relabelling either mixture changes nothing but the names (1 - (1 - beta) rounding aside)
    tol = 1e-15 / min(q.weight_old, 1 - q.weight_old)
    assert _close_props(kl_divergence(q.swapped(), p), kl_divergence(q, p), atol=tol)
    assert _close_props(kl_divergence(q, p.swapped()), kl_divergence(q, p), atol=tol)
    mis, mis_sw = soft_misassignments(q, p), soft_misassignments(q.swapped(), p.swapped())
    assert _close_props(mis_sw["eps_q"], mis["rho_q"], atol=tol)
    assert _close_props(mis_sw["eps_star"], mis["rho_star"], atol=tol)
    g, g_sw = reverse_kl_gradient(q, p), reverse_kl_gradient(q.swapped(), p)
    assert _close_props(g_sw.weight_old, -g.weight_old, atol=tol)
    assert _close_props(g_sw.mean_old, g.mean_new, atol=tol)
    # the balance identity beta eps_q = (1 - beta) rho_q, and eps <= Bhattacharyya gate
    beta = q.weight_old
    assert _close_props(beta * mis["eps_q"], (1 - beta) * mis["rho_q"], atol=1e-300)
    bound = misassignment_bound(beta, q.mean_old, q.mean_new, q.cov)
    assert mis["eps_q"] <= bound * (1 + 1e-12)


@settings(max_examples=25, deadline=None)
@given(_pair())
def test_affine_invariance_property(case):
    q, p, rng = case
    q2, p2, a_mat = _affine(q, p, rng)
    assert _close_props(kl_divergence(q2, p2), kl_divergence(q, p))
    assert _close_props(kl_divergence(p2, q2), kl_divergence(p, q))
    for key, val in soft_misassignments(q, p).items():
        assert _close_props(soft_misassignments(q2, p2)[key], val), key
    # mean gradients are covectors: g -> A^{-T} g
    inv_t = np.linalg.inv(a_mat).T
    g, g2 = reverse_kl_gradient(q, p), reverse_kl_gradient(q2, p2)
    scale = 1.0 + np.max(np.abs(np.concatenate([g.mean_old, g.mean_new])))
    assert _close_props(g2.weight_old, g.weight_old, atol=1e-9 * scale)
    assert _close_props(g2.mean_old, inv_t @ g.mean_old, atol=1e-9 * scale)
    assert _close_props(g2.mean_new, inv_t @ g.mean_new, atol=1e-9 * scale)


def test_embedding_into_d1000_reproduces_d2():
    """A d = 2 configuration (checked by dblquad above) embedded in d = 1000 with a padded
    covariance and then moved by a random affine map gives the same exact numbers."""
    rng = np.random.default_rng(99)
    cov2 = np.array([[1.5, 0.7], [0.7, 0.8]])
    q = TwoModeMixture(0.35, [0.2, -0.1], [1.8, 1.1], cov2)
    p = TwoModeMixture(0.6, [0.0, 0.0], [2.2, 0.9], cov2)
    d = 1000
    cov = np.eye(d)
    cov[:2, :2] = cov2

    def pad(v):
        return np.concatenate([v, np.zeros(d - 2)])

    v1, v2 = rng.normal(size=d), rng.normal(size=d)  # x -> A x + c, A = H1 H2 diag(scales)
    a_mat = (np.eye(d) - 2 * np.outer(v1, v1) / (v1 @ v1)) @ (
        np.eye(d) - 2 * np.outer(v2, v2) / (v2 @ v2)) * rng.uniform(0.5, 2.0, size=d)
    shift = rng.normal(size=d)
    cov_big = a_mat @ cov @ a_mat.T
    q_big = TwoModeMixture(0.35, a_mat @ pad(q.mean_old) + shift, a_mat @ pad(q.mean_new) + shift,
                           cov_big)
    p_big = q_big.with_params(0.6, a_mat @ pad(p.mean_old) + shift, a_mat @ pad(p.mean_new) + shift)
    assert_close(kl_divergence(q_big, p_big), kl_divergence(q, p), rtol=1e-10)
    assert_close(kl_divergence(p_big, q_big), kl_divergence(p, q), rtol=1e-10)
    for key, val in soft_misassignments(q, p).items():
        assert_close(soft_misassignments(q_big, p_big)[key], val, rtol=1e-10)
    g, g_big = reverse_kl_gradient(q, p), reverse_kl_gradient(q_big, p_big)
    assert_close(g_big.weight_old, g.weight_old, rtol=1e-10)
    back = a_mat.T @ g_big.mean_old  # undo the covector map
    assert_close(back[:2], g.mean_old, rtol=1e-9, atol=1e-11)
    assert_close(back[2:], np.zeros(d - 2), atol=1e-11)


def test_broadcasting_learner_batch_against_one_target_and_k_means():
    rng = np.random.default_rng(12)
    pairs = [_random_config(2, rng, dq, 3.0, b, 0.4) for dq, b in [(0.5, 0.2), (2.0, 0.5),
                                                                    (6.0, 0.9)]]
    p = pairs[0][1]
    qs = [p.with_params(q.weight_old, q.mean_old, q.mean_new) for q, _ in pairs]  # p's cov
    q_b = qs[0].with_params([q.weight_old for q in qs], [q.mean_old for q in qs],
                            [q.mean_new for q in qs])
    grads = reverse_kl_gradient(q_b, p)
    means = rng.normal(size=(4, 2))
    q_col = qs[0].with_params(q_b.weight_old[:, None], q_b.mean_old[:, None, :],
                              q_b.mean_new[:, None, :])  # batch (3, 1) against K = 4 means
    resp = expected_responsibility(q_col, means)
    assert resp.shape == (3, 4) and grads.mean_old.shape == (3, 2)
    for i, q in enumerate(qs):
        single = reverse_kl_gradient(q, p)
        assert_close(grads.weight_old[i], single.weight_old, rtol=1e-13, atol=0)
        assert_close(grads.mean_new[i], single.mean_new, rtol=1e-13, atol=1e-15)
        for k in range(4):
            assert_close(resp[i, k], expected_responsibility(q, means[k]), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="mean has d=3"):
        expected_responsibility(qs[0], np.zeros(3))
    with pytest.raises(ValueError, match=r"means must have shape \[..., K, d=2\]"):
        expected_scores(qs[0], np.zeros(2))
