"""Run a sweep: plan, skip stored runs, execute chunks on an executor, store each atomically.

The driver is the only writer of the store. It re-plans the runs that no stored chunk
contains into chunks, sends them to the executor and writes each chunk's rows as soon as it
returns, so an interruption (Ctrl-C, SIGKILL, a lost worker) costs at most the chunks in
flight, and running the same command again resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from forgetlab.parallel import available_cores
from forgetlab.progress import ProgressBar
from forgetlab.sweep.executors import Executor, check_executor, make_executor
from forgetlab.sweep.plan import ChunkRunner, ChunkTask, Plan, chunk_id, chunk_runs, make_plan
from forgetlab.sweep.resources import Estimate
from forgetlab.sweep.spec import SweepSpec
from forgetlab.sweep.store import ResultStore, StoreError, encode_rows, held, scan_runs


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


def execute_chunk(task: ChunkTask) -> tuple[str, bytes, int]:
    """Worker side: run one chunk through the engine (one vectorised call) and encode its rows;
    returns (chunk id, Parquet bytes, runs)."""
    runs = chunk_runs(task)
    metrics = task.runner.run(runs)
    return chunk_id([r.run_id for r in runs]), encode_rows(runs, metrics), len(runs)


def check_plan_resources(plan: Plan, executor: str | Executor, address: str | None,
                         force: bool = False) -> None:
    """Refuse a plan past the memory available here or the time ceiling
    (:mod:`forgetlab.sweep.resources`). On a remote cluster (``address``) only the driver's
    memory is held here, and the time depends on the cluster: only that memory is checked."""
    estimate = plan.estimate
    if address is not None or not isinstance(executor, str):
        estimate = Estimate(plan.driver_bytes, 0.0)
    estimate.check(f"sweep {plan.spec.name!r}", "fewer configurations or seeds, a smaller "
                   "--chunk-size or fewer --workers", force)


def verify_store(out: str | Path, run_ids: NDArray[np.bytes_]) -> int:
    """Read the store's run ids back and check that it holds every run of ``run_ids``.

    Returns the number of stored runs that diverged; :class:`StoreError` naming the file or
    the first missing run otherwise."""
    stored, diverged = scan_runs(out, diverged=True)
    missing = run_ids[~held(stored, run_ids)]
    if len(missing):
        raise StoreError(5, f"{out}: {len(missing)} run(s) of the sweep are not in the store "
                         f"(e.g. {np.sort(missing)[0].decode()}); run again to recompute them")
    return diverged


def _pending(out: str | Path, run_ids: NDArray[np.bytes_]) -> NDArray[np.bool_]:
    """``[configurations, seeds]``: whether each run is in no stored chunk."""
    stored, _ = scan_runs(out)
    return ~held(stored, run_ids)


def run_sweep(spec: SweepSpec, out: str | Path, runner: ChunkRunner | None = None,
              executor: str | Executor = "local", address: str | None = None,
              workers: int | None = None, chunk_size: int | None = None,
              progress: bool = True, force: bool = False) -> SweepOutcome:
    """Execute ``spec`` into the store at ``out``, resuming from what is already stored.

    ``executor`` is a name (``local``, ``dask``, ``ray``; built with ``address`` and
    ``workers`` and closed at the end) or an open :class:`Executor` (left open, e.g. to run
    several sweeps on one pool). The executor is started (a cluster connected to) first, so a
    failure there leaves the directory as it was. Every configuration is then resolved (on
    the executor when there are several blocks: :func:`~forgetlab.sweep.plan.make_plan`) and
    the plan's memory and time are checked (:func:`check_plan_resources`; ``force`` lifts the
    time ceiling) before any run starts; an invalid configuration or a refused plan leaves the
    directory as it was. Ctrl-C cancels the chunks that have not started, keeps every stored
    chunk and returns with ``interrupted=True``. A complete sweep's run ids are read back and
    verified (:func:`verify_store`) before it is reported.
    """
    if isinstance(executor, str):
        check_executor(executor, address, workers)
    if runner is None:
        from forgetlab.sweep.engine import DynamicsRunner

        runner = DynamicsRunner()
    start = time.perf_counter()
    # local pools, LocalClusters and local Ray instances default to every core
    n_workers = workers or (available_cores() if isinstance(executor, str) and address is None
                            else 1)
    size = chunk_size or spec.chunk_size
    pool = make_executor(executor, address, workers) if isinstance(executor, str) else executor
    executed = skipped = diverged = 0
    interrupted = False
    notes: list[str] = []
    planned = 0.0
    run_ids = np.zeros((0, spec.seeds), dtype="S32")
    store = ResultStore(out)
    try:
        store.open()
        committed = False
        try:
            configs = store.config_writer()
            plan = make_plan(spec, runner, n_workers, size, pool,
                             lambda b: configs.write(b.start, b.config_ids, b.configs), progress)
            planned = time.perf_counter() - start
            check_plan_resources(plan, executor, address, force)
            notes = store.commit(runner.name, spec.name, spec.seeds, spec.to_dict(),
                                 plan.config_ids, plan.sample)
            committed = True
        finally:
            if not committed:
                store.discard()
        run_ids = plan.run_ids()
        pending = _pending(out, run_ids)
        skipped = plan.n_runs - int(pending.sum())
        chunks = plan.pack(pending)
        tasks = [ChunkTask(runner, spec, c, plan.config_ids[c.configs]) for c in chunks]
        with ProgressBar("runs", plan.n_runs, "runs", enabled=progress, transient=False,
                         rate=True, completed=skipped) as bar:
            for _, (cid, data, n) in (pool.map_unordered(execute_chunk, tasks) if tasks
                                       else ()):
                store.write_chunk(cid, data)
                executed += n
                bar.advance(n)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        store.close()
        pool.close() if isinstance(executor, str) else pool.cancel()
    if not interrupted and skipped + executed == run_ids.size:
        diverged = verify_store(out, run_ids.ravel())
    return SweepOutcome(spec.n_runs, skipped, executed, time.perf_counter() - start,
                        interrupted, planned, diverged, tuple(notes))
