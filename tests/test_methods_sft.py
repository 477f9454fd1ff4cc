"""SFT (forward KL) with replay: unbiased minibatch gradients, EM moments, fixed points (C2, C6)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from forgetlab import population, simulate
from forgetlab.methods import make_method
from forgetlab.methods.base import Problem, Streams
from forgetlab.methods.sft import em_from_moments, training_components
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig

N_SE = 4.0
COV = np.array([[1.5, 0.4], [0.4, 0.8]])


def _problem(n_configs: int, batch_size: int) -> Problem:
    a = np.array([0.0, 0.0])
    b = np.array([2.5, -1.0])
    target = TwoModeMixture(np.full((n_configs, 1), 0.4), a, b, COV)
    initial = TwoModeMixture(np.full((n_configs, 1), 0.6), a, np.array([1.0, 0.5]), COV)
    return Problem(target, initial, batch_size)


def _learner_params(n_configs: int, n_seeds: int) -> MixtureParams:
    shape = (n_configs, n_seeds)
    return MixtureParams(np.full(shape, 0.35), np.broadcast_to([0.3, -0.2], (*shape, 2)),
                         np.broadcast_to([1.8, -0.4], (*shape, 2)))


@pytest.mark.parametrize("replay", ["none", "old", "initial", "current"])
def test_minibatch_gradient_is_unbiased(replay: str) -> None:
    n_batches, batch = 4000, 8
    problem = _problem(1, batch)
    method = make_method("sft", replay=replay, replay_fraction=0.35)
    params = _learner_params(1, n_batches)
    exact = method.gradient(problem, _learner_params(1, 1), {}, 0, None).grad
    g = method.gradient(problem, params, {}, 0, Streams([11], [0], n_batches)).grad
    for est, ref in zip(g, exact, strict=True):
        mean = est.mean(axis=1)
        se = est.std(axis=1, ddof=1) / np.sqrt(n_batches)
        assert np.all(np.abs(mean - ref[:, 0]) <= N_SE * se), (replay, mean, ref, se)


def test_self_replay_is_sft_with_scaled_learning_rate() -> None:
    problem = _problem(1, 1)
    params = _learner_params(1, 1)
    plain = make_method("sft").gradient(problem, params, {}, 0, None).grad
    lam = 0.4
    self_replay = make_method("sft", replay="current", replay_fraction=lam).gradient(
        problem, params, {}, 0, None).grad
    for s, p in zip(self_replay, plain, strict=True):
        np.testing.assert_allclose(s, (1 - lam) * p, rtol=1e-10, atol=1e-13)
    base = {"steps": 60, "stride": 20, "problem": {"separation": 3.0}}
    a = simulate(SimulationConfig(method="sft", knobs={"replay": "current",
                                                       "replay_fraction": lam},
                                  learning_rate=0.8, **base))
    b = simulate(SimulationConfig(method="sft", learning_rate=0.8 * (1 - lam), **base))
    np.testing.assert_allclose(a.weight_old, b.weight_old, rtol=1e-9)
    np.testing.assert_allclose(a.mean_old, b.mean_old, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.mean_new, b.mean_new, rtol=1e-9, atol=1e-12)


def test_em_update_matches_quadrature_moments() -> None:
    """EM in d = 1: beta' = E_D[r_o], m_o' = E_D[r_o x]/E_D[r_o], by adaptive quadrature."""
    beta, m_o, m_n, lam, sd = 0.3, 0.4, 2.2, 0.25, 1.3
    learner = TwoModeMixture(beta, m_o, m_n, sd**2)
    target = TwoModeMixture(0.5, 0.0, 3.0, sd**2)
    problem = Problem(TwoModeMixture(0.5, [0.0], [3.0], sd**2), learner)
    weights, means, _ = training_components(problem, learner, "old", lam)
    s = population.expected_scores(learner, means)
    mean_score = MixtureParams(np.sum(weights * s.weight_old, -1),
                               np.sum(weights[..., None] * s.mean_old, -2),
                               np.sum(weights[..., None] * s.mean_new, -2))
    new = em_from_moments(learner, mean_score)

    def data(x: float) -> float:
        return lam * stats.norm.pdf(x, 0.0, sd) + (1 - lam) * stats.norm.pdf(x, 3.0, sd)

    def r_o(x: float) -> float:
        return float(learner.responsibilities(np.array([[x]]))[0])

    lim = (-15.0, 18.0)
    e_r = integrate.quad(lambda x: data(x) * r_o(x), *lim, epsabs=1e-13)[0]
    e_rx = integrate.quad(lambda x: data(x) * r_o(x) * x, *lim, epsabs=1e-13)[0]
    e_nx = integrate.quad(lambda x: data(x) * (1 - r_o(x)) * x, *lim, epsabs=1e-13)[0]
    assert abs(new.weight_old - e_r) < 1e-9
    assert abs(new.mean_old[0] - e_rx / e_r) < 1e-8
    assert abs(new.mean_new[0] - e_nx / (1 - e_r)) < 1e-8
    del target


def _fixed_point_configs() -> list[SimulationConfig]:
    common = {"steps": 300, "stride": 10, "learning_rate": 2.0,
              "problem": {"separation": 5.0, "alpha": 0.5, "beta0": 0.5}}
    return [SimulationConfig(method="sft", knobs={"replay": "old", "replay_fraction": lam},
                             **common) for lam in (0.1, 0.3, 0.6)]


def test_old_data_replay_reaches_lambda_a_b() -> None:
    """C6: the optimum of E_{lambda p_old + (1-lambda) p_new}[-log q] is (lambda, a, b)."""
    traj = simulate(_fixed_point_configs())
    np.testing.assert_allclose(traj.weight_old[:, 0, -1], [0.1, 0.3, 0.6], atol=1e-6)
    np.testing.assert_allclose(traj.mean_old[:, 0, -1, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(traj.mean_new[:, 0, -1, 0], 5.0, atol=1e-5)


def test_forward_kl_on_new_data_drains_the_old_weight() -> None:
    """C2: beta decreases monotonically toward 0 (population, logit gradient descent)."""
    cfg = SimulationConfig(method="sft", steps=400, stride=10, learning_rate=2.0,
                           problem={"separation": 4.0, "beta0": 0.5,
                                    "learner_new_mean": [4.0]})
    beta = simulate(cfg).weight_old[0, 0]
    assert np.all(np.diff(beta) < 0)
    assert beta[-1] < 0.05 * beta[0]


def test_frozen_initial_replay_fixed_point_is_stationary() -> None:
    """C6 (R = q_0): at the fixed point reached by the loop, the cross-entropy gradient computed
    independently by adaptive quadrature in d = 1 vanishes; retained mass is near lambda beta_0."""
    lam, sep, beta0, start = 0.4, 6.0, 0.6, 5.5
    cfg = SimulationConfig(method="sft", knobs={"replay": "initial", "replay_fraction": lam},
                           steps=300, stride=50, learning_rate=2.0,
                           problem={"separation": sep, "beta0": beta0,
                                    "learner_new_mean": [start]})
    traj = simulate(cfg)
    beta, m_o, m_n = (traj.weight_old[0, 0, -1], traj.mean_old[0, 0, -1, 0],
                      traj.mean_new[0, 0, -1, 0])

    def data(x: float) -> float:
        q0 = beta0 * stats.norm.pdf(x) + (1 - beta0) * stats.norm.pdf(x, start)
        return lam * q0 + (1 - lam) * stats.norm.pdf(x, sep)

    def parts(x: float) -> tuple[float, float, float]:
        p_o, p_n = stats.norm.pdf(x, m_o), stats.norm.pdf(x, m_n)
        q = beta * p_o + (1 - beta) * p_n
        return (p_o - p_n) / q, beta * p_o / q * (x - m_o), (1 - beta) * p_n / q * (x - m_n)

    grads = [integrate.quad(lambda x, k=k: data(x) * parts(x)[k], -12, 20, epsabs=1e-12,
                            limit=200)[0] for k in range(3)]
    assert np.max(np.abs(grads)) < 1e-6, grads
    assert abs(beta - lam * beta0) < 1e-3
