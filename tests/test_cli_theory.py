"""``forgetlab theory``: table, JSON schema, flags, config files and bad input (exit code 2)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forgetlab.cli import main
from forgetlab.cli.theory_table import GROUPS, SCHEMA_VERSION, theory_summary
from forgetlab.config import MixtureConfig
from forgetlab.theory import replay

FAST = ["--steps", "5"]
theory_cli = importlib.import_module("forgetlab.cli.theory")  # the package exports the command


def _run(*args: str):
    return CliRunner().invoke(main, ["theory", *args])


def test_help_is_complete() -> None:
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0 and "theory" in top.output
    res = _run("--help")
    assert res.exit_code == 0
    for flag in ["--config", "--json", "--alpha", "--beta0", "--separation", "--replay",
                 "--batch-size", "--step-size", "--steps", "--dim"]:
        assert flag in res.output


def test_table_has_every_group() -> None:
    res = _run(*FAST)
    assert res.exit_code == 0, res.output
    for title in GROUPS.values():
        assert title in res.output
    assert "rho_beta0" in res.output and "E_{p_new}[r_o]" in res.output


def test_json_schema_and_values(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text("dim = 1\nseparation = 5.0\nalpha = 0.25\nbeta0 = 0.6\n")
    res = _run("--config", str(cfg_path), "--replay", "0.3", "--batch-size", "8", "--json",
               *FAST)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["schema_version"] == SCHEMA_VERSION
    assert set(out["claims"]) == set(GROUPS)
    cfg = out["config"]
    assert cfg["alpha"] == 0.25 and cfg["replay"] == 0.3 and cfg["batch_size"] == 8
    assert cfg["steps"] == 5 and cfg["separation"] == pytest.approx(5.0)
    c7 = out["claims"]["C7"]
    assert c7["starvation_replay"] == pytest.approx(
        float(replay.starvation_probability(0.6, 8, 0.3)), rel=1e-14)
    assert c7["weight_bound"] == pytest.approx(1 / 0.7)
    assert out["claims"]["C3"]["optimum_mean_new"] == pytest.approx([5.0])
    assert out["claims"]["C6"]["old_data_weight_old"] == pytest.approx(0.3)
    c4 = out["claims"]["C4"]
    assert c4["sup_drift"] <= c4["bound_exact"] <= c4["bound_bhattacharyya"] \
        <= c4["bound_closed_form"]
    assert out["claims"]["C2"]["rho_below_beta"] is True
    for group in out["claims"].values():
        for value in group.values():
            flat = value if isinstance(value, list) else [value]
            assert all(isinstance(v, bool | int | float) and np.isfinite(v) for v in flat)
    # the resolved config regenerates the same numbers
    again = MixtureConfig.from_dict(cfg)
    assert again.resolved() == cfg


@pytest.mark.parametrize(("args", "pieces"), [
    (["--alpha", "1.5"], ["alpha", "(0, 1)"]),
    (["--alpha", "nan"], ["alpha", "finite"]),
    (["--beta0", "x"], ["beta0", "(0, 1)"]),
    (["--cov", "-2"], ["cov", "> 0"]),
    (["--dim", "0"], ["dim", "[1, 1000]"]),
    (["--config", "no/such/file.toml"], ["cannot be read"]),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], pieces: list[str]) -> None:
    res = CliRunner().invoke(main, ["theory", *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for piece in pieces:
        assert piece in lines[0]


@pytest.mark.parametrize("text", [
    "unknown_key = 1\n",
    "cov = [[1.0, 2.0], [2.0, 1.0]]\n",
    "dim = 2\nold_mean = [0.0, 0.0]\nnew_mean = [1.0]\n",
    "alpha = [0.1\n",
])
def test_bad_config_files_exit_2(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    res = _run("--config", str(path))
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("forgetlab")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from forgetlab.cli import main; main()"]


def test_real_subprocess(tmp_path: Path) -> None:
    ok = subprocess.run([*_cli(), "theory", "--json", *FAST], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["schema_version"] == SCHEMA_VERSION
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text("alpha = 2.0\n")
    bad = subprocess.run([*_cli(), "theory", "--config", str(bad_file)], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "alpha" in bad.stderr and "(0, 1)" in bad.stderr


def _config(**fields: int) -> MixtureConfig:
    return MixtureConfig.from_dict(dict(fields))


def test_estimate_admits_dim_1000_and_refuses_absurd_work() -> None:
    ceiling = theory_cli.THEORY_CEILING_SECONDS
    assert theory_cli.estimate(_config(dim=1000)).seconds < ceiling
    assert theory_cli.estimate(_config(dim=1000, steps=20000)).seconds > ceiling
    # the bar shows for d = 1000, not for the default configuration
    assert theory_cli.estimate(_config()).seconds < theory_cli.PROGRESS_MIN_SECONDS
    assert theory_cli.estimate(_config(dim=1000)).seconds > theory_cli.PROGRESS_MIN_SECONDS


def test_absurd_work_is_refused_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(theory_cli, "theory_summary", lambda *a, **k: 1 / 0)
    res = _run("--dim", "1000", "--steps", "20000", "--json")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "estimated run time" in lines[0] and "--force" in lines[0]


def test_summary_reports_each_group_once_in_order() -> None:
    done: list[int] = []
    theory_summary(_config(steps=5), done.append)
    assert done == list(range(1, len(GROUPS) + 1))


def test_progress_bar_follows_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[bool] = []
    bar = theory_cli.ProgressBar
    monkeypatch.setattr(theory_cli, "ProgressBar",
                        lambda *a, enabled, **k: shown.append(enabled) or bar(*a, enabled=enabled,
                                                                             **k))
    assert _run("--json", *FAST).exit_code == 0
    monkeypatch.setattr(theory_cli, "PROGRESS_MIN_SECONDS", 0.0)
    res = _run("--json", *FAST)
    assert res.exit_code == 0 and shown == [False, True]
    assert json.loads(res.stdout)["schema_version"] == SCHEMA_VERSION


def test_progress_bar_is_on_stderr_and_json_stays_clean() -> None:
    """d = 300 is estimated past 1 s: on a terminal the bar is drawn on stderr only."""
    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    res = subprocess.run([*_cli(), "theory", "--json", "--dim", "300", "--steps", "5"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["config"]["dim"] == 300
    assert "groups" in res.stderr


@pytest.mark.slow
def test_dim_1000_runs_by_default() -> None:
    res = _run("--dim", "1000", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["claims"]["C3"]["optimum_mean_new"]) == 1000
    assert out["claims"]["C2"]["rho_below_beta"] is True
