"""Throughput of sweeps: chunking, worker scaling, and the Dask and Ray executors.

A population-regime sweep of SFT with old-data replay over a grid of separations and replay
fractions (``--runs`` runs, one seed each), measured in one process:

1. chunked (``--chunk-size`` runs per engine call) against one run per task (chunk size 1,
   timed on the first ``--single-runs`` runs of the same grid: its cost is linear in runs);
   both on the same 2-process local pool. Also the engine alone: one ``simulate`` call per
   configuration against one call for ``--chunk-size`` configurations, which bounds what any
   chunking can gain.
2. 2 workers against 1 for the chunked sweep (scaling efficiency = rate_2 / (2 rate_1)).
3. the Dask (LocalCluster, 2 processes) and Ray (local instance, 2 CPUs) executors against
   the local pool for the chunked sweep.

Pools and clusters are started before timing (their start-up is reported separately); each
timed sweep (the fastest of ``--repeat``) includes planning (validating every configuration),
execution and the atomic writes of its result files. Prints a table and one JSON line.

    python bench/sweep.py [--runs 10000] [--single-runs 400] [--chunk-size 500] [--steps 5]
                          [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import numpy as np

from _results import append_result
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.executors import DaskExecutor, Executor, LocalExecutor, RayExecutor
from forgetlab.sweep.spec import SweepSpec, parse_spec


def grid_spec(runs: int, steps: int) -> SweepSpec:
    """``runs`` population configurations on a (separation, replay fraction) grid."""
    side = int(np.ceil(np.sqrt(runs)))
    spec = parse_spec({
        "name": "bench", "seeds": 1,
        "base": {"regime": "population", "steps": steps, "stride": steps,
                 "learning_rate": 0.5, "exact_metrics": False, "knobs": {"replay": "old"}},
        "axes": {"problem.separation": {"start": 0.5, "stop": 8.0, "num": side},
                 "knobs.replay_fraction": {"start": 0.0, "stop": 0.9, "num": side}},
    })
    if spec.n_runs != runs:
        raise SystemExit(f"--runs must be a perfect square, got {runs}")
    return spec


def subset_spec(spec: SweepSpec, runs: int) -> SweepSpec:
    """The first ``runs`` configurations of a 2-axis grid (whole rows of the second axis)."""
    first, second = list(spec.axes)
    rows = max(1, runs // len(spec.axes[second]))
    axes = {first: spec.axes[first][:rows], second: spec.axes[second]}
    return SweepSpec(spec.name, spec.base, axes, spec.seeds, spec.chunk_size)


REPEAT = 1


def timed_sweep(spec: SweepSpec, pool: Executor, chunk_size: int) -> dict[str, float]:
    """The fastest of ``REPEAT`` complete sweeps into fresh directories."""
    best = None
    for _ in range(REPEAT):
        with tempfile.TemporaryDirectory() as out:
            outcome = run_sweep(spec, out, executor=pool, chunk_size=chunk_size,
                                progress=False)
        assert outcome.complete and outcome.executed == spec.n_runs
        if best is None or outcome.seconds < best.seconds:
            best = outcome
    assert best is not None
    return {"runs": spec.n_runs, "seconds": best.seconds,
            "runs_per_s": spec.n_runs / best.seconds, "plan_s": best.plan_seconds}


def _warm(x: int) -> int:
    """Import what a sweep's tasks need (the engine, validation, Parquet) in a worker."""
    import pyarrow.parquet  # noqa: F401

    import forgetlab.simconfig  # noqa: F401
    import forgetlab.sweep.driver  # noqa: F401

    return x


def started(make: Any) -> tuple[Executor, float]:
    t0 = time.perf_counter()
    pool = make()
    # One tiny task so that every worker process has imported the engine before timing.
    list(pool.map_unordered(_warm, [1, 2, 3, 4]))
    return pool, time.perf_counter() - t0


def engine_only(spec: SweepSpec, chunk: int, single: int) -> dict[str, float]:
    runner = DynamicsRunner()
    runs = spec.runs(runner.resolve)
    t0 = time.perf_counter()
    for r in runs[:single]:
        runner.run([r])
    one = single / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    runner.run(runs[:chunk])
    batched = chunk / (time.perf_counter() - t0)
    return {"single_runs_per_s": one, "chunked_runs_per_s": batched, "ratio": batched / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--single-runs", type=int, default=400)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="keep the fastest of N sweeps")
    parser.add_argument("--skip-cluster", action="store_true", help="skip Dask and Ray")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    spec = grid_spec(args.runs, args.steps)
    small = subset_spec(spec, args.single_runs)
    rows: dict[str, dict[str, float]] = {}
    startup: dict[str, float] = {}

    engine = engine_only(spec, args.chunk_size, min(100, args.single_runs))
    pool1, startup["local-1"] = started(lambda: LocalExecutor(1))
    with pool1:
        rows["local 1 worker, chunked"] = timed_sweep(spec, pool1, args.chunk_size)
    pool2, startup["local-2"] = started(lambda: LocalExecutor(2))
    with pool2:
        rows["local 2 workers, chunked"] = timed_sweep(spec, pool2, args.chunk_size)
        rows["local 2 workers, 1 run/task"] = timed_sweep(small, pool2, 1)
    if not args.skip_cluster:
        dask, startup["dask-2"] = started(lambda: DaskExecutor(None, 2))
        with dask:
            rows["dask 2 workers, chunked"] = timed_sweep(spec, dask, args.chunk_size)
        ray, startup["ray-2"] = started(lambda: RayExecutor(None, 2))
        with ray:
            rows["ray 2 CPUs, chunked"] = timed_sweep(spec, ray, args.chunk_size)

    base = rows["local 2 workers, chunked"]
    print(f"sweep benchmark: {args.runs} population runs, {args.steps} steps, chunk size "
          f"{args.chunk_size}")
    print(f"{'mode':32s} {'runs':>7s} {'seconds':>9s} {'runs/s':>10s} {'plan s':>8s}")
    for name, row in rows.items():
        print(f"{name:32s} {row['runs']:7.0f} {row['seconds']:9.2f} {row['runs_per_s']:10.1f} "
              f"{row['plan_s']:8.2f}")
    print(f"engine alone: {engine['single_runs_per_s']:.1f} runs/s one call per run, "
          f"{engine['chunked_runs_per_s']:.1f} runs/s in calls of {args.chunk_size} "
          f"(ratio {engine['ratio']:.1f})")
    print("start-up seconds (not timed above): "
          + ", ".join(f"{k} {v:.1f}" for k, v in startup.items()))
    result: dict[str, Any] = {
        "bench": "sweep", "runs": args.runs, "steps": args.steps, "chunk_size": args.chunk_size,
        "chunked_vs_single_task": base["runs_per_s"]
        / rows["local 2 workers, 1 run/task"]["runs_per_s"],
        "engine_chunked_vs_single_call": engine["ratio"],
        "scaling_efficiency_2_vs_1": base["runs_per_s"]
        / (2 * rows["local 1 worker, chunked"]["runs_per_s"]),
        "runs_per_s": {k: round(v["runs_per_s"], 2) for k, v in rows.items()},
        "startup_s": {k: round(v, 2) for k, v in startup.items()},
    }
    if not args.skip_cluster:
        result["dask_time_vs_local"] = rows["dask 2 workers, chunked"]["seconds"] / base["seconds"]
        result["ray_time_vs_local"] = rows["ray 2 CPUs, chunked"]["seconds"] / base["seconds"]
    print(json.dumps(result))
    append_result("sweep", result)


if __name__ == "__main__":
    main()
