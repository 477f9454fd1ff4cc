"""A sweep of a million runs: planned as a stream, run in bounded memory, its overhead per run.

A population-regime grid (SFT with old-data replay over separations x replay fractions, one
seed, ``--steps`` steps, ``exact_metrics = false``) of ``--runs`` configurations, run with
``forgetlab.sweep.run_sweep`` on a local pool of ``--workers`` processes into a fresh
directory. Reported:

* wall seconds in all and for planning (every configuration resolved on the workers);
* the driver's peak resident memory and CPU seconds, the workers' peak resident memory and CPU
  seconds (``getrusage``, the pool is closed by the sweep);
* the engine's own CPU for the same runs, measured here on one chunk of ``--chunk-size``
  configurations (``DynamicsRunner.run`` on runs resolved beforehand) times the number of
  chunks; the sweep's overhead per run = (driver + workers - engine CPU) / runs: resolving each
  configuration twice (planning, then in the worker that runs it), hashing ids, encoding rows
  and writing files;
* the store's size on disk, and a read-back of one column of every part file (DuckDB-style
  access without loading the table).

    python bench/sweep_scale.py [--runs 1000000] [--workers 2] [--chunk-size 1000] [--steps 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from _results import append_result
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.spec import SweepSpec, parse_spec
from forgetlab.sweep.store import part_files, scan_runs


def grid(runs: int, steps: int, chunk_size: int) -> SweepSpec:
    """``runs`` population configurations on a square (separation, replay fraction) grid."""
    side = int(round(np.sqrt(runs)))
    if side * side != runs:
        raise SystemExit(f"--runs must be a perfect square, got {runs}")
    return parse_spec({
        "name": "scale", "seeds": 1, "chunk_size": chunk_size,
        "base": {"regime": "population", "steps": steps, "stride": steps,
                 "learning_rate": 0.5, "exact_metrics": False, "knobs": {"replay": "old"}},
        "axes": {"problem.separation": {"start": 0.5, "stop": 8.0, "num": side},
                 "knobs.replay_fraction": {"start": 0.0, "stop": 0.9, "num": side}},
    })


def engine_cpu_per_run(spec: SweepSpec, chunk_size: int) -> float:
    """CPU seconds per run of the engine alone on one chunk of resolved configurations."""
    runner = DynamicsRunner()
    sample = SweepSpec(spec.name, spec.base, {k: v[:1] if i == 0 else v[:chunk_size]
                                              for i, (k, v) in enumerate(spec.axes.items())},
                       1, chunk_size)
    runs = sample.runs(runner.resolve)
    runner.run(runs[:8])  # imports and caches warm
    start = time.process_time()
    runner.run(runs)
    return (time.process_time() - start) / len(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    spec = grid(args.runs, args.steps, args.chunk_size)
    engine = engine_cpu_per_run(spec, args.chunk_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        cpu0, wall0 = time.process_time(), time.perf_counter()
        outcome = run_sweep(spec, out, workers=args.workers, progress=False)
        wall, driver_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert outcome.complete and outcome.executed == spec.n_runs
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        files = part_files(out)
        disk = sum(p.stat().st_size for p in out.iterdir())
        t0 = time.perf_counter()
        stored, _ = scan_runs(out)
        scan = time.perf_counter() - t0
        assert len(stored) == spec.n_runs
    worker_cpu = kids.ru_utime + kids.ru_stime
    overhead = (driver_cpu + worker_cpu - engine * spec.n_runs) / spec.n_runs
    result = {
        "bench": "sweep_scale", "runs": spec.n_runs, "workers": args.workers,
        "chunk_size": args.chunk_size, "steps": args.steps, "seconds": round(wall, 1),
        "plan_seconds": round(outcome.plan_seconds, 1), "runs_per_s": round(spec.n_runs / wall),
        "driver_peak_mib": round(me.ru_maxrss / 1024, 1),
        "worker_peak_mib": round(kids.ru_maxrss / 1024, 1),
        "driver_cpu_us_per_run": round(driver_cpu / spec.n_runs * 1e6, 1),
        "worker_cpu_us_per_run": round(worker_cpu / spec.n_runs * 1e6, 1),
        "engine_cpu_us_per_run": round(engine * 1e6, 1),
        "overhead_us_per_run": round(overhead * 1e6, 1),
        "part_files": len(files), "store_mib": round(disk / 2**20, 1),
        "scan_run_ids_s": round(scan, 2),
    }
    print(f"sweep of {spec.n_runs} population runs ({args.steps} step(s)), {args.workers} "
          f"workers, chunks of {args.chunk_size}")
    for key in ("seconds", "plan_seconds", "runs_per_s", "driver_peak_mib", "worker_peak_mib",
                "driver_cpu_us_per_run", "worker_cpu_us_per_run", "engine_cpu_us_per_run",
                "overhead_us_per_run", "part_files", "store_mib", "scan_run_ids_s"):
        print(f"  {key:24s} {result[key]}")
    print(json.dumps(result))
    append_result("sweep_scale", result)


if __name__ == "__main__":
    main()
