"""The Chen et al. presets at 256 seeds, overlap metric included: engine vs the published
per-seed arithmetic run in-process, and the machine's floor for the same random numbers.

Baseline: :mod:`forgetlab.chen2025.reference`, the published code's arithmetic one seed at a
time (scipy densities per sample, np.trapezoid on the grid, targets computed once per run),
timed on ``--baseline-seeds`` seeds and scaled linearly to ``--seeds`` (its cost is per seed).
Engine: :func:`forgetlab.chen2025.run_chen2025` (training and overlap metric) with 1 thread and
with ``--workers`` threads.  Floor: drawing the same standard normals (same per-seed
generators and blocks) and nothing else, 1 thread and ``--workers`` threads; no engine can beat
it without changing the random streams.  Prints a table and appends one JSON line, with the git
commit, to ``bench/results/chen2025.jsonl``.

    python bench/chen2025.py [--seeds 256] [--baseline-seeds 4] [--workers 2] [--presets ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from forgetlab.chen2025 import model, reference
from forgetlab.chen2025.run import (
    PRESETS,
    _in_threads,
    _noise_blocks,
    default_workers,
    run_chen2025,
)

RESULTS = Path(__file__).resolve().parent / "results" / "chen2025.jsonl"


def _gens(seeds: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(seeds)]


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


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


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256)
    parser.add_argument("--baseline-seeds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    S, N, W = args.seeds, args.samples, max(1, args.workers)
    B = min(args.baseline_seeds, S)
    record: dict[str, object] = {
        "bench": "chen2025", "commit": _commit(), "date": datetime.now(UTC).isoformat(),
        "seeds": S, "samples": N, "workers": W, "baseline_seeds_timed": B, "presets": {},
    }
    header = (f"{'preset / run':<40}{'baseline s':>11}{'1 thread s':>11}{f'{W} threads s':>13}"
              f"{'ratio 1t':>9}{f'ratio {W}t':>9}{'floor 1t/Wt s':>15}")
    print(f"Chen et al. presets, {S} seeds x {N} samples, overlap metric included; baseline = "
          f"published arithmetic per seed ({B} seeds timed, scaled to {S})")
    print(header)
    for name in args.presets:
        preset = PRESETS[name]
        T = preset.steps
        floor = {w: _seconds(partial(_floor, S, T, N, w), args.repeat) for w in (1, W)}
        fn = reference.two_mode if preset.variant == "two-mode" else reference.single_mode
        eps = model.DENSITY_FLOOR if preset.floors else 0.0
        totals = np.zeros(3)
        runs = []
        for method, lr in preset.runs:
            base = _seconds(partial(_baseline, fn, method, lr, B, T, N, eps), 1) * S / B
            engine = [
                _seconds(partial(run_chen2025, preset.variant, method, lr, T, S, 0, N,
                                 workers=w, floors=preset.floors), args.repeat)
                for w in (1, W)
            ]
            totals += (base, *engine)
            runs.append({"method": method, "learning_rate": lr, "baseline_s": base,
                         "engine_1t_s": engine[0], "engine_s": engine[1],
                         "ratio_1t": base / engine[0], "ratio": base / engine[1]})
            print(f"{f'{name} {method} lr={lr:g}':<40}{base:>11.2f}{engine[0]:>11.2f}"
                  f"{engine[1]:>13.2f}{base / engine[0]:>8.1f}x{base / engine[1]:>8.1f}x")
        print(f"{f'{name} (all runs)':<40}{totals[0]:>11.2f}{totals[1]:>11.2f}{totals[2]:>13.2f}"
              f"{totals[0] / totals[1]:>8.1f}x{totals[0] / totals[2]:>8.1f}x"
              f"{f'{floor[1] * len(runs):.2f}/{floor[W] * len(runs):.2f}':>15}")
        record["presets"][name] = {  # type: ignore[index]
            "runs": runs, "baseline_s": totals[0], "engine_1t_s": totals[1],
            "engine_s": totals[2], "ratio_1t": totals[0] / totals[1],
            "ratio": totals[0] / totals[2], "floor_normals_1t_s": floor[1] * len(runs),
            "floor_normals_s": floor[W] * len(runs),
            "engine_over_floor": totals[2] / (floor[W] * len(runs)),
        }
    line = json.dumps(record)
    print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
