"""The brute-force references of the claims (claims.reference) against scipy.integrate.quad
and against the population engine: two independent computations of the same integrals."""

from __future__ import annotations

import numpy as np
from scipy.integrate import quad
from scipy.special import expit
from scipy.stats import norm

from forgetlab import population
from forgetlab.claims import reference
from forgetlab.mixture import TwoModeMixture

BETA, M_O, M_N = 0.3, 0.2, 2.5


def _q(x: float) -> float:
    return BETA * norm.pdf(x, M_O) + (1 - BETA) * norm.pdf(x, M_N)


def test_responsibility_and_gradients_match_quad_in_1d() -> None:
    q = reference.Mix.of(BETA, [M_O], [M_N], 1.0)
    r_o = lambda x: expit(np.log(BETA / (1 - BETA)) + norm.logpdf(x, M_O)  # noqa: E731
                          - norm.logpdf(x, M_N))
    want = quad(lambda x: norm.pdf(x, 4.0) * r_o(x), -20, 25, epsabs=1e-14, limit=200)[0]
    assert abs(float(reference.responsibility(q, [4.0])[0]) - want) < 1e-12
    # forward KL to p_new = N(4, 1): d/dm_n = -E[r_n (x - m_n)]
    want_mn = -quad(lambda x: norm.pdf(x, 4.0) * (1 - r_o(x)) * (x - M_N), -20, 25,
                    epsabs=1e-14, limit=200)[0]
    got = reference.forward_kl_gradient(q, 0.0, [0.0], [4.0])[0]
    assert abs(got[2] - want_mn) < 1e-11
    # reverse KL to p* = 0.5 N(0) + 0.5 N(3): d/dbeta = E_q[(log q - log p) (phi_o - phi_n)/q]
    p = lambda x: 0.5 * norm.pdf(x, 0.0) + 0.5 * norm.pdf(x, 3.0)  # noqa: E731
    want_b = quad(lambda x: (np.log(_q(x)) - np.log(p(x))) * (norm.pdf(x, M_O)
                  - norm.pdf(x, M_N)), -20, 25, epsabs=1e-14, limit=200)[0]
    got_b = reference.reverse_kl_gradient(q, 0.5, [0.0], [3.0])[0, 0]
    assert abs(got_b - want_b) < 1e-11


def test_two_dimensional_references_match_the_engine() -> None:
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    q = TwoModeMixture(np.array([0.3, 0.7]), np.array([[0.1, 0.2], [0.0, 0.0]]),
                       np.array([[2.0, 0.5], [1.0, 1.0]]), cov)
    target = TwoModeMixture(0.4, np.zeros(2), np.array([3.0, 0.0]), cov)
    mix = reference.Mix.of(q.weight_old, q.mean_old, q.mean_new, cov)
    g = population.reverse_kl_gradient(q, target)
    engine = np.concatenate([g.weight_old[:, None], g.mean_old, g.mean_new], -1)
    brute = reference.reverse_kl_gradient(mix, 0.4, np.zeros(2), [3.0, 0.0])
    assert np.max(np.abs(engine - brute)) < 1e-10
    assert np.max(np.abs(population.fisher_information(q) - reference.fisher(mix))) < 1e-10


def test_brute_force_descent_and_optimum() -> None:
    """Gradient descent on the brute-force reverse KL reaches theta*; the brute-force optimum
    of a two-component cross entropy is the data's own parameters."""
    q0 = reference.Mix.of(0.5, [0.3], [3.5], 1.0)
    path = reference.descend(q0, lambda q: reference.reverse_kl_gradient(q, 0.3, [0.0], [4.0]),
                             400, 1.0)
    assert abs(path.beta[0, -1] - 0.3) < 1e-8 and abs(path.m_n[0, -1, 0] - 4.0) < 1e-8
    opt = reference.forward_kl_optimum([[0.3, 0.7]], [[[0.0], [4.0]]], 1.0, q0)
    assert abs(opt.beta[0] - 0.3) < 1e-7 and abs(opt.m_o[0, 0]) < 1e-6


def test_tilted_log_odds_matches_closed_forms() -> None:
    # linear tilt e^{w x}: log Z_c = w m_c + w^2 / 2, so the log odds move by w (m_o - m_n)
    w = 0.7
    got = reference.tilted_log_odds(BETA, M_O, M_N, lambda x: w * x)
    assert abs(got - (np.log(BETA / (1 - BETA)) + w * (M_O - M_N))) < 1e-10
    # 0/1 reward on [c - rho, c + rho], exponent g: Z_c = 1 + (e^g - 1) P_c (normal cdf)
    g, c, rho = 1.5, 2.0, 1.2

    def log_z(m: float) -> float:
        p = norm.cdf(c + rho - m) - norm.cdf(c - rho - m)
        return float(np.log1p(np.expm1(g) * p))

    got = reference.tilted_log_odds(BETA, M_O, M_N, lambda x: g * float(abs(x - c) <= rho),
                                    (c - rho, c + rho))
    assert abs(got - (np.log(BETA / (1 - BETA)) + log_z(M_O) - log_z(M_N))) < 1e-10
