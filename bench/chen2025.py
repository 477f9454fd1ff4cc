"""The Chen et al. presets at 256 seeds, overlap metric included: engine vs the published
per-seed arithmetic run in-process, and the machine's floor for the same random numbers.

Baseline: :mod:`forgetlab.chen2025.reference`, the published code's arithmetic one seed at a
time (scipy densities per sample, np.trapezoid on the grid, targets computed once per run),
timed on ``--baseline-seeds`` seeds and scaled linearly to ``--seeds`` (its cost is per seed).
Engine: :func:`forgetlab.chen2025.run_chen2025` (training and overlap metric) with 1 thread and
with ``--workers`` threads.  Floor: drawing the same standard normals (same per-seed
generators and blocks) and nothing else, 1 thread and ``--workers`` threads; no engine can beat
it without changing the random streams.  Prints a table and appends one JSON line, with the git
commit, to ``bench/results/chen2025.jsonl`` (:mod:`_results`).

    python bench/chen2025.py [--seeds 256] [--baseline-seeds 4] [--workers 2] [--presets ...]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from functools import partial

import numpy as np

from _results import append_result, best_time_and_cpu
from forgetlab.chen2025 import PRESETS, model, reference
from forgetlab.chen2025.run import _in_threads, _noise_blocks, run_chen2025
from forgetlab.parallel import available_cores


def _gens(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(seeds)]


def _floor(seeds: int, steps: int, samples: int, workers: int) -> None:
    gens = _gens(seeds)

    def draw(group: np.ndarray) -> None:
        for _ in _noise_blocks([gens[i] for i in group], steps, samples):
            pass

    _in_threads(draw, seeds, workers)


def _baseline(fn: Callable[..., object], method: str, lr: float, seeds: int, steps: int,
              samples: int, eps: float) -> None:
    for gen in _gens(seeds):
        fn(method, lr, gen, steps, samples, eps)


def _row(label: str, t: np.ndarray, floor: tuple[float, float] | None,
         entry: dict[str, object]) -> dict[str, object]:
    """Print one table row of ``t`` = (baseline wall, cpu, engine 1t wall, cpu, engine Wt wall)
    and return it as a JSON entry."""
    floor_s = "" if floor is None else f"{floor[0]:.2f}/{floor[1]:.2f}"
    print(f"{label:<42}{t[0]:>9.2f}{t[2]:>10.2f}{t[4]:>10.2f}{t[0] / t[2]:>7.1f}x"
          f"{t[0] / t[4]:>7.1f}x{t[1] / t[3]:>7.1f}x{floor_s:>13}")
    entry.update({"baseline_s": t[0], "baseline_cpu_s": t[1], "engine_1t_s": t[2],
                  "engine_1t_cpu_s": t[3], "engine_s": t[4], "ratio_1t": t[0] / t[2],
                  "ratio": t[0] / t[4], "ratio_cpu_1t": t[1] / t[3]})
    if floor is not None:
        entry.update({"floor_normals_1t_s": floor[0], "floor_normals_s": floor[1]})
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--baseline-seeds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--repeat", type=int, default=1)
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
          f"{'wall 1t':>8}{f'wall {W}t':>8}{'cpu 1t':>8}{'floor 1t/Wt':>13}")
    for name in args.presets:
        preset = PRESETS[name]
        T = preset.steps
        floor = {w: best_time_and_cpu(partial(_floor, S, T, N, w), args.repeat)[0] for w in (1, W)}
        fn = reference.two_mode if preset.variant == "two-mode" else reference.single_mode
        eps = model.DENSITY_FLOOR if preset.floors else 0.0
        total = np.zeros(5)  # baseline wall, cpu; engine 1t wall, cpu; engine Wt wall
        runs = []
        for method, lr in preset.runs:
            base = np.array(best_time_and_cpu(
                partial(_baseline, fn, method, lr, B, T, N, eps), 1)) * S / B
            one, many = (
                best_time_and_cpu(partial(run_chen2025, preset.variant, method, lr, T, S, 0, N,
                                 workers=w, floors=preset.floors), args.repeat)
                for w in (1, W)
            )
            row = np.array([base[0], base[1], one[0], one[1], many[0]])
            total += row
            runs.append(_row(f"{name} {method} lr={lr:g}", row, None,
                             {"method": method, "learning_rate": lr}))
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
