"""The Chen et al. presets at 256 seeds, overlap metric included: engine vs the published
per-seed arithmetic run in-process, and the machine's floor for the same random numbers.

Baseline: :mod:`forgetlab.chen2025.reference`, the published code's arithmetic one seed at a
time (scipy densities per sample, np.trapezoid on the grid, targets computed once per run),
timed on ``--baseline-seeds`` seeds and scaled linearly to ``--seeds`` (its cost is per seed).
Engine: :func:`forgetlab.chen2025.run_chen2025` (training and overlap metric) with 1 thread and
with ``--workers`` threads.  The baseline and the engine are timed in turns, ``--repeat``
rounds, the fastest of each kept, so that the machine's changing speed affects both alike.
Floor: drawing the same standard normals (same per-seed generators and blocks) and nothing
else, 1 thread and ``--workers`` threads; no engine can beat it without changing the random
streams.  Bound: that floor plus the exponentials and logarithms the published arithmetic
needs (counted by running one step and one overlap evaluation of each run through a counting
``np``, then timed per element on engine-sized arrays with ``--workers`` threads); no
implementation that keeps the engine's numbers bit for bit can beat it, so ``baseline /
bound`` ("best") is the best ratio there is.  Prints a table and appends one JSON line, with
the git commit, to ``bench/results/chen2025.jsonl`` (:mod:`_results`).

    python bench/chen2025.py [--seeds 256] [--baseline-seeds 4] [--workers 2] [--presets ...]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from functools import partial

import numpy as np

from _results import append_result, best_time_and_cpu, best_times_and_cpu
from forgetlab.chen2025 import PRESETS, model, overlap, reference
from forgetlab.chen2025.run import _FINITE_GRADS, _in_threads, _noise_blocks, run_chen2025
from forgetlab.parallel import available_cores


def _gens(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(seeds)]


def _floor(seeds: int, steps: int, samples: int, workers: int) -> None:
    gens = _gens(seeds)

    def draw(group: np.ndarray) -> None:
        for _ in _noise_blocks([gens[i] for i in group], steps, samples):
            pass

    _in_threads(draw, seeds, workers)


class _CountingNumpy:
    """numpy, with the elements passed to ``exp`` and ``log`` counted."""

    def __init__(self) -> None:
        self.counts = {"exp": 0, "log": 0}

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)

    def exp(self, x: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        self.counts["exp"] += np.size(x)
        return np.exp(x, *args, **kwargs)

    def log(self, x: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        self.counts["log"] += np.size(x)
        return np.log(x, *args, **kwargs)


def _transcendentals(variant: str, method: str, floors: bool, samples: int) -> dict[str, float]:
    """Exponentials and logarithms per seed for one step of ``method``: its gradient on
    ``samples`` draws (counted on 4 seeds) and one more overlap evaluation (the difference of
    evaluating 8 and 4 points, so the target curves, computed once per call, are left out)."""
    init = np.array(model.INIT_TWO_MODE if variant == "two-mode" else model.INIT_SINGLE_MODE)
    grid = overlap.grid_for(init.size)
    counter = _CountingNumpy()
    model.np, overlap.np = counter, counter  # type: ignore[assignment]
    try:
        _FINITE_GRADS[variant, method, floors](
            np.tile(init, (4, 1)), np.random.default_rng(0).standard_normal((4, samples)))
        overlap.grid_overlap_accuracy(np.tile(init, (8, 1)), grid, floors)
        gradient_and_eight = dict(counter.counts)
        overlap.grid_overlap_accuracy(np.tile(init, (4, 1)), grid, floors)
    finally:
        model.np, overlap.np = np, np
    return {k: (2 * v - counter.counts[k]) / 4 for k, v in gradient_and_eight.items()}


def _per_element_seconds(workers: int) -> dict[str, float]:
    """Wall seconds per element of np.exp and np.log on engine-sized arrays (32 seeds x 1000
    draws, values of the kind the gradients see), ``workers`` threads at once."""
    rng = np.random.default_rng(0)
    values = {"exp": -0.5 * rng.standard_normal(32_000) ** 2 - 3.0,
              "log": np.exp(rng.standard_normal(32_000))}
    calls = 300
    out = {}
    for name, x in values.items():
        fn = getattr(np, name)

        def work(_: object, fn: Callable[..., np.ndarray] = fn, x: np.ndarray = x) -> None:
            buf = np.empty_like(x)
            for _ in range(calls):
                fn(x, out=buf)

        wall = best_time_and_cpu(partial(_in_threads, work, workers, workers), 3)[0]
        out[name] = wall / (calls * x.size * workers)
    return out


def _baseline(fn: Callable[..., object], method: str, lr: float, seeds: int, steps: int,
              samples: int, eps: float) -> None:
    for gen in _gens(seeds):
        fn(method, lr, gen, steps, samples, eps)


def _row(label: str, t: np.ndarray, floor: tuple[float, float] | None,
         entry: dict[str, object]) -> dict[str, object]:
    """Print one table row of ``t`` = (baseline wall, cpu, engine 1t wall, cpu, engine Wt wall,
    bound Wt wall) and return it as a JSON entry."""
    floor_s = "" if floor is None else f"{floor[0]:.2f}/{floor[1]:.2f}"
    print(f"{label:<42}{t[0]:>9.2f}{t[2]:>10.2f}{t[4]:>10.2f}{t[0] / t[2]:>7.1f}x"
          f"{t[0] / t[4]:>7.1f}x{t[1] / t[3]:>7.1f}x{t[0] / t[5]:>7.1f}x{floor_s:>13}")
    entry.update({"baseline_s": t[0], "baseline_cpu_s": t[1], "engine_1t_s": t[2],
                  "engine_1t_cpu_s": t[3], "engine_s": t[4], "ratio_1t": t[0] / t[2],
                  "ratio": t[0] / t[4], "ratio_cpu_1t": t[1] / t[3], "bound_s": t[5],
                  "best_possible_ratio": t[0] / t[5]})
    if floor is not None:
        entry.update({"floor_normals_1t_s": floor[0], "floor_normals_s": floor[1]})
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--baseline-seeds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds, each timing the baseline and the engine in turn "
                        "(the fastest of each is kept)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    S, N, W = args.seeds, args.samples, max(1, args.workers)
    B = min(args.baseline_seeds, S)
    record: dict[str, object] = {
        "seeds": S, "samples": N, "workers": W, "baseline_seeds_timed": B,
        "load_average_start": os.getloadavg()[0], "presets": {},
    }
    print(f"Chen et al. presets, {S} seeds x {N} samples, overlap metric included; baseline = "
          f"published arithmetic per seed ({B} seeds timed, scaled to {S}); wall seconds, and "
          f"the CPU-time ratio at 1 thread (robust to other load)")
    print(f"{'preset / run':<42}{'baseline':>9}{'engine 1t':>10}{f'engine {W}t':>10}"
          f"{'wall 1t':>8}{f'wall {W}t':>8}{'cpu 1t':>8}{f'best {W}t':>8}{'floor 1t/Wt':>13}")
    per_element = _per_element_seconds(W)
    for name in args.presets:
        preset = PRESETS[name]
        T = preset.steps
        floor = {w: best_time_and_cpu(partial(_floor, S, T, N, w), args.repeat)[0] for w in (1, W)}
        fn = reference.two_mode if preset.variant == "two-mode" else reference.single_mode
        eps = model.DENSITY_FLOOR if preset.floors else 0.0
        total = np.zeros(6)  # baseline wall, cpu; engine 1t wall, cpu; engine Wt wall; bound
        runs = []
        for method, lr in preset.runs:
            t = best_times_and_cpu({
                "baseline": partial(_baseline, fn, method, lr, B, T, N, eps),
                **{f"engine {w}t": partial(run_chen2025, preset.variant, method, lr, T, S, 0,
                                           N, workers=w, floors=preset.floors)
                   for w in (1, W)}}, args.repeat)
            base = np.array(t["baseline"]) * S / B
            one, many = t["engine 1t"], t[f"engine {W}t"]
            counts = _transcendentals(preset.variant, method, preset.floors, N)
            bound = floor[W] + S * T * sum(counts[k] * per_element[k] for k in counts)
            row = np.array([base[0], base[1], one[0], one[1], many[0], bound])
            total += row
            runs.append(_row(f"{name} {method} lr={lr:g}", row, None,
                             {"method": method, "learning_rate": lr,
                              "transcendentals_per_seed_step": counts}))
        n = len(preset.runs)
        entry = _row(f"{name} (all runs)", total, (floor[1] * n, floor[W] * n), {})
        entry["runs"] = runs
        entry["engine_over_normals_floor"] = total[4] / (floor[W] * n)
        record["presets"][name] = entry  # type: ignore[index]
    record["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(record))
    append_result("chen2025", record)


if __name__ == "__main__":
    main()
