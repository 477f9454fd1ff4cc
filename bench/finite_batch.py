"""Finite-batch throughput on chen2025-two-mode-clean: engine vs plain seed-vectorised numpy
vs the limit.

Engine: all seeds at once (``forgetlab.chen2025.run.train``: blocks of seeds, the gradient
from per-seed moments), on 1 and ``--workers`` threads. Baseline: the same arithmetic written
plainly in numpy over ``[S, n]`` arrays (every seed at once, one fill per generator and step):
per-sample densities, responsibilities, scores and their means. Both draw from the same
per-seed generators, so they agree to rounding (the largest parameter difference is printed).
Limit: drawing the same normals (same per-seed generators, same blocks) and one exponential
per sample-step, nothing else, with the same number of threads as the engine row it is
compared with. Throughput is sample-steps per second (seeds x samples x steps / seconds),
the fastest of ``--repeat`` rounds that time each entry in turn. Prints a table and a JSON
line, also appended to ``bench/results/finite_batch.jsonl``.

    python bench/finite_batch.py [--seeds 256] [--samples 1000] [--steps 200] [--workers K]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _results import append_result, best_times
from forgetlab.chen2025 import model
from forgetlab.chen2025.run import NOISE_BLOCK, _noise_blocks, train
from forgetlab.parallel import available_cores

LEARNING_RATES = {"forward_kl": 0.15, "reverse_kl": 0.01}
GRADS = {"forward_kl": model.forward_kl_grad_two_mode, "reverse_kl": model.reverse_kl_grad_two_mode}


def _gens(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(seeds)]


def baseline(method: str, gens: list[np.random.Generator], steps: int, samples: int
             ) -> np.ndarray:
    """Every seed at once, plainly: per-sample arithmetic over ``[S, n]``; final ``[S, 5]``."""
    theta = np.tile(model.INIT_TWO_MODE, (len(gens), 1))
    rates = model.learning_rates(LEARNING_RATES[method], 5)
    c = 1.0 / np.sqrt(2.0 * np.pi)
    z = np.empty((len(gens), samples))
    for _ in range(steps):
        pi1, mu1, s1, mu2, s2 = (theta[:, k, None] for k in range(5))
        for row, gen in zip(z, gens, strict=True):
            gen.standard_normal(out=row)
        x = 3.5 + 0.7 * z if method == "forward_kl" else mu2 + s2 * z
        n1 = c / s1 * np.exp(-0.5 * ((x - mu1) / s1) ** 2)
        n2 = c / s2 * np.exp(-0.5 * ((x - mu2) / s2) ** 2)
        q = pi1 * n1 + (1 - pi1) * n2
        r1 = pi1 * n1 / q
        r2 = (1 - pi1) * n2 / q
        scores = [
            (n1 - n2) / q,
            r1 * (x - mu1) / s1**2,
            r1 * ((x - mu1) ** 2 / s1**3 - 1 / s1),
            r2 * (x - mu2) / s2**2,
            r2 * ((x - mu2) ** 2 / s2**3 - 1 / s2),
        ]
        if method == "forward_kl":
            grad = np.stack([-g.mean(axis=1) for g in scores], axis=1)
        else:
            p_new = c / 0.7 * np.exp(-0.5 * ((x - 3.5) / 0.7) ** 2)
            reward = np.log(p_new / (0.1 * (1 - pi1) * n2))
            weight = q / ((1 - pi1) * n2)
            grad = np.stack([-(reward * weight * g).mean(axis=1) for g in scores], axis=1)
        theta = theta - rates * grad
        theta[:, 0] = np.clip(theta[:, 0], 1e-3, 1 - 1e-3)
        theta[:, 2] = np.maximum(theta[:, 2], 1e-3)
        theta[:, 4] = np.maximum(theta[:, 4], 1e-3)
    return theta


def _limit_serial(gens: list[np.random.Generator], steps: int, samples: int) -> float:
    out = np.empty((len(gens), samples))
    acc = 0.0
    for block in _noise_blocks(gens, steps, samples):
        for k in range(block.shape[1]):
            np.exp(block[:, k], out=out)
            acc += out[0, 0]
    return acc


def limit_run(seeds: int, steps: int, samples: int, workers: int = 1) -> float:
    """The same normals (per-seed generators, same blocks) and one exp per sample-step."""
    gens = _gens(seeds)
    groups = [g for g in np.array_split(np.arange(seeds), workers) if g.size]
    with ThreadPoolExecutor(len(groups)) as pool:
        parts = pool.map(lambda g: _limit_serial([gens[i] for i in g], steps, samples), groups)
        return float(sum(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=available_cores())
    args = parser.parse_args()
    S, N, T, W = args.seeds, args.samples, args.steps, max(1, args.workers)
    work = S * N * T
    threads = sorted({1, W})
    init = np.array(model.INIT_TWO_MODE)
    result: dict[str, object] = {"bench": "finite_batch", "preset": "chen2025-two-mode-clean",
                                 "seeds": S, "samples": N, "steps": T,
                                 "noise_block": NOISE_BLOCK, "workers": W}
    rows = []
    diffs: dict[str, float] = {}
    for method in ("forward_kl", "reverse_kl"):
        lr = LEARNING_RATES[method]
        fns: dict[str, Callable[[], object]] = {
            "baseline": lambda m=method: baseline(m, _gens(S), T, N)}
        for w in threads:
            fns[f"engine {w}t"] = lambda m=method, lr=lr, w=w: train(GRADS[m], init, lr,
                                                                     _gens(S), T, N, w)
            fns[f"limit {w}t"] = lambda w=w: limit_run(S, T, N, w)
        rate = {k: work / t for k, t in best_times(fns, args.repeat).items()}
        # The two implementations must agree: same generators, same arithmetic.
        check = train(GRADS[method], init, lr, _gens(4), T, N)[0][:, -1]
        diff = diffs[method] = float(np.max(np.abs(check - baseline(method, _gens(4), T, N))))
        entry: dict[str, float] = {"baseline_sample_steps_per_s": rate["baseline"],
                                   "max_abs_param_diff_vs_baseline": diff}
        rows.append((f"numpy over seeds {method}, 1t", rate["baseline"], 1.0, np.nan))
        for w in threads:
            key = "" if w == 1 else "_workers"
            engine, limit = rate[f"engine {w}t"], rate[f"limit {w}t"]
            rows += [(f"engine {method}, {w}t", engine, engine / rate["baseline"],
                      engine / limit),
                     (f"limit: normals + 1 exp, {w}t", limit, np.nan, 1.0)]
            entry |= {f"engine_sample_steps_per_s{key}": engine,
                      f"limit_sample_steps_per_s{key}": limit,
                      f"ratio_vs_baseline{key}": engine / rate["baseline"],
                      f"fraction_of_limit{key}": engine / limit}
        result[method] = entry
    print(f"chen2025-two-mode-clean finite batch: {S} seeds x {N} samples x {T} steps")
    print(f"{'run':<34}{'sample-steps/s':>16}{'vs numpy':>10}{'of limit':>10}")
    for name, value, ratio, frac in rows:
        ratio_s = "" if np.isnan(ratio) else f"{ratio:.2f}x"
        frac_s = "" if np.isnan(frac) else f"{frac:.2f}"
        print(f"{name:<34}{value:>16.3e}{ratio_s:>10}{frac_s:>10}")
    for method, diff in diffs.items():
        print(f"{method}: max |engine - numpy over seeds| {diff:.1e}")
    print(json.dumps(result))
    append_result("finite_batch", result)


if __name__ == "__main__":
    main()
