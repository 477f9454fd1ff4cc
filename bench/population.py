"""Exact population gradients against Monte Carlo at 1e-3 relative error, in the same run.

For 10,000 random configurations (d = 2..10, a random covariance per configuration):

- exact: ``reverse_kl_gradient(q, p*)`` and ``forward_kl_gradient(q, p*)`` for the whole batch,
  timed; the time per configuration is the total divided by the number of configurations;
  and, since a caller with one configuration pays the per-call cost, the same gradients one
  configuration per call on ``SINGLE`` configurations of every dimension;
- Monte Carlo: the score-function estimator of the same gradients,
  reverse: mean_i s(x_i) (log q(x_i) - log p*(x_i) - b), x_i ~ q, b the batch mean;
  forward: -mean_i s(x_i), x_i ~ p*;
  its per-sample variance is measured on a pilot run for every configuration, giving the sample
  size for 1e-3 relative error, N = tr Cov(g) / (1e-3 ||grad||)^2, and the per-sample cost is
  timed on the same batch; the Monte Carlo time per configuration is N times that cost;
- a check of that extrapolation: a few configurations are actually run with their N samples
  and their error against the exact gradient is reported;
- the exact engine's own error, estimated by self-convergence: the same gradients recomputed
  with a much finer 1-D rule (40 uniform panels of 40 nodes, a denser kink grid) on the
  configurations of one dimension; the largest relative difference is reported.

Prints a table, then one JSON line with the ratios. A benchmark informs; it never fails.
"""

from __future__ import annotations

import json
import time

import numpy as np

from _results import append_result
from forgetlab import quadrature
from forgetlab.mixture import TwoModeMixture
from forgetlab.population import forward_kl_gradient, reverse_kl_gradient

N_CONFIGS = 10_000
DIMS = np.arange(2, 11)
TARGET = 1e-3
PILOT = 400  # pilot samples per configuration for the variance estimate
CHUNK = 500  # configurations per Monte Carlo block (bounds memory)
SINGLE = 20  # configurations per dimension timed one per call


def random_configs(d: int, n: int, rng: np.random.Generator) -> tuple[TwoModeMixture, ...]:
    """n learners and targets in dimension d with random covariances and separations."""
    a_mat = rng.normal(size=(n, d, d)) / np.sqrt(d)
    cov = a_mat @ np.swapaxes(a_mat, -1, -2) + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)

    def direction(scale: np.ndarray) -> np.ndarray:
        u = rng.normal(size=(n, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        return scale[:, None] * (chol @ u[..., None])[..., 0]

    a = rng.normal(size=(n, d)) * 2.0
    b = a + direction(rng.uniform(0.5, 8.0, n))
    m_o = a + direction(rng.uniform(0.0, 1.0, n))
    m_n = m_o + direction(rng.uniform(0.5, 8.0, n))
    q = TwoModeMixture(rng.uniform(0.05, 0.95, n), m_o, m_n, cov)
    p = TwoModeMixture(rng.uniform(0.1, 0.9, n), a, b, cov)
    return q, p


def flat(g) -> np.ndarray:
    """(weight, mean_old, mean_new) as one vector per configuration, ``[..., 1 + 2d]``."""
    return np.concatenate([g.weight_old[..., None], g.mean_old, g.mean_new], axis=-1)


def subset(mix: TwoModeMixture, sel) -> TwoModeMixture:
    return TwoModeMixture(mix.weight_old[sel], mix.mean_old[sel], mix.mean_new[sel], mix.cov[sel])


def per_sample_terms(q: TwoModeMixture, p: TwoModeMixture, n: int, rng: np.random.Generator,
                     kind: str) -> np.ndarray:
    """Per-sample gradient terms ``[batch, n, 1 + 2d]`` of the Monte Carlo estimator."""
    if kind == "reverse":
        x = q.sample(n, rng)
        ell = q.log_prob(x) - p.log_prob(x)
        return flat(q.scores(x)) * (ell - ell.mean(axis=-1, keepdims=True))[..., None]
    return -flat(q.scores(p.sample(n, rng)))


def monte_carlo_cost(q, p, exact, rng, kind):
    """(samples needed for TARGET relative error [batch], seconds per sample per configuration)."""
    needed, elapsed, count = [], 0.0, 0
    for start in range(0, len(q.weight_old), CHUNK):
        sel = slice(start, start + CHUNK)
        qs, ps = subset(q, sel), subset(p, sel)
        t0 = time.perf_counter()
        terms = per_sample_terms(qs, ps, PILOT, rng, kind)
        elapsed += time.perf_counter() - t0
        count += terms.shape[0] * PILOT
        var = np.sum(terms.var(axis=1, ddof=1), axis=-1)
        needed.append(var / (TARGET * np.linalg.norm(exact[sel], axis=-1)) ** 2)
    return np.concatenate(needed), elapsed / count


def run_monte_carlo(q, p, n, rng, kind, block=200_000):
    """The Monte Carlo gradient of one configuration with n samples (blocks bound memory)."""
    sum_sl, sum_s, sum_l, done = 0.0, 0.0, 0.0, 0
    while done < n:
        m = min(block, n - done)
        if kind == "reverse":  # baseline = mean of ell over the whole run (from the moments)
            x = q.sample(m, rng)[0]
            ell = q.log_prob(x[None])[0] - p.log_prob(x[None])[0]
            s = flat(q.scores(x[None]))[0]
            sum_sl = sum_sl + s.T @ ell
            sum_l += ell.sum()
        else:
            s = -flat(q.scores(p.sample(m, rng)))[0]
        sum_s = sum_s + s.sum(axis=0)
        done += m
    if kind == "reverse":
        return sum_sl / n - (sum_s / n) * (sum_l / n)
    return sum_s / n


def refined_error(fn, q, p, exact) -> float:
    """Largest relative difference ||g - g_fine|| / ||g_fine|| against a much finer 1-D rule."""
    saved = (quadrature._N_UNIFORM, quadrature._NODES, quadrature._WEIGHTS,
             quadrature._KINK_OFFSETS)
    try:
        quadrature._N_UNIFORM = 40
        quadrature._NODES, quadrature._WEIGHTS = np.polynomial.legendre.leggauss(40)
        quadrature._KINK_OFFSETS = 2.0 ** np.arange(-5, 14)
        fine = flat(fn(q, p))
    finally:
        (quadrature._N_UNIFORM, quadrature._NODES, quadrature._WEIGHTS,
         quadrature._KINK_OFFSETS) = saved
    return float(np.max(np.linalg.norm(exact - fine, axis=-1) / np.linalg.norm(fine, axis=-1)))


def main() -> None:
    rng = np.random.default_rng(2026)
    sizes = rng.multinomial(N_CONFIGS, np.ones(len(DIMS)) / len(DIMS))
    batches = [random_configs(int(d), int(n), rng) for d, n in zip(DIMS, sizes, strict=True)]
    rows = {}
    for kind, fn in (("reverse", reverse_kl_gradient), ("forward", forward_kl_gradient)):
        t0 = time.perf_counter()
        exact = [flat(fn(q, p)) for q, p in batches]
        t_exact = (time.perf_counter() - t0) / N_CONFIGS
        alone = [(subset(q, [i]), subset(p, [i])) for q, p in batches for i in range(SINGLE)]
        t0 = time.perf_counter()
        for q1, p1 in alone:
            fn(q1, p1)
        t_single = (time.perf_counter() - t0) / len(alone)
        needed, costs = [], []
        for (q, p), ex in zip(batches, exact, strict=True):
            nd, cost = monte_carlo_cost(q, p, ex, rng, kind)
            needed.append(nd)
            costs.append(np.full(nd.shape, cost))
        needed_all, cost_all = np.concatenate(needed), np.concatenate(costs)
        t_mc = float(np.mean(needed_all * cost_all))
        # check the extrapolation on a few configurations of the smallest dimension
        q, p = batches[0]
        picks = rng.choice(len(q.weight_old), size=3, replace=False)
        errors, times, predicted = [], [], []
        for i in picks:
            n_i = int(np.ceil(needed[0][i]))
            t1 = time.perf_counter()
            est = run_monte_carlo(subset(q, [i]), subset(p, [i]), n_i, rng, kind)
            times.append(time.perf_counter() - t1)
            predicted.append(n_i * costs[0][i])
            errors.append(np.linalg.norm(est - exact[0][i]) / np.linalg.norm(exact[0][i]))
        rows[kind] = {
            "exact_s_per_config": t_exact,
            "exact_single_s_per_config": t_single,
            "single_vs_batch": t_single / t_exact,
            "ratio_single": t_mc / t_single,
            "exact_rel_error": refined_error(fn, q, p, exact[0]),
            "mc_s_per_config": t_mc,
            "ratio": t_mc / t_exact,
            "mc_samples_median": float(np.median(needed_all)),
            "mc_samples_p90": float(np.quantile(needed_all, 0.9)),
            "mc_check_rel_error": float(np.mean(errors)),
            "mc_check_time_over_predicted": float(np.sum(times) / np.sum(predicted)),
        }
    print(f"{N_CONFIGS} configurations, d = {DIMS[0]}..{DIMS[-1]}; Monte Carlo at "
          f"{TARGET:g} relative error (score-function estimator)")
    print(f"{'gradient':9} {'exact s/cfg':>12} {'MC s/cfg':>10} {'MC/exact':>9} "
          f"{'MC N median':>12} {'MC N p90':>10} {'MC err (check)':>15} {'exact err':>10}")
    for kind, row in rows.items():
        print(f"{kind:9} {row['exact_s_per_config']:12.3e} {row['mc_s_per_config']:10.3e} "
              f"{row['ratio']:9.0f} {row['mc_samples_median']:12.3g} {row['mc_samples_p90']:10.3g} "
              f"{row['mc_check_rel_error']:15.2e} {row['exact_rel_error']:10.1e}")
    for kind, row in rows.items():
        print(f"{kind}: one configuration per call, exact {row['exact_single_s_per_config']:.3e} "
              f"s ({row['single_vs_batch']:.0f}x the batch's cost per configuration), "
              f"MC/exact {row['ratio_single']:.0f}")
    print("exact err: largest relative difference from a much finer quadrature rule over the "
          f"{len(batches[0][0].weight_old)} configurations with d = {DIMS[0]}; MC err: measured "
          "on 3 configurations run with their N samples")
    result = {"bench": "population", "configs": N_CONFIGS, "target_rel_error": TARGET,
              **{f"{k}_{key}": v for k, row in rows.items() for key, v in row.items()}}
    print(json.dumps(result))
    append_result("population", result)


if __name__ == "__main__":
    main()
