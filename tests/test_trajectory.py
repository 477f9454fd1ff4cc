"""Recording: the recorded steps, the streaming recorder and the trajectory's views, on a run
driven by hand in d = 1 (Sigma = 1, a = 0, so the drift is |m_o|) whose expected records are
written out below."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab.metrics import EXACT_FIELDS
from forgetlab.mixture import TwoModeMixture
from forgetlab.trajectory import Recorder, Trajectory, record_steps

# Two seeds, steps 0..5, stride 2: recorded at 0, 2, 4, 5. Seed 1 is inactive at step 3 (its
# values there must not enter the running extremes or the counters).
MEAN_OLD = np.array([[0.0, 2.0, 1.0, 0.5, 3.0, 0.2], [0.0, -1.0, -4.0, -10.0, 0.0, 0.0]])
WEIGHT = np.array([[0.5, 0.4, 0.45, 0.2, 0.3, 0.35], [0.5, 0.6, 0.7, 0.01, 0.9, 0.1]])
ACTIVE = np.array([[True] * 5, [True, True, False, True, True]])  # steps 1..5
STARVED = np.array([[1, 0, 1, 1, 0], [1, 1, 5, 0, 1]], dtype=float)
MAX_WEIGHT = np.array([[1.5, 2.0, 1.2, 1.1, 3.0], [1.0, 1.0, 9.0, 1.3, 1.0]])
LOSS = np.array([[1.0, 3.0, 5.0, 7.0, 9.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
TARGET = TwoModeMixture(np.array([[0.4]]), np.array([[[0.0]]]), np.array([[[3.0]]]))


def _learner(t: int) -> TwoModeMixture:
    return TwoModeMixture(WEIGHT[None, :, t], MEAN_OLD[None, :, t, None], 3.0)


def _drive(exact: bool = False) -> Recorder:
    rec = Recorder((1, 2), 1, steps=5, stride=2, exact_metrics=exact)
    rec.record(_learner(0), TARGET)
    for t in range(1, 6):
        diag = {"starved": STARVED[None, :, t - 1], "max_weight": MAX_WEIGHT[None, :, t - 1],
                "loss": LOSS[None, :, t - 1]}
        rec.observe(_learner(t), TARGET, diag, ACTIVE[None, :, t - 1])
        if t in (2, 4, 5):
            rec.record(_learner(t), TARGET)
    return rec


@pytest.mark.parametrize("steps,stride,expected", [(10, 3, [0, 3, 6, 9, 10]), (9, 3, [0, 3, 6, 9]),
                                                    (5, 10, [0, 5]), (4, 1, [0, 1, 2, 3, 4]),
                                                    (0, 1, [0])])
def test_record_steps(steps: int, stride: int, expected: list[int]) -> None:
    np.testing.assert_array_equal(record_steps(steps, stride), expected)


def test_recorder_keeps_running_extremes_and_interval_counters() -> None:
    rec = _drive()
    np.testing.assert_array_equal(rec.steps, [0, 2, 4, 5])
    m = rec.metrics
    np.testing.assert_allclose(m["drift"][0], np.abs(MEAN_OLD[:, [0, 2, 4, 5]]), rtol=1e-14)
    np.testing.assert_allclose(m["drift_sup"][0], [[0, 2, 3, 3], [0, 4, 4, 4]], rtol=1e-14)
    np.testing.assert_allclose(m["weight_min"][0], [[0.5, 0.4, 0.2, 0.2], [0.5, 0.5, 0.5, 0.1]])
    np.testing.assert_array_equal(m["starved"][0], [[0, 1, 2, 0], [0, 2, 0, 1]])
    np.testing.assert_array_equal(m["max_weight"][0], [[1, 2, 1.2, 3], [1, 1, 1.3, 1]])
    np.testing.assert_allclose(rec.diagnostics["loss"][0], [[0, 2, 6, 9], [0, 2, 2, 2]])
    np.testing.assert_array_equal(rec.weight_old[0], WEIGHT[:, [0, 2, 4, 5]])
    params = rec.params()
    np.testing.assert_array_equal(params.mean_old[0, ..., 0], MEAN_OLD[:, [0, 2, 4, 5]])
    np.testing.assert_array_equal(params.mean_new, 3.0)
    np.testing.assert_array_equal(m["new_mode_error"], 0.0)
    assert not set(EXACT_FIELDS) & set(m)
    assert set(EXACT_FIELDS) <= set(_drive(exact=True).metrics)


def test_recorder_memory_does_not_grow_with_unrecorded_steps() -> None:
    short = Recorder((4, 8), 2, steps=100, stride=50)
    long = Recorder((4, 8), 2, steps=100_000, stride=50_000)
    size = lambda r: sum(a.nbytes for a in (r.weight_old, r.mean_old, r.mean_new,  # noqa: E731
                                              *r.metrics.values()))
    assert len(short.steps) == len(long.steps) == 3
    assert size(short) == size(long)


def _trajectory() -> Trajectory:
    rec = _drive()
    acc = np.array([[[1.0, 0.9, 0.7, 0.6], [0.8, 0.8, 0.5, 0.4]]])
    gain = np.array([[[0.1, 0.3, 0.6, 0.9], [0.2, 0.2, 0.5, 0.7]]])
    return Trajectory(steps=rec.steps, weight_old=rec.weight_old, mean_old=rec.mean_old,
                      mean_new=rec.mean_new,
                      metrics={**rec.metrics, "acc_old": acc, "acc_new": gain,
                               **rec.diagnostics},
                      diverged_step=np.array([[-1, 4]]), target_mean_old=np.zeros((1, 1, 1, 1)),
                      target_mean_new=np.full((1, 1, 1, 1), 3.0), cov=np.ones((1, 1, 1, 1, 1)),
                      beta0=np.array([0.5]), alpha=np.array([0.4]))


def test_trajectory_views() -> None:
    traj = _trajectory()
    assert traj.shape == (1, 2, 4)
    assert traj.divergences == [(0, 1, 4)]
    np.testing.assert_allclose(traj.drop, [[[0, 0.1, 0.3, 0.4], [0, 0, 0.3, 0.4]]], atol=1e-15)
    np.testing.assert_allclose(traj.gain, [[[0, 0.2, 0.5, 0.8], [0, 0, 0.3, 0.5]]], atol=1e-15)
    np.testing.assert_array_equal(traj.drift_sup, traj.metrics["drift_sup"])
    with pytest.raises(AttributeError, match="no_such_measure"):
        _ = traj.no_such_measure
    table = traj.summary()
    assert table.loc[0, "beta_final"] == pytest.approx((0.35 + 0.1) / 2)
    assert table.loc[0, "beta_worst"] == pytest.approx(0.1)
    assert table.loc[0, "drift_final"] == pytest.approx((0.2 + 0.0) / 2)
    assert table.loc[0, "drift_worst"] == pytest.approx(4.0)
    assert table.loc[0, "mass_ratio_alpha"] == pytest.approx(0.225 / 0.4)


def test_trajectory_dataframe_is_long_and_flags_divergence_from_its_step_on() -> None:
    frame = _trajectory().to_dataframe()
    assert len(frame) == 8
    assert frame["seed"].tolist() == [0] * 4 + [1] * 4
    assert frame["step"].tolist() == [0, 2, 4, 5] * 2
    assert frame["diverged"].tolist() == [False] * 4 + [False, False, True, True]
    np.testing.assert_array_equal(frame["mean_old_0"], MEAN_OLD[:, [0, 2, 4, 5]].ravel())
    np.testing.assert_array_equal(frame["loss"], [0, 2, 6, 9, 0, 2, 2, 2])
    np.testing.assert_array_equal(frame["weight_old"], WEIGHT[:, [0, 2, 4, 5]].ravel())
