"""Finite-batch throughput on chen2025-two-mode-clean: engine vs a per-run loop vs the limit.

Engine: all seeds at once (``forgetlab.chen2025.run.train``), [S, n] standard normals per step.
Baseline: the same arithmetic written the obvious way, one seed at a time, per-sample
densities, responsibilities, scores and their means.  Limit: drawing the same normals (same
per-seed generators, same blocks) and one exponential per sample-step, nothing else, with the
same number of threads as the engine row it is compared with.  Throughput
is sample-steps per second (seeds x samples x steps / seconds).  Prints a table and a JSON line.

    python bench/finite_batch.py [--seeds 256] [--samples 1000] [--steps 200] [--workers K]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _results import append_result
from forgetlab.chen2025 import model
from forgetlab.chen2025.run import NOISE_BLOCK, _noise_blocks, train
from forgetlab.parallel import available_cores

LEARNING_RATES = {"forward_kl": 0.15, "reverse_kl": 0.01}
GRADS = {"forward_kl": model.forward_kl_grad_two_mode, "reverse_kl": model.reverse_kl_grad_two_mode}


def _gens(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(seeds)]


def baseline_run(method: str, gen: np.random.Generator, steps: int, samples: int) -> np.ndarray:
    """One seed, the obvious way: per-sample arithmetic with numpy over that seed's samples."""
    theta = np.array(model.INIT_TWO_MODE)
    rates = model.learning_rates(LEARNING_RATES[method], 5)
    c = 1.0 / np.sqrt(2.0 * np.pi)
    for _ in range(steps):
        pi1, mu1, s1, mu2, s2 = theta
        z = gen.standard_normal(samples)
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
            grad = np.array([-np.mean(g) for g in scores])
        else:
            p_new = c / 0.7 * np.exp(-0.5 * ((x - 3.5) / 0.7) ** 2)
            reward = np.log(p_new / (0.1 * (1 - pi1) * n2))
            weight = q / ((1 - pi1) * n2)
            grad = np.array([-np.mean(reward * weight * g) for g in scores])
        theta = theta - rates * grad
        theta[0] = min(max(theta[0], 1e-3), 1 - 1e-3)
        theta[2] = max(theta[2], 1e-3)
        theta[4] = max(theta[4], 1e-3)
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


def _timed(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--baseline-seeds",
        type=int,
        default=32,
        help="seeds timed for the per-run loop (its cost is linear in seeds)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=available_cores())
    args = parser.parse_args()
    S, N, T, W = args.seeds, args.samples, args.steps, max(1, args.workers)
    work = S * N * T
    init = np.array(model.INIT_TWO_MODE)
    rows = []
    limit = {w: work / _timed(lambda w=w: limit_run(S, T, N, w), args.repeat) for w in {1, W}}
    result: dict[str, object] = {
        "bench": "finite_batch",
        "preset": "chen2025-two-mode-clean",
        "seeds": S,
        "samples": N,
        "steps": T,
        "noise_block": NOISE_BLOCK,
        "workers": W,
        "limit_sample_steps_per_s": limit[1],
        "limit_sample_steps_per_s_workers": limit[W],
    }
    for w in sorted(limit):
        rows.append((f"limit: normals + 1 exp, {w}t", work / limit[w], limit[w], np.nan, 1.0))
    for method in ("forward_kl", "reverse_kl"):
        lr = LEARNING_RATES[method]
        b = min(args.baseline_seeds, S)
        t_base = _timed(lambda m=method, b=b: [baseline_run(m, g, T, N) for g in _gens(b)], 1)
        base_rate = work / (t_base * S / b)
        entry: dict[str, float] = {"baseline_sample_steps_per_s": base_rate}
        for w in sorted(limit):
            t_engine = _timed(
                lambda m=method, lr=lr, w=w: train(GRADS[m], init, lr, _gens(S), T, N, w),
                args.repeat,
            )
            rate = work / t_engine
            rows.append(
                (f"engine {method}, {w}t", t_engine, rate, rate / base_rate, rate / limit[w])
            )
            key = "" if w == 1 else "_workers"
            entry[f"engine_sample_steps_per_s{key}"] = rate
            entry[f"speedup_vs_baseline{key}"] = rate / base_rate
            entry[f"fraction_of_limit{key}"] = rate / limit[w]
        rows.append(
            (f"per-run loop {method}, 1t", work / base_rate, base_rate, 1.0, base_rate / limit[1])
        )
        # The two implementations must agree: same generators, same arithmetic.
        check = train(GRADS[method], init, lr, _gens(4), T, N)[0][:, -1]
        ref = np.array([baseline_run(method, g, T, N) for g in _gens(4)])
        entry["max_abs_param_diff_vs_baseline"] = float(np.max(np.abs(check - ref)))
        result[method] = entry
    print(f"chen2025-two-mode-clean finite batch: {S} seeds x {N} samples x {T} steps")
    print(f"{'run':<32}{'seconds':>10}{'sample-steps/s':>18}{'vs loop':>10}{'of limit':>10}")
    for name, sec, rate, ratio, frac in rows:
        ratio_s = "" if np.isnan(ratio) else f"{ratio:.1f}x"
        print(f"{name:<32}{sec:>10.3f}{rate:>18.3e}{ratio_s:>10}{frac:>10.2f}")
    print(json.dumps(result))
    append_result("finite_batch", result)


if __name__ == "__main__":
    main()
