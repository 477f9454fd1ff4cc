"""The one optimiser loop: gd and Adam against hand-written updates, projection, fixed-point maps,
and the divergence stop."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlab.optim import Descent, descend, hold

RATES = (np.array([[0.1], [0.3]]), np.array([[[0.2]], [[0.05]]]))
PARAMS = (np.array([[0.5, -1.0], [2.0, 0.0]]), np.arange(8.0).reshape(2, 2, 2))


def _grads(k: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed gradient sequence, different at every step and of both signs."""
    return (np.array([[3.0, -0.01], [0.4, 7.0]]) * (-1.5) ** k,
            np.sin(np.arange(8.0) + k).reshape(2, 2, 2))


def test_gd_update_is_theta_minus_rate_times_gradient() -> None:
    descent = Descent(RATES)
    state = descent.init(PARAMS)
    new, state = descent.update(PARAMS, _grads(0), state)
    assert state is None
    for p, s, g, n in zip(PARAMS, RATES, _grads(0), new, strict=True):
        np.testing.assert_array_equal(n, p - s * g)


def test_adam_matches_the_bias_corrected_formula_step_by_step() -> None:
    b1, b2, eps = 0.8, 0.95, 1e-6
    descent = Descent(RATES, "adam", b1, b2, eps)
    params, state = PARAMS, descent.init(PARAMS)
    want = [p.copy() for p in PARAMS]
    m = [np.zeros_like(p) for p in PARAMS]
    v = [np.zeros_like(p) for p in PARAMS]
    for t in range(1, 5):
        grads = _grads(t)
        params, state = descent.update(params, grads, state)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            want[i] = want[i] - RATES[i] * m_hat / (np.sqrt(v_hat) + eps)
            np.testing.assert_allclose(params[i], want[i], rtol=1e-13, atol=1e-15)
    assert state is not None and state.steps_taken == 4


def test_adam_first_step_moves_each_entry_by_its_rate() -> None:
    # m_hat = g and v_hat = g^2 after one step, so the move is s sign(g) (up to eps).
    descent = Descent(RATES, "adam")
    new, _ = descent.update(PARAMS, _grads(0), descent.init(PARAMS))
    for p, s, g, n in zip(PARAMS, RATES, _grads(0), new, strict=True):
        np.testing.assert_allclose(n - p, -s * np.sign(g), rtol=1e-5)


def test_unknown_descent_is_refused() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        Descent(RATES, "sgd-momentum")


def _sane(params: tuple[np.ndarray, ...], coords: tuple[np.ndarray, ...]) -> np.ndarray:
    return np.isfinite(params[0]).all(axis=-1)


def test_descend_stops_a_diverging_run_at_its_last_sane_values() -> None:
    # Run 0 gets a NaN gradient at step index 2 (its third update) and finite ones after: it
    # stays stopped at the values after two steps, also when run 1 fails in turn (index 4).
    seen: list[np.ndarray] = []

    def direction(t: int, coords: tuple[np.ndarray, ...], params: tuple[np.ndarray, ...]
                  ) -> tuple[np.ndarray]:
        g = np.ones((2, 3))
        if t in (2, 4):
            g[t // 2 - 1, 1] = np.nan
        return (g,)

    start = (np.zeros((2, 3)),)
    path: list[np.ndarray] = []
    diverged = descend(direction, start, start, 6, Descent((0.5,)), tuple, _sane,
                       lambda t, p, running: (path.append(p[0]), seen.append(running.copy())))
    np.testing.assert_array_equal(diverged, [3, 5])
    np.testing.assert_array_equal(path[-1][0], np.full(3, -1.0))
    np.testing.assert_array_equal(path[-1][1], np.full(3, -2.0))
    assert all(np.isfinite(p).all() for p in path)
    np.testing.assert_array_equal([r[0] for r in seen], [True, True, False, False, False, False])
    np.testing.assert_array_equal([r[1] for r in seen], [True, True, True, True, False, False])


def test_descend_projects_and_runs_fixed_point_maps() -> None:
    # No stepper: the direction is the next value (x <- x / 2 + 1, fixed point 2); the
    # projection caps it at 1.5.
    start = (np.array([10.0, -4.0]),)
    path: list[np.ndarray] = []
    descend(lambda t, c, p: (c[0] / 2 + 1,), start, start, 30, None, tuple,
            lambda p, c: np.isfinite(p[0]), lambda t, p, running: path.append(p[0]),
            lambda c: (np.minimum(c[0], 1.5),))
    np.testing.assert_allclose(path[-1], [1.5, 1.5])
    np.testing.assert_array_equal(path[0], [1.5, -1.0])


def test_hold_broadcasts_the_run_mask_over_trailing_axes() -> None:
    old = (np.zeros((2, 3)), np.zeros((2, 3, 4)))
    new = (np.ones((2, 3)), np.ones((2, 3, 4)))
    stopped = np.array([[True, False, False], [False, False, True]])
    out = hold(stopped, old, new)
    np.testing.assert_array_equal(out[0], ~stopped)
    np.testing.assert_array_equal(out[1], np.broadcast_to((~stopped)[..., None], (2, 3, 4)))
