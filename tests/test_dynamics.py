"""The training loop: reproducibility, batching invariance, coordinates, optimisers, recording,
divergence detection and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab import population, simulate
from forgetlab.dynamics import Optimiser, coordinate_gradient
from forgetlab.methods import list_methods, make_method
from forgetlab.methods.base import Problem
from forgetlab.mixture import MixtureParams, TwoModeMixture
from forgetlab.simconfig import SimulationConfig, load_config


def _finite(seed: int, lam: float = 0.3, **extra: object) -> SimulationConfig:
    return SimulationConfig(method="sft", regime="finite", steps=30, stride=10, seeds=3,
                            batch_size=16, learning_rate=0.1, seed=seed,
                            knobs={"replay": "old", "replay_fraction": lam}, **extra)


def test_same_seed_same_numbers_and_batching_invariance() -> None:
    configs = [_finite(7, 0.1), _finite(7, 0.4), _finite(9, 0.2), _finite(7, 0.6)]
    together = simulate(configs)
    again = simulate(configs)
    np.testing.assert_array_equal(together.weight_old, again.weight_old)
    first = simulate(configs[:2], config_ids=[0, 1])
    second = simulate(configs[2:], config_ids=[2, 3])
    np.testing.assert_array_equal(together.weight_old[:2], first.weight_old)
    np.testing.assert_array_equal(together.mean_new[2:], second.mean_new)
    alone = simulate(configs[3], config_ids=[3])
    np.testing.assert_array_equal(together.mean_old[3], alone.mean_old[0])
    assert not np.array_equal(together.weight_old[0, 0], together.weight_old[0, 1])
    assert not np.array_equal(together.weight_old[0], together.weight_old[1])


def test_more_seeds_keep_the_first_seeds() -> None:
    few = simulate(_finite(4))
    many = simulate(_finite(4).with_updates(seeds=5))
    np.testing.assert_array_equal(few.weight_old, many.weight_old[:, :3])


def test_logit_chain_rule_matches_finite_differences() -> None:
    """dL/deta from the loop's chain rule against central differences of KL(q || p*)."""
    cov = np.array([[1.0, 0.2], [0.2, 0.6]])
    target = TwoModeMixture(0.3, [0.0, 0.0], [2.0, 1.0], cov)
    beta, m_o, m_n = 0.55, np.array([0.2, -0.1]), np.array([1.5, 0.4])
    params = MixtureParams(np.array(beta), m_o, m_n)
    grad = population.reverse_kl_gradient(TwoModeMixture(beta, m_o, m_n, cov), target)
    g_eta = coordinate_gradient(grad, params, "logit").weight_old
    eta, h = np.log(beta / (1 - beta)), 1e-5

    def loss(e: float) -> float:
        b = 1 / (1 + np.exp(-e))
        return float(population.kl_divergence(TwoModeMixture(b, m_o, m_n, cov), target))

    assert abs(g_eta - (loss(eta + h) - loss(eta - h)) / (2 * h)) < 1e-7
    assert coordinate_gradient(grad, params, "raw") is grad


def test_adam_first_step_moves_by_the_learning_rate() -> None:
    coords = MixtureParams(np.zeros((1, 2)), np.zeros((1, 2, 1)), np.zeros((1, 2, 1)))
    grad = MixtureParams(np.array([[3.0, -0.01]]), np.full((1, 2, 1), 5.0),
                         np.full((1, 2, 1), -2.0))
    rates = MixtureParams(np.array([[0.1]]), np.array([[0.2]]), np.array([[0.3]]))
    descent = Optimiser("adam", rates).descent()
    assert descent is not None
    out = MixtureParams(*descent.update(coords, grad, descent.init(coords))[0])
    np.testing.assert_allclose(out.weight_old, [[-0.1, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(out.mean_old, -0.2, rtol=1e-6)
    np.testing.assert_allclose(out.mean_new, 0.3, rtol=1e-6)


def test_adam_and_em_reach_the_replay_fixed_point() -> None:
    base = {"method": "sft", "steps": 200, "stride": 50,
            "knobs": {"replay": "old", "replay_fraction": 0.25},
            "problem": {"separation": 5.0}}
    adam = simulate(SimulationConfig(optimizer="adam", learning_rate=0.05, **base))
    em = simulate(SimulationConfig(optimizer="em", **base))
    for traj in (adam, em):
        assert abs(traj.weight_old[0, 0, -1] - 0.25) < 1e-3
        assert abs(traj.mean_new[0, 0, -1, 0] - 5.0) < 1e-2


def test_group_learning_rates_freeze_a_group() -> None:
    cfg = SimulationConfig(method="rl", steps=20, stride=10, learning_rate=0.5,
                           lr_scale={"weight": 0.0, "mean_old": 1.0, "mean_new": 1.0},
                           problem={"alpha": 0.3, "beta0": 0.6})
    traj = simulate(cfg)
    np.testing.assert_array_equal(traj.weight_old, 0.6)
    assert traj.mean_new[0, 0, -1, 0] != traj.mean_new[0, 0, 0, 0]


def test_raw_weight_coordinate_with_clipping() -> None:
    cfg = SimulationConfig(method="sft", steps=50, stride=10, learning_rate=0.5,
                           weight_coordinate="raw", weight_clip=1e-3)
    traj = simulate(cfg)
    assert traj.divergences == []
    assert traj.weight_old.min() >= 1e-3
    assert traj.weight_old[0, 0, -1] == pytest.approx(1e-3)


def test_divergence_is_detected_and_reported() -> None:
    configs = [SimulationConfig(method="rl", steps=40, stride=5, learning_rate=lr,
                                problem={"alpha": 0.3, "beta0": 0.6})
               for lr in (0.5, 50.0)]
    traj = simulate(configs)
    assert [(c, s) for c, s, _ in traj.divergences] == [(1, 0)]
    step = traj.divergences[0][2]
    assert 1 <= step <= 40
    for path in (traj.weight_old, traj.mean_old, traj.mean_new, *traj.metrics.values()):
        assert np.all(np.isfinite(path))
    frame = traj.to_dataframe()
    assert frame.loc[frame.config == 1, "diverged"].any()
    assert not frame.loc[frame.config == 0, "diverged"].any()


def test_trajectory_shapes_dataframe_and_running_extremes() -> None:
    traj = simulate(_finite(1).with_updates(steps=25, stride=10))
    assert traj.shape == (1, 3, 4)
    np.testing.assert_array_equal(traj.steps, [0, 10, 20, 25])
    assert traj.mean_old.shape == (1, 3, 4, 1)
    frame = traj.to_dataframe()
    assert len(frame) == 12
    assert {"weight_old", "drift", "drift_sup", "kl_reverse", "kl_forward", "eps_q",
            "new_mode_error", "starved", "max_weight", "mean_old_0"} <= set(frame.columns)
    assert np.all(traj.drift_sup >= traj.drift - 1e-15)
    assert np.all(np.diff(traj.drift_sup, axis=-1) >= 0)
    assert np.all(traj.weight_min <= traj.weight_old + 1e-15)
    expected = np.linalg.norm((traj.mean_old - traj.target_mean_old)[..., 0:1], axis=-1)
    np.testing.assert_allclose(traj.drift, expected, atol=1e-12)
    summary = traj.summary()
    assert summary.loc[0, "drift_worst"] >= summary.loc[0, "drift_final"]


def test_population_runs_have_one_deterministic_seed() -> None:
    cfg = SimulationConfig(method="sft", steps=10, stride=5, seeds=4)
    a, b = simulate(cfg), simulate(cfg)
    assert a.shape[1] == 1
    np.testing.assert_array_equal(a.weight_old, b.weight_old)


@pytest.mark.parametrize("data,match", [
    ({"method": "nope"}, "unknown method 'nope'; allowed: .*sft"),
    ({"method": "sft", "knobs": {"lambda": 0.3}}, "unknown knob 'lambda' for method 'sft'; "
     "allowed: replay, replay_fraction"),
    ({"method": "sft", "knobs": {"replay_fraction": 1.0}}, r"replay_fraction must lie in \[0, 1\)"),
    ({"method": "sft", "knobs": {"replay_fraction": -0.1}}, "replay_fraction"),
    ({"method": "replay-rl", "knobs": {"replay_fraction": 1.0}}, "replay_fraction"),
    ({"method": "sft", "knobs": {"replay": "future"}}, "replay must be one of"),
    ({"method": "sft", "batch_size": -4}, "batch_size"),
    ({"method": "sft", "batch_size": 0}, "batch_size"),
    ({"method": "sft", "optimizer": "sgd"}, "optimizer"),
    ({"method": "sft", "problem": {"alpha": 1.0}}, "alpha"),
    ({"method": "sft", "steps": 10, "colour": "red"}, "colour"),
    ({"method": "sft", "problem": {"dim": 2, "cov": [[1.0, 2.0], [2.0, 1.0]]}},
     "problem.cov must be positive definite"),
])
def test_bad_configurations_raise_value_errors(data: dict, match: str) -> None:
    from forgetlab.simconfig import parse_config

    with pytest.raises(ValueError, match=match):
        parse_config(data)


def test_bad_inputs_elsewhere() -> None:
    target = TwoModeMixture(0.5, [0.0], [3.0])
    with pytest.raises(ValueError, match="batch_size must be an integer > 0"):
        Problem(target, target, batch_size=-1)
    with pytest.raises(ValueError, match="knob 'replay' must be equal"):
        simulate([SimulationConfig(method="sft", steps=2),
                  SimulationConfig(method="sft", steps=2, knobs={"replay": "old"})])
    with pytest.raises(ValueError, match="method must be equal"):
        simulate([SimulationConfig(method="sft", steps=2), SimulationConfig(method="rl", steps=2)])
    with pytest.raises(ValueError, match="optimizer 'em' is not available for method 'rl'"):
        simulate(SimulationConfig(method="rl", steps=2, optimizer="em"))
    with pytest.raises(ValueError, match="not found"):
        load_config("missing-config.toml")
    assert {"sft", "rl", "replay_rl"} <= set(list_methods())
    assert make_method("sft").knob("replay") == "none"


def test_toml_round_trip(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('method = "sft"\nsteps = 12\nstride = 4\n[knobs]\nreplay = "old"\n'
                    'replay_fraction = 0.2\n[problem]\ndim = 2\nseparation = 3.0\n')
    cfg = load_config(path)
    assert cfg.knobs == {"replay": "old", "replay_fraction": 0.2}
    traj = simulate(cfg)
    assert traj.mean_old.shape == (1, 1, 4, 2)
    np.testing.assert_allclose(np.linalg.norm(traj.target_mean_new[0, 0, 0]), 3.0)


def test_exact_metrics_can_be_switched_off() -> None:
    on = simulate(_finite(2))
    off = simulate(_finite(2).with_updates(exact_metrics=False))
    np.testing.assert_array_equal(on.weight_old, off.weight_old)
    assert "kl_reverse" in on.metrics and "kl_reverse" not in off.metrics
    np.testing.assert_array_equal(on.drift_sup, off.drift_sup)


def test_sample_batch_matches_the_mixture() -> None:
    """The fused whitened evaluation equals TwoModeMixture.log_prob and .scores."""
    from forgetlab.methods.base import SampleBatch

    rng = np.random.default_rng(3)
    cov = np.array([[1.3, -0.4], [-0.4, 0.6]])
    mix = TwoModeMixture(rng.uniform(0.05, 0.95, (2, 3)), rng.normal(size=(2, 3, 2)),
                         rng.normal(size=(2, 3, 2)), cov)
    x = rng.normal(size=(2, 3, 7, 2)) * 2
    coef = rng.normal(size=(2, 3, 7))
    batch = SampleBatch(x, mix.factor)
    np.testing.assert_allclose(batch.log_prob(mix)[0], mix.log_prob(x), rtol=1e-12)
    s = mix.scores(x)
    fused = batch.score_mean(mix, coef)
    np.testing.assert_allclose(fused.weight_old, np.mean(coef * s.weight_old, -1), rtol=1e-10)
    np.testing.assert_allclose(fused.mean_old, np.mean(coef[..., None] * s.mean_old, -2),
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fused.mean_new, np.mean(coef[..., None] * s.mean_new, -2),
                               rtol=1e-10, atol=1e-13)


def test_drop_and_gain_are_recorded() -> None:
    traj = simulate(SimulationConfig(method="sft", steps=40, stride=10, learning_rate=1.0))
    np.testing.assert_array_equal(traj.drop[..., 0], 0.0)
    assert np.all(np.diff(traj.drop[0, 0]) > 0)
    assert np.all(np.diff(traj.gain[0, 0]) >= 0) and traj.gain[0, 0, -1] > 0.5
    assert traj.acc_old[0, 0, 0] == pytest.approx(1.0)


def test_batch_key_groups_compatible_configurations() -> None:
    from forgetlab.dynamics import batch_key

    a = SimulationConfig(method="rl", regime="finite", knobs={"tau": 0.5, "group_size": 2})
    assert batch_key(a) == batch_key(a.with_updates(knobs={"tau": 0.9}, learning_rate=0.3,
                                                    problem={"separation": 2.0}))
    assert batch_key(a) != batch_key(a.with_updates(knobs={"group_size": 4}))
    assert batch_key(a) != batch_key(a.with_updates(exact_metrics=False))


def test_batch_key_of_resolved_configurations_groups_as_the_validated_ones() -> None:
    """The sweep's group key reads a resolved configuration as data; it must split and merge
    exactly where the key of the validated configuration does."""
    from forgetlab.dynamics import batch_key
    from forgetlab.sweep.engine import DynamicsRunner

    runner = DynamicsRunner()
    a = SimulationConfig(method="rl", regime="finite", knobs={"tau": 0.5, "group_size": 2})
    variants = [a, a.with_updates(knobs={"tau": 0.9}, learning_rate=0.3),
                a.with_updates(knobs={"group_size": 4}), a.with_updates(exact_metrics=False),
                a.with_updates(problem={"dim": 3}), a.with_updates(batch_size=32),
                SimulationConfig(method="sft", regime="finite"), a.with_updates(steps=7),
                a.with_updates(knobs={"reward": "verifiable"})]
    resolved = [runner.resolve(v.model_dump(mode="json", exclude={"seeds"})) for v in variants]
    for i, (vi, ri) in enumerate(zip(variants, resolved, strict=True)):
        for vj, rj in zip(variants[i:], resolved[i:], strict=True):
            assert (batch_key(vi) == batch_key(vj)) == (batch_key(ri) == batch_key(rj))
    assert sum(batch_key(resolved[0]) == batch_key(r) for r in resolved) == 2


def test_finite_batch_em_fluctuates_around_the_replay_fixed_point() -> None:
    """EM on minibatches of D_lambda: beta_t is a batch fraction of old-looking draws, so the
    seed spread is about sqrt(lambda (1 - lambda) / B) around lambda."""
    lam, batch, seeds = 0.3, 2000, 12
    cfg = SimulationConfig(method="sft", regime="finite", optimizer="em", steps=15, stride=5,
                           batch_size=batch, seeds=seeds,
                           knobs={"replay": "old", "replay_fraction": lam},
                           problem={"separation": 5.0})
    beta = simulate(cfg).weight_old[0, :, -1]
    sd = np.sqrt(lam * (1 - lam) / batch)
    assert abs(beta.mean() - lam) <= 4 * sd / np.sqrt(seeds)
    assert 0.4 * sd < beta.std(ddof=1) < 2.0 * sd


@pytest.mark.parametrize("method", list_methods())
def test_seed_slices_and_threads_give_the_same_numbers(method: str, monkeypatch) -> None:
    """Finite-batch gradients are computed over slices of seeds, shared by threads: the
    result must not change with the slicing (to rounding) nor with the threads (bit for bit:
    every run draws from its own generator)."""
    import forgetlab.dynamics as dyn

    if "finite" not in make_method(method).regimes:
        pytest.skip(f"{method} has no finite-batch regime")
    cfg = SimulationConfig(method=method, regime="finite", steps=4, stride=2, seeds=5,
                           batch_size=40, learning_rate=0.05)
    whole = simulate(cfg)
    monkeypatch.setattr(dyn, "CACHE_ELEMENTS", 80)  # two seeds per slice, three slices
    sliced = simulate(cfg)
    np.testing.assert_allclose(sliced.weight_old, whole.weight_old, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sliced.mean_new, whole.mean_new, rtol=1e-13, atol=1e-15)
    for threads in (2, 3):
        many = simulate(cfg, threads=threads)
        for name in ("weight_old", "mean_old", "mean_new", "diverged_step"):
            np.testing.assert_array_equal(getattr(many, name), getattr(sliced, name),
                                          err_msg=name)
        assert many.metrics.keys() == sliced.metrics.keys()
        for key, value in sliced.metrics.items():
            np.testing.assert_array_equal(many.metrics[key], value, err_msg=key)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_threads_must_be_a_positive_integer(threads) -> None:
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        simulate(SimulationConfig(), threads=threads)
