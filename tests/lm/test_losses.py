"""Losses and advantages against direct computations in float64 numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from forgetlab.lm import losses as L  # noqa: E402

pytestmark = pytest.mark.lm


def _logits(seed: int, shape=(3, 4, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(-1)


def test_token_cross_entropy_masked_mean() -> None:
    logits = _logits(0)
    targets = torch.randint(0, 6, (3, 4), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    p = _softmax(logits.numpy())
    nll = -np.log(np.take_along_axis(p, targets.numpy()[..., None], -1))[..., 0]
    expected = nll[mask.numpy()].mean()
    assert abs(float(L.token_cross_entropy(logits, targets, mask)) - expected) < 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_generalized_jsd_matches_definition(beta: float) -> None:
    s_logits, t_logits = _logits(2), _logits(3)
    s, t = _softmax(s_logits.numpy()), _softmax(t_logits.numpy())
    if beta == 0.0:
        expected = _kl(t, s)  # forward KL(teacher || student)
    elif beta == 1.0:
        expected = _kl(s, t)  # reverse KL(student || teacher)
    else:
        m = beta * t + (1 - beta) * s
        expected = beta * _kl(t, m) + (1 - beta) * _kl(s, m)
    got = L.generalized_jsd(s_logits, t_logits, beta)
    assert abs(float(got) - expected.mean()) < 1e-6


def test_generalized_jsd_limits_are_the_two_kls() -> None:
    s_logits, t_logits = 2 * _logits(4), 2 * _logits(5)
    fwd = float(L.generalized_jsd(s_logits, t_logits, 0.0))
    rev = float(L.generalized_jsd(s_logits, t_logits, 1.0))
    assert abs(fwd - rev) > 0.05  # the two directions differ here
    eps = 1e-4
    near0 = float(L.generalized_jsd(s_logits, t_logits, eps)) / (eps * (1 - eps))
    near1 = float(L.generalized_jsd(s_logits, t_logits, 1 - eps)) / (eps * (1 - eps))
    assert abs(near0 - fwd) < 2e-3 * fwd
    assert abs(near1 - rev) < 2e-3 * rev


def test_generalized_jsd_rejects_bad_beta() -> None:
    with pytest.raises(ValueError, match="beta"):
        L.generalized_jsd(_logits(0), _logits(1), 1.5)


def test_grpo_advantages_zero_mean_unit_std() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0.2, 0.7, -1.0, 3.0, 0.0], [1.0] * 5])
    a = L.grpo_advantages(r)
    assert torch.allclose(a[:2].mean(-1), torch.zeros(2), atol=1e-7)
    assert torch.allclose(a[:2].std(-1, correction=0), torch.ones(2), atol=1e-6)
    assert torch.equal(a[2], torch.zeros(5))
    row = r[1].numpy()
    assert np.allclose(a[1].numpy(), (row - row.mean()) / (row.std() + 1e-8), atol=1e-6)


def test_entropic_loo_advantages_direct() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.3, 0.3, 0.9, 0.1]], dtype=torch.float64)
    gamma = torch.tensor([2.0, 0.7], dtype=torch.float64)
    a = L.entropic_loo_advantages(r, gamma)
    for b in range(2):
        e = np.exp(gamma[b].item() * r[b].numpy())  # the max shift cancels in the ratio
        for i in range(4):
            others = np.delete(e, i)
            assert abs(a[b, i].item() - (e[i] / others.mean() - 1)) < 1e-12
    assert torch.allclose(L.entropic_loo_advantages(r, 0.0), torch.zeros_like(r))


def test_adaptive_gamma_ln2_rule() -> None:
    r = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0.1, 0.5, 0.2, 0.9, 0, 0, 0.3, 0.4],
                      [1.0, 1, 1, 1, 1, 0, 0, 0], [1.0] * 8], dtype=torch.float64)
    g = L.adaptive_gamma(r, gamma_max=10.0)
    for b in range(2):
        w = _softmax(g[b].item() * r[b].numpy())
        assert abs(float((w * np.log(8 * w)).sum()) - math.log(2)) < 1e-8
    # five winners of eight: KL to uniform is at most log(8/5) < ln 2 -> the cap (spread 1);
    # equal rewards: gamma does not matter (every advantage is 0), the rule returns 0
    assert g[2].item() == 10.0 and g[3].item() == 0.0


def test_oapl_loss_direct_and_zero_at_optimum() -> None:
    gen = torch.Generator().manual_seed(6)
    r = torch.randint(0, 2, (3, 5), generator=gen).double()
    lag = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    cur = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    tau = 0.7
    v = tau * np.log(np.exp(r.numpy() / tau).mean(-1, keepdims=True))
    expected = (((tau * (cur - lag)).numpy() - (r.numpy() - v)) ** 2).sum(-1).mean()
    assert abs(float(L.oapl_loss(cur, lag, r, tau)) - expected) < 1e-10
    optimum = lag + (r - torch.as_tensor(v)) / tau  # log pi = log pi_lag + (r - V)/tau
    assert float(L.oapl_loss(optimum, lag, r, tau)) < 1e-20


def test_token_kl_and_penalty() -> None:
    p, q = _logits(7).log_softmax(-1), _logits(8).log_softmax(-1)
    direct = _kl(p.exp().numpy(), q.exp().numpy())
    assert np.allclose(L.token_kl(p, q).numpy(), direct, atol=1e-12)
    zero_p = torch.tensor([0.0, float("-inf")]), torch.tensor([-0.5, float("-inf")])
    assert torch.isfinite(L.token_kl(*zero_p))
    a, b = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    assert abs(float(L.squared_log_ratio_penalty(a, b)) - (0.125 + 0.5) / 2) < 1e-7
