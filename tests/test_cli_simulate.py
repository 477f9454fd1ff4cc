"""``forgetlab simulate``: presets, config files, JSON, plots and errors (exit code 2)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from forgetlab.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, ["simulate", *args])


def test_list_presets_names_every_mixture_method() -> None:
    result = _run("--list-presets")
    assert result.exit_code == 0
    names = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert {"sft", "sft-replay-old", "rl", "replay-rl"} <= names


def test_preset_json_summary() -> None:
    result = _run("--preset", "sft-replay-old", "--steps", "40", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["config"]["method"] == "sft"
    assert out["config"]["steps"] == 40
    row = out["summary"][0]
    assert 0.3 < row["beta_final"] < 0.5
    assert row["drift_worst"] >= row["drift_final"]
    assert out["divergences"] == []


def test_config_file_table_and_plot(tmp_path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('method = "rl"\nregime = "finite"\nsteps = 20\nstride = 5\nseeds = 2\n'
                   'batch_size = 8\nlearning_rate = 0.05\n')
    plot = tmp_path / "run.png"
    result = _run("--config", str(cfg), "--seeds", "3", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert "beta final" in result.output and "drift worst" in result.output
    assert plot.stat().st_size > 1000


def test_divergence_is_reported_on_stderr(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('method = "rl"\nsteps = 30\nstride = 5\nlearning_rate = 80.0\n'
                   '[problem]\nalpha = 0.3\nbeta0 = 0.6\n')
    result = CliRunner().invoke(main, ["simulate", "--config", str(cfg), "--json"])
    assert result.exit_code == 0
    assert "config 0 seed 0 diverged at step" in result.output
    out = json.loads(result.output.splitlines()[0])
    assert out["divergences"][0]["config"] == 0


def test_bad_input_exits_with_code_2(tmp_path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('method = "sft"\n[knobs]\nreplay_fraction = 1.5\n')
    cases = [
        ["--config", str(cfg)],
        ["--preset", "no-such-preset"],
        ["--preset", "sft", "--seeds", "0"],
        ["--preset", "rl-finite", "--threads", "0"],
        [],
    ]
    for args in cases:
        result = _run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ")
    assert "replay_fraction must lie in [0, 1)" in _run("--config", str(cfg)).output


def test_threads_change_no_number(tmp_path) -> None:
    cfg = tmp_path / "run.toml"  # B = 4096: four seeds per cache-sized slice, two slices
    cfg.write_text('method = "rl"\nregime = "finite"\nsteps = 5\nstride = 5\nseeds = 6\n'
                   'batch_size = 4096\nlearning_rate = 0.05\n')
    outs = [_run("--config", str(cfg), "--json", "--threads", t) for t in ("1", "2")]
    assert all(r.exit_code == 0 for r in outs), [r.output for r in outs]
    assert outs[0].output == outs[1].output


def test_every_mixture_preset_runs() -> None:
    from forgetlab import presets, simulate

    for name in presets.list_presets():
        if presets.external(name) is not None:
            continue
        traj = simulate(presets.get(name, steps=3, stride=1, seeds=2))
        assert traj.divergences == [], name
        assert traj.shape[-1] == 4
