"""``forgetlab sweep plan | run | plot`` end to end on a small spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from forgetlab import load_results
from forgetlab.cli import main

SPEC = """
name = "cli"
seeds = 2
[base]
regime = "population"
steps = 30
stride = 10
learning_rate = 0.3
[base.knobs]
replay = "old"
[axes]
"problem.separation" = [2.0, 4.0]
"knobs.replay_fraction" = { start = 0.2, stop = 0.6, num = 3 }
"""


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


def test_plan_prints_runs_chunks_and_memory(spec):
    result = CliRunner().invoke(main, ["sweep", "plan", str(spec), "--chunk-size", "4"])
    assert result.exit_code == 0, result.output
    assert "runs:           12 (6 configurations x 2 seeds)" in result.output
    assert "chunks:         3 (size <= 4, 1 engine group(s))" in result.output
    assert "peak memory" in result.output


@pytest.mark.parametrize(("edit", "needle"), [
    (("steps = 30", "steps = 0"), "configuration 0"),
    (('"problem.separation" = [2.0, 4.0]', '"problem.separation" = [2.0, -1.0]'),
     "problem.separation=-1.0"),
    (('"problem.separation"', '"problem.sepration"'), "problem.sepration"),
    (("seeds = 2", "seeds = 0"), "'seeds': Input should be greater than or equal to 1 "
     "(allowed: an integer in [1, 1000000])"),
])
def test_invalid_spec_fails_before_running_and_names_the_field(spec, tmp_path, edit, needle):
    spec.write_text(SPEC.replace(*edit))
    result = CliRunner().invoke(main, ["sweep", "run", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and needle in result.output
    assert not (tmp_path / "o").exists()


def test_run_then_plot(spec, tmp_path):
    out = tmp_path / "out"
    args = ["sweep", "run", str(spec), "--out", str(out), "--workers", "1", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "12/12 runs stored" in result.output
    again = CliRunner().invoke(main, args)
    assert "0 run now, 12 already stored" in again.output
    table = load_results(out)
    assert len(table) == 12 and table["diverged_step"].eq(-1).all()
    # Population forward KL with old-data replay converges towards beta = lambda (claim C6).
    last = table.groupby("knobs.replay_fraction")["weight_final"].mean()
    assert (last.diff().dropna() > 0).all()
    png = tmp_path / "heat.png"
    result = CliRunner().invoke(main, ["sweep", "plot", str(out), "--x", "problem.separation",
                                       "--y", "knobs.replay_fraction", "--metric",
                                       "weight_final", "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    result = CliRunner().invoke(main, ["sweep", "plot", str(out), "--x", "nope", "--metric",
                                       "weight_final"])
    assert result.exit_code == 2 and "--x: 'nope' is not a column" in result.output


def test_unwritable_output_is_one_error_line(spec, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["sweep", "run", str(spec), "--out", str(blocker / "o")])
    assert result.exit_code == 2  # checked before any work: bad input
    assert result.output.startswith("error: --out: cannot create")


@pytest.mark.parametrize(("extra", "needle"), [
    (["--address", "tcp://127.0.0.1:8786"], "--address applies to --executor dask or ray"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
])
def test_bad_executor_options_fail_before_writing(spec, tmp_path, extra, needle):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["sweep", "run", str(spec), "--out", str(out), *extra])
    assert result.exit_code == 2 and needle in result.output
    assert not out.exists()
