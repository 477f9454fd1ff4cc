"""Hostile input: every reported failure reproduced, now one line and the shared exit codes.

The numbered tests follow the table of failures they fix (resource bounds, output paths,
validation); the others cover diverged runs, exit codes on Ctrl-C, store integrity, process
hygiene and the resource model itself.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forgetlab.cli import main
from forgetlab.sweep import resources
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.spec import parse_spec
from forgetlab.sweep.store import StoreError, load_results, part_files

HERE = Path(__file__).parent

SPEC = """
name = "robust"
seeds = 2
[base]
regime = "population"
steps = 20
stride = 10
learning_rate = 0.3
[axes]
"problem.separation" = [2.0, 4.0]
"""


def _mod(name: str):
    """A module of the CLI package (its names are shadowed by the commands)."""
    return importlib.import_module(f"forgetlab.cli.{name}")


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_error_line(result, code: int = 2, *pieces: str) -> str:
    """Exit ``code``, no traceback, and the last line of output is ``error: ...`` with
    every piece in it."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: "), result.output
    for piece in pieces:
        assert piece in last, last
    return last


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the simulation started")

    monkeypatch.setattr(_mod("simulate"), "run_simulation", refuse)


# -- 1, 2, 9, 13: resource bounds -----------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "toml-float"])
def test_01_huge_steps_refused_before_running(tmp_path, monkeypatch, how) -> None:
    _no_simulation(monkeypatch)
    if how == "flag":
        result = _cli("simulate", "--preset", "sft", "--steps", "1000000000")
    else:
        cfg = _write(tmp_path, "c.toml", 'method = "sft"\nsteps = 1e9\n')
        result = _cli("simulate", "--config", str(cfg))
    _one_error_line(result, 2, "simulate: estimated peak memory", "available", "--steps")


def test_01_time_ceiling_names_force(tmp_path, monkeypatch) -> None:
    _no_simulation(monkeypatch)
    cfg = _write(tmp_path, "c.toml", 'method = "sft"\nsteps = 10000000\nstride = 1000000\n')
    _one_error_line(_cli("simulate", "--config", str(cfg)), 2, "estimated run time",
                    "ceiling of 60 min", "--force")


def test_force_lifts_the_time_ceiling_but_not_memory() -> None:
    slow, big = resources.Estimate(1e3, 1e6), resources.Estimate(1e12, 1.0)
    assert slow.problem(available=10**9) is not None
    assert slow.problem(force=True, available=10**9) is None
    assert big.problem(force=True, available=10**9) is not None
    with pytest.raises(resources.ResourceError, match="use fewer"):
        big.check("x", "fewer seeds", force=True, available=10**9)


def test_02_sweep_past_available_memory_is_refused_and_writes_nothing(tmp_path,
                                                                       monkeypatch) -> None:
    spec = _write(tmp_path, "s.toml", SPEC)
    monkeypatch.setattr(resources, "available_bytes", lambda: 1024)
    plan = _cli("sweep", "plan", str(spec))
    assert plan.exit_code == 0 and "sweep run refuses: estimated peak memory" in plan.output
    out = tmp_path / "out"
    _one_error_line(_cli("sweep", "run", str(spec), "--out", str(out)), 2,
                    "estimated peak memory", "exceeds the 1.0 KiB available")
    assert not out.exists()


def test_09_theory_dimension_bounded(monkeypatch) -> None:
    monkeypatch.setattr(_mod("theory"), "theory_summary", lambda c: 1 / 0)
    _one_error_line(_cli("theory", "--dim", "5000"), 2, "'dim'", "[1, 1000]")
    _one_error_line(_cli("theory", "--dim", "1000", "--steps", "20000"), 2,
                    "estimated run time", "--force", "--dim")


@pytest.mark.parametrize(("axis", "piece"), [
    ("{ start = 0.0, stop = 1.0, num = 100000000 }", "'axes.learning_rate.num'"),
    ("{ start = 0.0, stop = 1.0, num = 1e8 }", "an integer in [1, 100000]"),
    ("{ start = 0.0, stop = 1.0, step = 1e-12 }", "more than 100000"),
    ("{ start = -1e308, stop = 1e308, step = 1e-300 }", "more than 100000"),
    ("{ random = \"uniform\", low = 0.0, high = 1.0, num = 100000000, seed = 1 }",
     "'axes.learning_rate.num'"),
])
def test_13_huge_axes_refused_at_once(tmp_path, axis, piece) -> None:
    spec = _write(tmp_path, "s.toml", SPEC + f'"learning_rate" = {axis}\n')
    start = time.perf_counter()
    _one_error_line(_cli("sweep", "plan", str(spec)), 2, piece)
    assert time.perf_counter() - start < 5


def test_13_product_of_axes_bounded(tmp_path) -> None:
    axes = "".join(f'"knobs.k{i}" = {{ start = 0.0, stop = 1.0, num = 1000 }}\n'
                   for i in range(3))
    spec = _write(tmp_path, "s.toml", SPEC + axes)
    _one_error_line(_cli("sweep", "plan", str(spec)), 2, "more than the ceiling of 1000000")


# -- 3, 4, 12: output paths and plot options -----------------------------------------------
def test_03_unwritable_plot_checked_before_simulating(monkeypatch) -> None:
    _no_simulation(monkeypatch)
    _one_error_line(_cli("simulate", "--preset", "sft", "--plot", "/nonexistent/x.png"), 2,
                    "--plot", "does not exist")


def test_03_external_preset_plot_checked_too(tmp_path) -> None:
    _one_error_line(_cli("simulate", "--preset", "chen2025-two-mode", "--plot",
                         str(tmp_path / "no" / "x.png")), 2, "--plot")


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stored")
    run_sweep(parse_spec(__import__("tomllib").loads(SPEC)), out, workers=1, progress=False,
              executor="local")
    return out


@pytest.mark.parametrize("target", ["/proc/x.png", "/nonexistent/x.png"])
def test_04_unwritable_plot_out(stored, target) -> None:
    _one_error_line(_cli("sweep", "plot", str(stored), "--x", "problem.separation",
                         "--metric", "weight_final", "--out", target), 2, "--out")
    assert not Path(target).exists()


def test_12_same_field_on_both_axes(stored, tmp_path) -> None:
    _one_error_line(_cli("sweep", "plot", str(stored), "--x", "problem.separation", "--y",
                         "problem.separation", "--metric", "weight_final", "--out",
                         str(tmp_path / "p.png")), 2, "--y must differ from --x")
    assert not (tmp_path / "p.png").exists()


# -- 5: an unreachable Dask scheduler -------------------------------------------------------
def test_05_unreachable_scheduler_leaves_the_directory_untouched(tmp_path) -> None:
    pytest.importorskip("distributed")
    spec = _write(tmp_path, "s.toml", SPEC)
    out = tmp_path / "out"
    start = time.perf_counter()
    _one_error_line(_cli("sweep", "run", str(spec), "--out", str(out), "--executor", "dask",
                         "--address", "tcp://127.0.0.1:1", "--no-progress"), 2,
                    "--address: cannot connect")
    assert time.perf_counter() - start < 25
    assert not out.exists()
    other = _write(tmp_path, "o.toml", SPEC.replace("[2.0, 4.0]", "[3.0]"))
    assert _cli("sweep", "run", str(other), "--out", str(out), "--workers", "1",
                "--no-progress").exit_code == 0


# -- 6, 7, 8, 10, 11, 14: validation --------------------------------------------------------
def test_06_infinite_learning_rate(tmp_path, monkeypatch) -> None:
    _no_simulation(monkeypatch)
    cfg = _write(tmp_path, "c.toml", 'method = "sft"\nlearning_rate = inf\n')
    _one_error_line(_cli("simulate", "--config", str(cfg)), 2, "learning_rate", "finite")


def test_07_simulate_caps_separation_like_theory(tmp_path, monkeypatch) -> None:
    _no_simulation(monkeypatch)
    cfg = _write(tmp_path, "c.toml", 'method = "sft"\n[problem]\nseparation = 1e6\n')
    _one_error_line(_cli("simulate", "--config", str(cfg)), 2, "problem.separation", "40")
    cfg = _write(tmp_path, "m.toml", 'method = "sft"\n[problem]\nold_mean = [0.0]\n'
                 'new_mean = [1e6]\n')
    _one_error_line(_cli("simulate", "--config", str(cfg)), 2,
                    "D(problem.old_mean, problem.new_mean)", "[1e-06, 40]")


@pytest.mark.parametrize("text", ["dim = true\n", "alpha = false\n", "steps = true\n"])
def test_08_booleans_are_not_numbers(tmp_path, text) -> None:
    cfg = _write(tmp_path, "c.toml", text)
    _one_error_line(_cli("theory", "--config", str(cfg)), 2, "boolean")
    sim = _write(tmp_path, "s.toml", 'method = "sft"\n[problem]\n' + text.replace(
        "steps", "dim"))
    _one_error_line(_cli("simulate", "--config", str(sim)), 2, "boolean")


def test_10_non_utf8_files_are_named(tmp_path) -> None:
    bad = _write(tmp_path, "latin.toml", b'name = "caf\xe9"\n')
    _one_error_line(_cli("simulate", "--config", str(bad)), 2, "latin.toml")
    _one_error_line(_cli("sweep", "plan", str(bad)), 2, "latin.toml", "UTF-8")
    _one_error_line(_cli("theory", "--config", str(bad)), 2, "latin.toml")


def test_11_tiny_separation_names_the_range() -> None:
    _one_error_line(_cli("theory", "--separation", "1e-300"), 2, "'separation'",
                    "[1e-06, 40]")


def test_14_benchmark_threads_at_least_one() -> None:
    result = _cli("lm", "benchmark", "--threads", "0")
    assert result.exit_code == 2 and "--threads" in result.output
    assert "Traceback" not in result.output


def test_api_errors_name_the_user_facing_means() -> None:
    from forgetlab.population import misassignment

    with pytest.raises(ValueError, match="mean_old: d=2, mean_new: d=3"):
        misassignment(0.5, [0.0, 0.0], [1.0, 1.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="mean_new must be finite"):
        misassignment(0.5, [0.0], [np.inf], 1.0)


def test_population_preset_with_seeds_warns_naming_it() -> None:
    result = _cli("simulate", "--preset", "sdft", "--seeds", "64", "--steps", "3", "--json")
    assert result.exit_code == 0
    assert "warning: preset 'sdft' is a population run" in result.output
    assert "1 seed, not 64" in result.output


# -- diverged runs ---------------------------------------------------------------------------
_DIVERGING = ('method = "rl"\nsteps = 30\nstride = 5\nlearning_rate = 80.0\n'
              '[problem]\nalpha = 0.3\nbeta0 = 0.6\n')


def test_diverged_run_is_marked_in_table_json_and_exit_code(tmp_path) -> None:
    cfg = _write(tmp_path, "d.toml", _DIVERGING)
    table = _cli("simulate", "--config", str(cfg))
    assert table.exit_code == 0
    row = next(line for line in table.output.splitlines() if "0.6" in line)
    assert row.count("diverged") == 1 and row.count(" - ") == 4  # values withheld
    assert "diverged: 1 of 1 run(s)" in table.output
    out = json.loads(_cli("simulate", "--config", str(cfg), "--json").output.splitlines()[0])
    assert out["summary"][0]["status"] == "diverged"
    assert out["summary"][0]["diverged_seeds"] == 1
    fatal = _cli("simulate", "--config", str(cfg), "--fail-on-diverged")
    assert fatal.exit_code == 1
    healthy = _write(tmp_path, "h.toml", _DIVERGING.replace("80.0", "0.05"))
    result = _cli("simulate", "--config", str(healthy), "--fail-on-diverged")
    assert result.exit_code == 0 and "diverged" not in result.output


def test_diverged_plot_is_marked(tmp_path) -> None:
    cfg = _write(tmp_path, "d.toml", _DIVERGING)
    png = tmp_path / "d.png"
    assert _cli("simulate", "--config", str(cfg), "--plot", str(png)).exit_code == 0
    assert png.stat().st_size > 1000


def test_diverged_sweep_rows_have_a_status_and_are_left_out_of_plots(tmp_path) -> None:
    from forgetlab.sweep.plot import aggregate

    spec = _write(tmp_path, "s.toml", _DIVERGING.replace("learning_rate = 80.0\n", "")
                  .replace("method", "[base]\nmethod", 1).replace("[problem]", "[base.problem]")
                  + '[axes]\n"learning_rate" = [0.05, 80.0]\n')
    out = tmp_path / "out"
    result = _cli("sweep", "run", str(spec), "--out", str(out), "--no-progress", "--workers",
                  "1")
    assert result.exit_code == 0 and "diverged: 1 of 2 run(s)" in result.output
    table = load_results(out)
    assert list(table["status"]) == ["ok", "diverged"]
    assert (table["diverged_step"] >= 0).tolist() == [False, True]
    agg = aggregate(table, "learning_rate", None, "weight_final")
    assert agg["diverged"].tolist() == [0, 1] and np.isnan(agg["mean"].iloc[1])
    assert _cli("sweep", "run", str(spec), "--out", str(out), "--no-progress",
                "--fail-on-diverged").exit_code == 1
    png = tmp_path / "p.png"
    assert _cli("sweep", "plot", str(out), "--x", "learning_rate", "--metric",
                "weight_final", "--out", str(png)).exit_code == 0


# -- interrupts: exit 130 in every command ---------------------------------------------------
def _interrupt(*_: object, **__: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_is_130_in_simulate_and_reproduce(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_mod("simulate"), "run_simulation", _interrupt)
    result = _cli("simulate", "--preset", "sft", "--steps", "10")
    assert result.exit_code == 130 and "interrupted" in result.output
    monkeypatch.setattr(_mod("reproduce"), "build_report", _interrupt)
    result = _cli("reproduce", "--claims", "C1", "--out", str(tmp_path / "r"))
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_real_sigint_of_simulate_exits_130(tmp_path) -> None:
    cmd = [sys.executable, "-c", "from forgetlab.cli import main; main()", "simulate",
           "--preset", "sft", "--steps", "100000", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(6)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never outlives the test (it would load the rest of the suite)
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    assert out == ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_real_sigint_of_a_parallel_reproduce_exits_130_and_stops_its_workers(tmp_path) -> None:
    out = tmp_path / "report"
    cmd = [sys.executable, "-c", "from forgetlab.cli import main; main()", "reproduce",
           "--claims", "C2,C7", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        end = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < end:  # the two workers
            time.sleep(0.1)
        workers = _children(proc.pid)
        time.sleep(3)  # both claims are running (each takes 10 s or more)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
    finally:
        proc.kill()
        proc.wait()
    assert stopped_after < 5, "waited for the running claims instead of stopping them"
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    end = time.monotonic() + 10  # the resource tracker exits once it sees its parent gone
    while any(_alive(p) for p in workers) and time.monotonic() < end:
        time.sleep(0.1)
    assert len(workers) >= 2 and not [p for p in workers if _alive(p)]
    assert list(tmp_path.iterdir()) == []  # no report, no temporary directory


# -- reproduce: temporary directories of killed runs ------------------------------------------
def test_stale_report_temporaries_are_removed_and_fresh_ones_reported(tmp_path) -> None:
    from forgetlab.cli.reproduce import STALE_SECONDS, clean_stale

    out = tmp_path / "report"
    old = tmp_path / ".report.tmp-abc"
    (old / "figures").mkdir(parents=True)
    (old / "figures" / "c1.png").write_bytes(b"x")
    fresh = tmp_path / ".report.tmp-new"
    fresh.mkdir()
    other = tmp_path / ".elsewhere.tmp-abc"
    other.mkdir()
    past = time.time() - 2 * STALE_SECONDS
    for p in (old, old / "figures", old / "figures" / "c1.png"):
        os.utime(p, (past, past))
    removed, kept = clean_stale(out)
    assert removed == [old] and kept == [fresh]
    assert not old.exists() and fresh.exists() and other.exists()


def test_reproduce_reports_cleanup_and_checks_out_first(tmp_path, monkeypatch) -> None:
    stale = tmp_path / ".r.tmp-x"
    stale.mkdir()
    os.utime(stale, (0, 0))
    monkeypatch.setattr(_mod("reproduce"), "build_report", _interrupt)
    result = _cli("reproduce", "--claims", "C1", "--out", str(tmp_path / "r"))
    assert "note: removed" in result.output and not stale.exists()
    monkeypatch.undo()
    blocker = _write(tmp_path, "f", "")
    _one_error_line(_cli("reproduce", "--claims", "C1", "--out", str(blocker / "r")), 2,
                    "--out is not writable")


# -- store integrity -------------------------------------------------------------------------
@pytest.fixture
def toy_store(tmp_path) -> tuple[Path, object]:
    sys.path.insert(0, str(HERE))
    from sweep_toy import ToyRunner

    spec = parse_spec({"name": "toy", "seeds": 3, "axes": {"x": [1.0, 2.0, 3.0, 4.0]}})
    out = tmp_path / "store"
    run_sweep(spec, out, ToyRunner(), workers=1, chunk_size=3, progress=False)
    return out, spec


def test_truncated_part_file_is_a_store_error_naming_it(toy_store) -> None:
    out, _ = toy_store
    part = part_files(out)[0]
    part.write_bytes(part.read_bytes()[: 40])
    with pytest.raises(StoreError, match=part.name):
        load_results(out)
    result = _cli("sweep", "plot", str(out), "--x", "x", "--metric", "value")
    _one_error_line(result, 1, part.name, "damaged")


def test_duplicated_part_file_fails_the_run_it_would_report_complete(toy_store) -> None:
    from sweep_toy import ToyRunner

    out, spec = toy_store
    part = part_files(out)[0]
    copy = out / "part-copy.parquet"
    copy.write_bytes(part.read_bytes())
    with pytest.raises(StoreError, match="stored twice"):
        load_results(out)
    with pytest.raises(StoreError, match="part-copy.parquet"):
        run_sweep(spec, out, ToyRunner(), workers=1, progress=False)


def test_a_complete_run_verifies_what_it_reports(toy_store, monkeypatch) -> None:
    from forgetlab.sweep import driver
    from sweep_toy import ToyRunner

    out, spec = toy_store
    real = driver.scan_runs

    def one_lost(directory, diverged=False):  # the read-back of the verification loses one
        stored, count = real(directory, diverged)
        return (stored[1:] if diverged else stored), count

    monkeypatch.setattr(driver, "scan_runs", one_lost)
    with pytest.raises(StoreError, match="1 run"):
        run_sweep(spec, out, ToyRunner(), workers=1, progress=False)


def test_renamed_spec_is_noted(tmp_path) -> None:
    spec = _write(tmp_path, "s.toml", SPEC)
    out = tmp_path / "out"
    assert _cli("sweep", "run", str(spec), "--out", str(out), "--no-progress",
                "--workers", "1").exit_code == 0
    renamed = _write(tmp_path, "r.toml", SPEC.replace('"robust"', '"other"'))
    result = _cli("sweep", "run", str(renamed), "--out", str(out), "--no-progress")
    assert result.exit_code == 0
    assert "note: the sweep stored in" in result.output and "'robust'" in result.output


def test_spec_identity_covers_result_fields_only() -> None:
    """Run ids change with every resolved field that changes results, and with nothing else
    (name, chunk size, the order of keys, a default given explicitly)."""
    import tomllib

    from forgetlab.sweep.engine import DynamicsRunner

    runner = DynamicsRunner()
    base = tomllib.loads(SPEC)

    def ids(data: dict) -> list[str]:
        return [r.run_id for r in parse_spec(data).runs(runner.resolve)]

    reference = ids(base)
    same = [{**base, "name": "x"}, {**base, "chunk_size": 1},
            {**base, "base": {**base["base"], "seed": 0}},
            {**base, "base": dict(reversed(list(base["base"].items())))}]
    for data in same:
        assert ids(data) == reference, data
    for key, value in [("seed", 1), ("learning_rate", 0.31), ("steps", 21),
                       ("optimizer", "adam"), ("max_logit", 30.0)]:
        changed = ids({**base, "base": {**base["base"], key: value}})
        assert not set(changed) & set(reference), key


# -- process hygiene ----------------------------------------------------------------------------
_DRIVER = """
import sys
sys.path.insert(0, {here!r})
from sweep_toy import ToyRunner
from forgetlab.sweep.driver import run_sweep
from forgetlab.sweep.spec import parse_spec
if __name__ == "__main__":
    run_sweep(parse_spec({{"seeds": 40, "axes": {{"x": [1.0, 2.0]}}}}), {out!r},
              ToyRunner(sleep=0.5), workers=2, chunk_size=1, progress=False)
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigkill_of_the_driver_takes_its_workers(tmp_path) -> None:
    script = _DRIVER.format(here=str(HERE), out=str(tmp_path / "out"))
    proc = subprocess.Popen([sys.executable, "-c", script])
    end = time.monotonic() + 60
    while len(_children(proc.pid)) < 3 and time.monotonic() < end:  # 2 workers + tracker
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < end:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "workers outlived their driver"


_SLOW_SPEC = """
name = "slow"
seeds = 1
chunk_size = 1
[base]
regime = "population"
steps = 200
stride = 50
learning_rate = 0.3
[axes]
"problem.separation" = { start = 2.0, stop = 4.0, num = 40 }
"""


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["dask", "ray"])
def test_ctrl_c_of_a_cluster_sweep_is_quiet(tmp_path, executor) -> None:
    """Ctrl-C as a terminal sends it (to the whole process group): one closing line, 130."""
    pytest.importorskip("distributed" if executor == "dask" else "ray")
    spec = _write(tmp_path, "s.toml", _SLOW_SPEC)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from forgetlab.cli import main; main()", "sweep", "run",
           str(spec), "--out", str(out), "--executor", executor, "--workers", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    end = time.monotonic() + 120
    while len(part_files(out)) < 2 if out.exists() else True:
        assert proc.poll() is None and time.monotonic() < end
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert len(err.strip().splitlines()) == 1 and err.startswith("interrupted: "), err
