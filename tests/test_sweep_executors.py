"""Executors give the same table as each other and for any chunk size; interruptions resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from forgetlab.dynamics import simulate
from forgetlab.simconfig import parse_config
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.executors import DaskExecutor, LocalExecutor, WorkerLost
from forgetlab.sweep.spec import parse_spec
from forgetlab.sweep.store import load_results, part_files
from sweep_toy import InlineExecutor, ToyRunner, worker_environ, worker_pid

SPEC = {"name": "toy", "seeds": 5, "axes": {"x": [0.0, 0.5, 1.0, 2.0, 4.0], "y": [1.0, -2.0],
                                             "kind": ["a", "b"]}}
HERE = Path(__file__).parent


ENGINE_SPEC = {"name": "engine", "seeds": 2,
               "base": {"steps": 20, "stride": 10, "learning_rate": 0.2, "batch_size": 16,
                        "knobs": {"replay": "old"}, "problem": {"dim": 2}},
               "axes": {"regime": ["population", "finite"], "method": ["sft", "replay-rl"],
                        "problem.separation": [1.0, 3.0], "knobs.replay_fraction": [0.2, 0.6]}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    run_sweep(parse_spec(SPEC), out, ToyRunner(), workers=1, chunk_size=1000, progress=False)
    table = load_results(out)
    assert len(table) == 100
    return table


@pytest.fixture(scope="module")
def engine_reference(tmp_path_factory):
    """Each configuration simulated alone, in this process: the rows a sweep must reproduce."""
    out = tmp_path_factory.mktemp("engine-ref")
    run_sweep(parse_spec(ENGINE_SPEC), out, executor=InlineExecutor(), chunk_size=1,
              progress=False)
    assert len(part_files(out)) == 16
    table = load_results(out)
    assert len(table) == 32
    return table


@pytest.fixture(scope="module")
def local_pool():
    with LocalExecutor(2) as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster


def test_engine_rows_are_the_simulation_of_each_run(engine_reference):
    runner = DynamicsRunner()
    for _, row in engine_reference.iloc[[0, 9, 17, 30]].iterrows():
        config = next(r.config for r in parse_spec(ENGINE_SPEC).runs(runner.resolve)
                      if r.run_id == row["run_id"])
        traj = simulate(parse_config({**config, "seeds": row["seed_index"] + 1}),
                        config_ids=[int(row["config_id"], 16)])
        s = 0 if config["regime"] == "population" else row["seed_index"]
        assert row["weight_final"] == traj.weight_old[0, s, -1]
        assert row["drift_sup_final"] == traj.drift_sup[0, s, -1]
    finite = engine_reference[engine_reference.regime == "finite"]
    population = engine_reference[engine_reference.regime == "population"]
    assert finite.groupby("config_id")["weight_final"].nunique().eq(2).all()
    assert population.groupby("config_id")["weight_final"].nunique().eq(1).all()


def test_planning_on_the_workers_gives_the_same_table(tmp_path, engine_reference, local_pool,
                                                      monkeypatch):
    from forgetlab.sweep import plan

    monkeypatch.setattr(plan, "BLOCK", 5)  # 16 configurations: 4 blocks resolved by the pool
    outcome = run_sweep(parse_spec(ENGINE_SPEC), tmp_path, executor=local_pool, chunk_size=6,
                        progress=False)
    assert outcome.complete and outcome.executed == 32
    pd.testing.assert_frame_equal(load_results(tmp_path), engine_reference, check_exact=True)


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_local_any_chunk_size_same_table(tmp_path, engine_reference, local_pool, chunk_size):
    outcome = run_sweep(parse_spec(ENGINE_SPEC), tmp_path, executor=local_pool,
                        chunk_size=chunk_size, progress=False)
    assert outcome.complete and outcome.executed == 32
    pd.testing.assert_frame_equal(load_results(tmp_path), engine_reference, check_exact=True)


def test_local_executor_by_name(tmp_path, reference):
    run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(), workers=2, chunk_size=7, progress=False)
    pd.testing.assert_frame_equal(load_results(tmp_path), reference, check_exact=True)


def test_dask_same_table(tmp_path, engine_reference, dask_cluster):
    run_sweep(parse_spec(ENGINE_SPEC), tmp_path, executor="dask",
              address=dask_cluster.scheduler_address, chunk_size=9, progress=False)
    pd.testing.assert_frame_equal(load_results(tmp_path), engine_reference, check_exact=True)


def test_dask_local_cluster_workers_keep_the_default_malloc_thresholds(monkeypatch):
    """Dask's nannies would set MALLOC_TRIM_THRESHOLD_ (a chunk ran ~15% slower with it)."""
    pytest.importorskip("distributed")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with DaskExecutor(None, 1) as pool:
        [(_, trim), (_, threads)] = sorted(pool.map_unordered(
            worker_environ, ["MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS"]))
    assert trim is None and threads == "1"  # the rest of Dask's worker set-up is kept


def test_ray_local_instance_same_table(tmp_path, engine_reference):
    pytest.importorskip("ray")
    run_sweep(parse_spec(ENGINE_SPEC), tmp_path, executor="ray", workers=2, chunk_size=11,
              progress=False)
    pd.testing.assert_frame_equal(load_results(tmp_path), engine_reference, check_exact=True)


_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from sweep_toy import ToyRunner, worker_pid
from forgetlab.dynamics import simulate
from forgetlab.simconfig import parse_config
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.engine import DynamicsRunner
from forgetlab.sweep.spec import parse_spec
if __name__ == "__main__":
    outcome = run_sweep(parse_spec({spec!r}), {out!r}, ToyRunner(sleep={sleep}), workers=2,
                        chunk_size=4, progress=False)
    print("interrupted" if outcome.interrupted else "complete", outcome.executed)
"""


def _start(out: Path, sleep: float) -> subprocess.Popen[str]:
    script = _SCRIPT.format(here=str(HERE), spec=SPEC, out=str(out), sleep=sleep)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_parts(out: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while len(part_files(out)) < n:
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert time.monotonic() < end, "no progress"
        time.sleep(0.02)


def test_sigkill_halfway_then_resume_gives_the_uninterrupted_table(tmp_path, reference):
    proc = _start(tmp_path, sleep=0.02)
    _wait_for_parts(tmp_path, 12, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = load_results(tmp_path)
    assert 0 < len(stored) < 100 and len(stored) % 5 == 0
    outcome = run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(), workers=1, chunk_size=6,
                        progress=False)
    assert outcome.skipped == len(stored) and outcome.executed == 100 - len(stored)
    pd.testing.assert_frame_equal(load_results(tmp_path), reference, check_exact=True)


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, reference):
    proc = _start(tmp_path, sleep=0.02)
    _wait_for_parts(tmp_path, 5, proc)
    os.kill(proc.pid, signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and stdout.startswith("interrupted")
    assert len(load_results(tmp_path)) < 100
    run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(), workers=1, progress=False)
    pd.testing.assert_frame_equal(load_results(tmp_path), reference, check_exact=True)


def test_dask_sweep_survives_a_killed_worker(tmp_path, reference, dask_cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as client:
        pids = list(client.run(os.getpid).values())
    assert len(pids) == 2
    killed = threading.Event()

    def kill_one_worker() -> None:
        while len(part_files(tmp_path)) < 6:
            time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)
        killed.set()

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    outcome = run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(sleep=0.03), executor="dask",
                        address=dask_cluster.scheduler_address, chunk_size=4, progress=False)
    assert killed.is_set() and outcome.complete
    pd.testing.assert_frame_equal(load_results(tmp_path), reference, check_exact=True)


def test_a_dead_local_worker_stops_the_sweep_cleanly_and_resume_completes(tmp_path, reference):
    with LocalExecutor(2) as pool:
        victim = next(pid for _, pid in pool.map_unordered(worker_pid, [0]))

        def kill_after_parts() -> None:
            while len(part_files(tmp_path)) < 4:
                time.sleep(0.01)
            os.kill(victim, signal.SIGKILL)

        threading.Thread(target=kill_after_parts, daemon=True).start()
        with pytest.raises(WorkerLost, match="worker process died"):
            run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(sleep=0.03), executor=pool,
                      chunk_size=4, progress=False)
    stored = load_results(tmp_path)
    assert 0 < len(stored) < 100 and not stored["run_id"].duplicated().any()
    run_sweep(parse_spec(SPEC), tmp_path, ToyRunner(), workers=1, progress=False)
    pd.testing.assert_frame_equal(load_results(tmp_path), reference, check_exact=True)
