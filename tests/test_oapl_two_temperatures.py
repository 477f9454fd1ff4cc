"""OAPL with tau_value != tau_ratio: the within-period optimum against the theory's statement.

Two independent sides: (1) the exact population loss E_{q_lag}[rho^2] on a finite outcome space,
minimised numerically over a softmax (no use of the derived condition), against
:func:`oapl_tilt_exponent` and the statement rho = c q / q_lag; (2) finite-batch OAPL on the
two-mode mixture over one synchronisation, against the old mass of the predicted tilt integrated
by quadrature.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, logit, logsumexp
from scipy.stats import norm

from forgetlab.claims import reference
from forgetlab.dynamics import simulate
from forgetlab.methods.oapl import oapl_residuals
from forgetlab.simconfig import SimulationConfig
from forgetlab.theory.near_policy import oapl_tilt_exponent


def _optimum(p_lag: np.ndarray, r: np.ndarray, tau_value: float, tau_ratio: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """log(q / q_lag) minimising the exact loss over all q on the outcomes, and its residuals."""
    log_lag = np.log(p_lag)
    value = tau_value * logsumexp(r / tau_value, b=p_lag)

    def loss(theta: np.ndarray) -> float:
        res = oapl_residuals(log_softmax(theta), log_lag, r, tau_ratio, value)
        return float(np.sum(p_lag * res**2))

    fit = minimize(loss, log_lag.copy(), method="BFGS", options={"gtol": 1e-12})
    log_q = log_softmax(fit.x)
    return log_q - log_lag, oapl_residuals(log_q, log_lag, r, tau_ratio, value)


@pytest.mark.parametrize(("tau_value", "tau_ratio"), [(1.0, 1.0), (0.5, 1.0), (2.0, 0.7),
                                                      (1.0, 0.25)])
def test_zero_one_reward_optimum_is_the_predicted_tilt(tau_value: float, tau_ratio: float
                                                       ) -> None:
    p_lag = np.array([0.1, 0.25, 0.15, 0.3, 0.2])
    r = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    g, _ = _optimum(p_lag, r, tau_value, tau_ratio)
    np.testing.assert_allclose(g[r == 1], g[0], atol=1e-6)  # q / q_lag depends on r alone
    np.testing.assert_allclose(g[r == 0], g[1], atol=1e-6)
    kappa = oapl_tilt_exponent(float(p_lag[r == 1].sum()), tau_value, tau_ratio)
    assert abs((g[0] - g[1]) - kappa) < 1e-5
    if tau_value == tau_ratio:
        assert abs(kappa - 1.0 / tau_ratio) < 1e-9
    else:  # the two temperatures move the exponent off 1 / tau_ratio, in the stated direction
        assert (kappa > 1.0 / tau_ratio) == (tau_value < tau_ratio)
        assert abs(kappa - 1.0 / tau_ratio) > 0.02


@pytest.mark.parametrize(("tau_value", "tau_ratio"), [(1.0, 1.0), (0.4, 1.0), (3.0, 1.5)])
def test_general_reward_residual_is_proportional_to_the_ratio(tau_value: float,
                                                             tau_ratio: float) -> None:
    rng = np.random.default_rng(3)
    p_lag = rng.dirichlet(np.ones(7))
    r = rng.normal(size=7)
    g, res = _optimum(p_lag, r, tau_value, tau_ratio)
    c = res / np.exp(g)
    np.testing.assert_allclose(c, c.mean(), atol=1e-5)
    assert abs(c.mean()) < 1e-6 if tau_value == tau_ratio else abs(c.mean()) > 1e-3


def test_mixture_oapl_follows_the_two_temperature_tilt() -> None:
    """d = 1, a 0/1 ball reward around b far from a; one synchronisation of a long period at
    G = 16 and 64 extrapolated to G = infinity (V_hat's bias is O(1/G)), 4 standard errors."""
    tau_value, tau_ratio, lag, seeds = 0.5, 2.0, 300, 60
    beta0, sep, radius = 0.5, 8.0, 4.0
    logs = {}
    for g in (16, 64):
        cfg = SimulationConfig(
            method="oapl", regime="finite", steps=lag, stride=lag, learning_rate=0.1,
            batch_size=64, seeds=seeds, exact_metrics=False,
            knobs={"tau_value": tau_value, "tau_ratio": tau_ratio, "lag": lag,
                   "group_size": g, "reward": "verifiable", "radius": radius},
            problem={"separation": sep, "beta0": beta0, "new_mean_start": 1.0})
        logs[g] = logit(simulate(cfg).weight_old[0, :, -1])
    extra = (64 * logs[64] - 16 * logs[16]) / 48
    se = np.sqrt((64 / 48) ** 2 * logs[64].var(ddof=1) + (16 / 48) ** 2 * logs[16].var(ddof=1))
    se /= np.sqrt(seeds)
    success = beta0 * (norm.cdf(sep + radius) - norm.cdf(sep - radius)) + (1 - beta0) * (
        norm.cdf(radius) - norm.cdf(-radius))
    kappa = oapl_tilt_exponent(success, tau_value, tau_ratio)

    def predicted(exponent: float) -> float:
        return reference.tilted_log_odds(
            beta0, 0.0, sep, lambda x: exponent * float(abs(x - sep) <= radius),
            (sep - radius, sep + radius))

    assert abs(extra.mean() - predicted(kappa)) <= 4 * se, (extra.mean(), predicted(kappa), se)
    assert abs(extra.mean() - predicted(1.0 / tau_ratio)) > 4 * se  # one temperature is off
