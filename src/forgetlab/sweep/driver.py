"""Run a sweep: plan, skip stored runs, execute chunks on an executor, store each atomically.

The driver is the only writer of the store. It re-plans the runs that no stored chunk
contains into chunks, sends them to the executor and writes each chunk's rows as soon as it
returns, so an interruption (Ctrl-C, SIGKILL, a lost worker) costs at most the chunks in
flight, and running the same command again resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from forgetlab.progress import ProgressBar
from forgetlab.sweep.executors import Executor, check_executor, default_workers, make_executor
from forgetlab.sweep.plan import Chunk, ChunkRunner, Plan, make_chunks, make_plan
from forgetlab.sweep.resources import Estimate
from forgetlab.sweep.spec import Run, SweepSpec
from forgetlab.sweep.store import ResultStore, StoreError, load_results, rows_frame, stored_run_ids


@dataclass(frozen=True)
class SweepOutcome:
    """What one invocation did: runs in the sweep, already stored, executed now, seconds in
    all and seconds spent planning (resolving and validating every configuration)."""

    total: int
    skipped: int
    executed: int
    seconds: float
    interrupted: bool
    plan_seconds: float = 0.0
    diverged: int = 0
    notes: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every run of the sweep is stored."""
        return self.skipped + self.executed == self.total


def execute_chunk(task: tuple[ChunkRunner, Sequence[Run]]) -> dict[str, NDArray[Any]]:
    """Worker side: run one chunk through the engine (one vectorised call per chunk)."""
    runner, runs = task
    return runner.run(runs)


def check_plan_resources(plan: Plan, executor: str | Executor, address: str | None,
                         force: bool = False) -> None:
    """Refuse a plan past the memory available here or the time ceiling
    (:mod:`forgetlab.sweep.resources`). On a remote cluster (``address``) only the result
    table is held here, and the time depends on the cluster: only that memory is checked."""
    estimate = plan.estimate
    if address is not None or not isinstance(executor, str):
        estimate = Estimate(plan.result_bytes, 0.0)
    estimate.check(f"sweep {plan.spec.name!r}", "fewer configurations or seeds, a smaller "
                   "--chunk-size or fewer --workers", force)


def verify_store(out: str | Path, runs: Sequence[Run]) -> int:
    """Read the whole store back and check that it holds every run of ``runs``.

    Returns the number of stored runs that diverged; :class:`StoreError` naming the file or
    the first missing run otherwise."""
    table = load_results(out)
    missing = {r.run_id for r in runs} - set(table["run_id"])
    if missing:
        raise StoreError(5, f"{out}: {len(missing)} run(s) of the sweep are not in the store "
                         f"(e.g. {sorted(missing)[0]}); run again to recompute them")
    if "status" not in table.columns:
        return 0
    return int((table["status"] == "diverged").sum())


def run_sweep(spec: SweepSpec, out: str | Path, runner: ChunkRunner | None = None,
              executor: str | Executor = "local", address: str | None = None,
              workers: int | None = None, chunk_size: int | None = None,
              progress: bool = True, force: bool = False) -> SweepOutcome:
    """Execute ``spec`` into the store at ``out``, resuming from what is already stored.

    ``executor`` is a name (``local``, ``dask``, ``ray``; built with ``address`` and
    ``workers`` and closed at the end) or an open :class:`Executor` (left open, e.g. to run
    several sweeps on one pool). Every configuration is resolved and the plan's memory and
    time are checked (:func:`check_plan_resources`; ``force`` lifts the time ceiling) before
    anything runs; the executor is started (a cluster connected to) before the store is
    written, so a failure there leaves the directory as it was. Ctrl-C cancels the chunks that
    have not started, keeps every stored chunk and returns with ``interrupted=True``. A
    complete sweep is read back and verified (:func:`verify_store`) before it is reported.
    """
    if isinstance(executor, str):
        check_executor(executor, address, workers)
    if runner is None:
        from forgetlab.sweep.engine import DynamicsRunner

        runner = DynamicsRunner()
    start = time.perf_counter()
    # local pools, LocalClusters and local Ray instances default to every core
    n_workers = workers or (default_workers() if isinstance(executor, str) and address is None
                            else 1)
    plan = make_plan(spec, runner, n_workers, chunk_size)
    planned = time.perf_counter() - start
    check_plan_resources(plan, executor, address, force)
    stored = stored_run_ids(out)
    pending = any(r.run_id not in stored for r in plan.runs)
    pool = None
    executed = skipped = 0
    interrupted = False
    notes: list[str] = []
    try:
        if pending:
            pool = (make_executor(executor, address, workers)
                    if isinstance(executor, str) else executor)
        with ResultStore(out) as store:
            notes = store.open(runner.name, spec.name, spec.seeds, plan.runs)
            done = store.done_run_ids()
            todo = [r for r in plan.runs if r.run_id not in done]
            skipped = len(plan.runs) - len(todo)
            chunks: list[Chunk] = make_chunks(todo, runner, chunk_size or spec.chunk_size)
            with ProgressBar("runs", len(plan.runs), "runs", enabled=progress,
                             transient=False, rate=True, completed=skipped) as bar:
                if chunks:
                    if pool is None:  # another process removed stored runs meanwhile
                        pool = (make_executor(executor, address, workers)
                                if isinstance(executor, str) else executor)
                    tasks = [(runner, c.runs) for c in chunks]
                    for i, metrics in pool.map_unordered(execute_chunk, tasks):
                        store.write_chunk(chunks[i].chunk_id, rows_frame(chunks[i].runs, metrics))
                        executed += len(chunks[i])
                        bar.advance(len(chunks[i]))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            pool.close() if isinstance(executor, str) else pool.cancel()
    diverged = 0
    if not interrupted and skipped + executed == len(plan.runs):
        diverged = verify_store(out, plan.runs)
    return SweepOutcome(len(plan.runs), skipped, executed, time.perf_counter() - start,
                        interrupted, planned, diverged, tuple(notes))
