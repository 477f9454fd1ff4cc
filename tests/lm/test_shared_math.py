"""The torch losses against the one numpy reference of the methods layer (same name, same
function): entropic leave-one-out advantages, KL to uniform, adaptive gamma, GRPO
normalisation and OAPL's V_hat."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm import losses as L  # noqa: E402
from forgetlab.methods import oapl, rl, ttt_discover  # noqa: E402

pytestmark = pytest.mark.lm


def _groups() -> list[np.ndarray]:
    """Reward groups [B, G] that exercise every branch: continuous, 0/1 with one winner, many
    ties at the top (ln 2 unreachable: the cap), equal rewards, a wide spread."""
    rng = np.random.default_rng(0)
    return [rng.normal(size=(5, 8)), (rng.random((6, 8)) < 0.3).astype(float),
            np.array([[1.0, 1, 1, 1, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0, 0], [0.5] * 8,
                      [1.0, 1, 1, 1, 1, 1, 1, 0]]),
            100 * rng.normal(size=(3, 4)), rng.normal(size=(2, 2))]


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("case", range(5))
def test_adaptive_gamma_and_kl_to_uniform_match(case: int) -> None:
    r = _groups()[case]
    gamma_np = ttt_discover.adaptive_gamma(r)
    gamma_t = L.adaptive_gamma(_t(r))
    np.testing.assert_allclose(gamma_t.numpy(), gamma_np, rtol=1e-12, atol=0)
    np.testing.assert_allclose(L.kl_to_uniform(_t(r), _t(gamma_np)).numpy(),
                               ttt_discover.kl_to_uniform(r, gamma_np), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("gamma", [0.0, 0.7, 3.0, 900.0])
def test_entropic_loo_advantages_match(case: int, gamma: float) -> None:
    r = _groups()[case]
    np.testing.assert_allclose(L.entropic_loo_advantages(_t(r), gamma).numpy(),
                               ttt_discover.entropic_loo_advantages(r, gamma), rtol=1e-12,
                               atol=1e-12)


def test_entropic_loo_advantages_match_with_invalid_entries() -> None:
    r = np.random.default_rng(1).normal(size=(4, 6))
    valid = np.ones(r.shape, dtype=bool)
    valid[0, :2] = False
    valid[1, 1:] = False  # one valid draw: nothing to compare against, all zeros
    gamma = np.array([0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(
        L.entropic_loo_advantages(_t(r), _t(gamma), torch.as_tensor(valid)).numpy(),
        ttt_discover.entropic_loo_advantages(r, gamma, valid), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", range(5))
def test_grpo_advantages_match(case: int) -> None:
    r = _groups()[case]
    np.testing.assert_allclose(L.grpo_advantages(_t(r)).numpy(), rl.grpo_advantages(r),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", [0.05, 1.0, 7.0])
def test_group_value_and_oapl_loss_match(tau: float) -> None:
    rng = np.random.default_rng(2)
    r, cur, lag = rng.normal(size=(3, 3, 5))
    value = oapl.group_value(r, tau)
    np.testing.assert_allclose(L.group_value(_t(r), tau).numpy()[:, 0], value, rtol=1e-12)
    tau_ratio = 0.3
    res = oapl.oapl_residuals(cur, lag, r, tau_ratio, value[:, None])
    got = L.oapl_loss(_t(cur), _t(lag), _t(r), tau, tau_ratio)
    assert abs(float(got) - (res**2).sum(-1).mean()) < 1e-12
    same = L.oapl_loss(_t(cur), _t(lag), _t(r), tau)  # tau_ratio defaults to tau_value
    assert float(same) == float(L.oapl_loss(_t(cur), _t(lag), _t(r), tau, tau))
