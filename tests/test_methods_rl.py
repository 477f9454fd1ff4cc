"""RL (reverse KL, on-policy): estimators against exact gradients, and the fixed point (C3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from forgetlab import simulate
from forgetlab.methods import make_method
from forgetlab.methods.base import Problem, Streams
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig

N_SE = 4.0
COV = np.array([[1.2, -0.3], [-0.3, 0.9]])


def _problem(batch_size: int, dim: int = 2) -> Problem:
    cov = COV if dim == 2 else 1.0
    a, b = np.zeros(dim), np.r_[2.0, 1.0][:dim]
    target = TwoModeMixture(np.full((1, 1), 0.35), a, b, cov)
    initial = TwoModeMixture(np.full((1, 1), 0.6), a, np.r_[1.0, 0.0][:dim], cov)
    return Problem(target, initial, batch_size)


def _params(n_seeds: int, dim: int = 2) -> MixtureParams:
    shape = (1, n_seeds)
    return MixtureParams(np.full(shape, 0.45), np.broadcast_to(np.r_[0.3, -0.2][:dim],
                                                               (*shape, dim)),
                         np.broadcast_to(np.r_[1.4, 0.6][:dim], (*shape, dim)))


def _mc(method_knobs: dict, batch: int, n_batches: int, dim: int = 2, seed: int = 5
        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    method = make_method("rl", **method_knobs)
    out = method.gradient(_problem(batch, dim), _params(n_batches, dim), {}, 0,
                          Streams([seed], [0], n_batches)).grad
    return ([g.mean(axis=1)[0] for g in out],
            [g.std(axis=1, ddof=1)[0] / np.sqrt(n_batches) for g in out])


def _exact_reverse_kl(dim: int = 2) -> list[np.ndarray]:
    grad = make_method("rl").gradient(_problem(1, dim), _params(1, dim), {}, 0, None).grad
    return [g[0, 0] for g in grad]


@pytest.mark.parametrize("knobs", [{"baseline": "none"}, {"baseline": "loo"},
                                   {"baseline": "loo", "estimator": "pathwise"},
                                   {"baseline": "none", "estimator": "pathwise"}])
def test_reverse_kl_estimators_are_unbiased(knobs: dict) -> None:
    mean, se = _mc(knobs, batch=6, n_batches=6000)
    for m, s, ref in zip(mean, se, _exact_reverse_kl(), strict=True):
        assert np.all(np.abs(m - ref) <= N_SE * s), (knobs, m, ref, s)


def test_batch_mean_baseline_is_biased_by_one_over_b() -> None:
    """E[(A_i - mean_j A_j) s_i] = (1 - 1/B) E[A s]: a shrinkage the test detects at B = 2."""
    batch = 2
    mean, se = _mc({"baseline": "mean"}, batch=batch, n_batches=20000)
    exact = _exact_reverse_kl()
    for m, s, ref in zip(mean, se, exact, strict=True):
        assert np.all(np.abs(m - (1 - 1 / batch) * ref) <= N_SE * s)
    assert np.abs(mean[0] - exact[0]) > N_SE * se[0]


def _quad_rl_gradient(reward, tau: float) -> np.ndarray:
    """-E_q[(r - tau (log q - log q_0)) grad log q] in d = 1 by adaptive quadrature."""
    problem, p = _problem(1, dim=1), _params(1, dim=1)
    beta, m_o, m_n = float(p.weight_old[0, 0]), float(p.mean_old[0, 0, 0]), float(
        p.mean_new[0, 0, 0])
    q0 = problem.initial
    b0, o0, n0 = float(q0.weight_old[0, 0]), float(q0.mean_old[0, 0, 0]), float(
        q0.mean_new[0, 0, 0])

    def integrand(x: float, k: int) -> float:
        p_o, p_n = stats.norm.pdf(x, m_o), stats.norm.pdf(x, m_n)
        q = beta * p_o + (1 - beta) * p_n
        ref = b0 * stats.norm.pdf(x, o0) + (1 - b0) * stats.norm.pdf(x, n0)
        signal = reward(x) - tau * (np.log(q) - np.log(ref))
        score = ((p_o - p_n) / q, beta * p_o / q * (x - m_o), (1 - beta) * p_n / q * (x - m_n))
        return -q * signal * score[k]

    edges = [0.5, 3.5, -1.5, 1.5]
    return np.array([integrate.quad(integrand, -14, 16, args=(k,), points=edges,
                                    epsabs=1e-12, limit=400)[0] for k in range(3)])


@pytest.mark.parametrize("credit_old", [False, True])
def test_kl_regularised_verifiable_reward_estimator_is_unbiased(credit_old: bool) -> None:
    radius, tau = 1.5, 0.3
    knobs = {"reward": "verifiable", "radius": radius, "credit_old": credit_old, "tau": tau,
             "reference": "initial", "baseline": "loo"}
    mean, se = _mc(knobs, batch=8, n_batches=6000, dim=1)

    def reward(x: float) -> float:
        hit = abs(x - 2.0) <= radius or (credit_old and abs(x) <= radius)
        return float(hit)

    exact = _quad_rl_gradient(reward, tau)
    for k in range(3):
        assert abs(float(np.ravel(mean[k])[0]) - exact[k]) <= N_SE * float(np.ravel(se[k])[0])


def test_user_callable_reward_matches_quadrature() -> None:
    knobs = {"reward": "callable", "reward_fn": lambda x: -np.abs(x[..., 0] - 1.0),
             "tau": 0.5, "reference": "initial", "baseline": "loo"}
    mean, se = _mc(knobs, batch=8, n_batches=6000, dim=1)
    exact = _quad_rl_gradient(lambda x: -abs(x - 1.0), 0.5)
    for k in range(3):
        assert abs(float(np.ravel(mean[k])[0]) - exact[k]) <= N_SE * float(np.ravel(se[k])[0])


def test_grpo_groups_are_centred_and_scaled() -> None:
    from forgetlab.methods.rl import centred_signal

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(2, 3, 12))
    out = centred_signal(signal, "loo", group_size=4, grpo=True).reshape(2, 3, 3, 4)
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=-1), 1.0, rtol=1e-6)


def test_reverse_kl_population_reaches_the_target() -> None:
    """C3: beta -> alpha and (m_o, m_n) -> (a, b), from beta_0 on either side of alpha."""
    configs = [SimulationConfig(method="rl", steps=300, stride=25, learning_rate=1.0,
                                problem={"dim": 2, "separation": 4.0, "alpha": alpha,
                                         "beta0": beta0, "new_mean_start": 0.6,
                                         "cov": [[1.0, 0.3], [0.3, 0.7]]})
               for alpha, beta0 in ((0.3, 0.6), (0.7, 0.2))]
    traj = simulate(configs)
    np.testing.assert_allclose(traj.weight_old[:, 0, -1], [0.3, 0.7], atol=1e-7)
    np.testing.assert_allclose(traj.mean_old[:, 0, -1], traj.target_mean_old[:, 0, 0], atol=1e-6)
    np.testing.assert_allclose(traj.mean_new[:, 0, -1], traj.target_mean_new[:, 0, 0], atol=1e-6)
    assert np.all(traj.kl_reverse[:, 0, -1] < 1e-10)


def test_population_regime_needs_pure_reverse_kl() -> None:
    with pytest.raises(ValueError, match="regime 'population' for method 'rl'"):
        SimulationConfig(method="rl", knobs={"reward": "verifiable"})
    with pytest.raises(ValueError, match="pathwise"):
        make_method("rl", reward="verifiable", estimator="pathwise")
