"""``forgetlab theory``: table, JSON schema, flags, config files and bad input (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from forgetlab.cli import main
from forgetlab.config import MixtureConfig
from forgetlab.theory import replay
from forgetlab.theory.summary import GROUPS, SCHEMA_VERSION

FAST = ["--steps", "5"]


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
