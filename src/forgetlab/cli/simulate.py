"""``forgetlab simulate``: run a configuration or a preset and summarise forgetting.

Prints a table per configuration (final and worst-case old mass, final and worst-case drift,
and a ``status`` column), or with ``--json`` one JSON object: the resolved configuration, the
summary rows (each with ``status`` and ``diverged_seeds``) and the diverged runs. ``--plot
FILE`` saves beta(t) and the drift D(m_o(t), a) for every seed, diverged seeds dashed red.

Before anything runs, the output path is checked and the memory and time are estimated with
the sweep plan's model (:mod:`forgetlab.sweep.resources`); past the available memory or the
time ceiling the command refuses (``--force`` lifts the time ceiling). A diverged run is
stopped at its last sane values: the table never shows those values plainly (``diverged`` or
a ``*``), a summary line goes to standard error, and ``--fail-on-diverged`` makes it exit 1.

The Chen et al. presets (``chen2025-*``, :mod:`forgetlab.chen2025`) print their own table: Drop
and Gain at the reading point per (method, learning rate), or that as JSON; ``--plot`` saves
their seed-mean overlap curves.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

import click
import numpy as np
from numpy.typing import NDArray

from forgetlab import presets
from forgetlab.chen2025 import DEFAULT_SEEDS as CHEN_DEFAULT_SEEDS
from forgetlab.chen2025 import PRESETS as CHEN_PRESETS
from forgetlab.chen2025 import ChenResult, run_preset
from forgetlab.chen2025.run import GAIN_THRESHOLD
from forgetlab.cli._common import check_output_file, report_diverged
from forgetlab.dynamics import simulate as run_simulation
from forgetlab.parallel import available_cores
from forgetlab.progress import ProgressBar
from forgetlab.simconfig import SimulationConfig, load_config
from forgetlab.sweep.resources import MAX_RUNS, Estimate
from forgetlab.trajectory import Trajectory

_PROGRESS_MIN_STEPS = 2000
#: External presets (another model): their cost is bounded by seeds x steps.
_EXTERNAL_MAX_WORK = 10**8


def estimate(config: SimulationConfig) -> Estimate:
    """Peak memory and time of ``simulate(config)``: the sweep plan of one configuration with
    ``config.seeds`` seeds, in one chunk (the model ``forgetlab sweep plan`` uses)."""
    from forgetlab.sweep.engine import DynamicsRunner

    runner = DynamicsRunner()
    resolved = runner.resolve(config.model_dump(mode="json", exclude={"seeds"}))
    return Estimate(runner.estimate_bytes(resolved, 1, config.seeds),
                    runner.estimate_seconds(resolved, 1, config.seeds))


def _check_external(seeds: int | None, steps: int | None, force: bool) -> None:
    for name, value in (("--seeds", seeds), ("--steps", steps)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")
    work = (seeds or 1) * (steps or 1)
    if work > _EXTERNAL_MAX_WORK and not force:
        raise ValueError(f"--seeds x --steps = {work:.3g} exceeds the ceiling of "
                         f"{_EXTERNAL_MAX_WORK:.0e} for this preset; use --force to run "
                         "anyway, or fewer seeds or steps")


def _run(config: SimulationConfig, quiet: bool, threads: int = 1) -> Trajectory:
    show = not quiet and config.steps >= _PROGRESS_MIN_STEPS
    with ProgressBar("simulating", config.steps, "steps", enabled=show) as bar:
        return run_simulation(config, progress=bar.update, threads=threads)


def _json_value(x: Any) -> Any:
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    return int(x)


def _plot(traj: Trajectory, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for s in range(traj.shape[1]):
        stop = int(traj.diverged_step[0, s])
        keep = traj.steps < stop if stop >= 0 else np.ones(len(traj.steps), dtype=bool)
        for ax, path_s, color in ((axes[0], traj.weight_old[0, s], "C0"),
                                  (axes[1], traj.drift[0, s], "C2")):
            ax.plot(traj.steps[keep], path_s[keep], color=color, alpha=0.5, lw=1)
            if stop >= 0:  # a diverged run: marked, its frozen values not drawn as results
                ax.axvline(stop, color="red", ls="--", lw=0.8)
                ax.plot([stop], [path_s[keep][-1] if np.any(keep) else path_s[0]], "rx")
    if traj.divergences:
        axes[0].plot([], [], "r--x", lw=0.8, label="diverged (stopped)")
        axes[0].legend(fontsize=7)
    axes[0].set(xlabel="step t", ylabel="old weight beta(t)", title="mass")
    axes[1].set(xlabel="step t", ylabel="drift D(m_o(t), a)", title="old-component drift")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def chen2025_json(preset: str, results: list[ChenResult]) -> dict[str, Any]:
    """The JSON object of ``forgetlab simulate --preset chen2025-... --json``."""
    runs = []
    for res in results:
        s = res.summary()
        runs.append({"method": res.method, "learning_rate": res.learning_rate,
                     "stop_step": s.stop_step, "drop": s.drop, "gain": s.gain,
                     "drop_se": s.drop_se, "gain_se": s.gain_se})
    return {"preset": preset, "floors": CHEN_PRESETS[preset].floors,
            "seeds": results[0].params.shape[0] if results else 0,
            "seed": results[0].seed if results else 0, "runs": runs}


def chen2025_table(preset: str, results: list[ChenResult]) -> str:
    """A plain-text table: Drop and Gain (mean +- standard error over seeds) at Gain >= 0.9."""
    seeds = results[0].params.shape[0] if results else 0
    floors = bool(results) and results[0].floors
    arithmetic = "published arithmetic, 1e-12 floors" if floors else "no floors"
    lines = [
        f"{preset}: drop and gain at the first step where the seed-mean gain >= "
        f"{GAIN_THRESHOLD} ({seeds} seeds, mean +- s.e.; {arithmetic})",
        f"{'method':<18}{'lr':>8}{'stop step':>11}{'drop':>20}{'gain':>20}",
    ]
    for res in results:
        s = res.summary()
        stop = "never" if s.stop_step is None else str(s.stop_step)
        lines.append(
            f"{res.method:<18}{res.learning_rate:>8g}{stop:>11}"
            f"{f'{s.drop:.4f} +- {s.drop_se:.4f}':>20}{f'{s.gain:.4f} +- {s.gain_se:.4f}':>20}"
        )
        if s.diverged:
            lines.append(f"  warning: {s.diverged} seed(s) diverged and were frozen")
    return "\n".join(lines)


def _chen2025_plot(results: list[ChenResult], path: str) -> None:
    """Seed-mean acc_old and acc_new against the step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for res in results:
        label = f"{res.method} lr={res.learning_rate:g}"
        steps = np.arange(res.acc_old.shape[1])
        for ax, acc in zip(axes, (res.acc_old, res.acc_new), strict=True):
            (line,) = ax.plot(steps, acc.mean(axis=0), label=label)
            stop = res.summary().stop_step
            if stop is not None:
                ax.axvline(stop, color=line.get_color(), ls=":", lw=1)
    axes[0].set_title("old mode: acc_old")
    axes[1].set_title("new mode: acc_new")
    for ax in axes:
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def chen2025_output(preset: str, seeds: int | None = None, as_json: bool = False,
                    plot: str | None = None, seed: int = 0, steps: int | None = None,
                    progress: Callable[[int], None] | None = None,
                    threads: int | None = None) -> str:
    """What ``forgetlab simulate --preset chen2025-...`` prints (JSON or table); writes the PNG
    ``plot`` of acc_old and acc_new when given. ``seeds`` defaults to
    :data:`~forgetlab.chen2025.preset.DEFAULT_SEEDS`, ``steps`` to the paper's, ``threads``
    to all cores."""
    results = run_preset(preset, CHEN_DEFAULT_SEEDS if seeds is None else seeds, seed, steps,
                         progress=progress, workers=threads)
    if plot is not None:
        _chen2025_plot(results, plot)
    if as_json:
        return json.dumps(chen2025_json(preset, results))
    return chen2025_table(preset, results)


def _run_external(name: str, seeds: int | None, steps: int | None, as_json: bool,
                  plot: str | None, threads: int) -> None:
    with ProgressBar(name, len(CHEN_PRESETS[name].runs), "runs", enabled=not as_json) as bar:
        text = chen2025_output(name, seeds, as_json, plot, steps=steps, progress=bar.update,
                               threads=threads)
    click.echo(text)


def diverged_seeds(traj: Trajectory) -> NDArray[np.int_]:
    """Number of diverged seeds per configuration, ``[C]``."""
    return np.asarray((traj.diverged_step >= 0).sum(axis=1), dtype=int)


def status(n_diverged: int, n_seeds: int) -> str:
    """``ok``, or ``diverged`` (every seed) or ``diverged k/S``."""
    if n_diverged == 0:
        return "ok"
    return "diverged" if n_diverged == n_seeds else f"diverged {n_diverged}/{n_seeds}"


def _table(traj: Trajectory, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    frame = traj.summary()
    bad = diverged_seeds(traj)
    table = Table(title=title)
    for col in ("beta0", "alpha", "beta final", "beta worst", "drift final", "drift worst",
                "status"):
        table.add_column(col, justify="right", no_wrap=True)
    partial = False
    for i, row in frame.iterrows():
        values = [f"{row.beta_final:.4g} ± {row.beta_final_sd:.2g}", f"{row.beta_worst:.4g}",
                  f"{row.drift_final:.4g}", f"{row.drift_worst:.4g}"]
        if bad[i] == traj.shape[1]:
            values = ["[red]-[/]"] * 4  # the frozen values are not results
        elif bad[i]:
            values = [f"[red]{v}*[/]" for v in values]
            partial = True
        table.add_row(f"{traj.beta0[i]:.4g}", f"{traj.alpha[i]:.4g}", *values,
                      status(int(bad[i]), traj.shape[1]))
    if partial:
        table.caption = "* means over seeds that include diverged runs (frozen when stopped)"
    # a pipe or a file gets the whole table (rich would squeeze it to 80 columns)
    Console(width=None if sys.stdout.isatty() else 120).print(table)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with a SimulationConfig.")
@click.option("--preset", help="A named preset (see --list-presets).")
@click.option("--seeds", type=int, help="Override the number of seeds.")
@click.option("--steps", type=int, help="Override the number of steps.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Save a figure of beta and drift.")
@click.option("--list-presets", is_flag=True, help="List the presets and exit.")
@click.option("--force", is_flag=True,
              help="Run even when the estimated time exceeds the ceiling (memory is still "
                   "checked).")
@click.option("--fail-on-diverged", is_flag=True,
              help="Exit with code 1 when a run diverged.")
@click.option("--threads", type=int,
              help="Threads sharing the seeds of a finite-batch run (default: all cores); "
                   "the numbers do not depend on it.")
def simulate(config_file: str | None, preset: str | None, seeds: int | None, steps: int | None,
             as_json: bool, plot: str | None, list_presets: bool, force: bool,
             fail_on_diverged: bool, threads: int | None) -> None:
    """Simulate post-training on the two-mode mixture and report mass forgetting and drift.

    Exit codes: 0 done, 1 a run diverged (with --fail-on-diverged), 2 bad input or past the
    resource bounds, 130 interrupted.
    """
    if list_presets:
        for name, text in presets.list_presets().items():
            click.echo(f"{name:22s} {text}")
        return
    if (config_file is None) == (preset is None):
        raise ValueError("give exactly one of --config FILE or --preset NAME")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be an integer >= 1, got {threads}")
    threads = threads or available_cores()
    if plot:
        check_output_file(plot, "--plot")
    if preset is not None and (ext := presets.external(preset)) is not None:
        _check_external(seeds, steps, force)
        _run_external(ext.name, seeds, steps, as_json, plot, threads)
        return
    config = load_config(config_file) if config_file else presets.get(preset or "")
    overrides = {k: v for k, v in (("seeds", seeds), ("steps", steps)) if v is not None}
    if overrides:
        config = config.with_updates(**overrides)
    if config.seeds > MAX_RUNS:
        raise ValueError(f"seeds must be an integer in [1, {MAX_RUNS}], got {config.seeds}")
    if config.regime == "population" and config.seeds > 1:
        where = f"preset {preset!r}" if preset else f"config {config_file}"
        click.echo(f"warning: {where} is a population run (exact and deterministic): it runs "
                   f"1 seed, not {config.seeds}; set regime = \"finite\" for minibatch seeds",
                   err=True)
    estimate(config).check("simulate", "fewer --steps or --seeds, or a larger stride", force)
    traj = _run(config, quiet=as_json, threads=threads)
    if plot:
        _plot(traj, plot)
    if as_json:
        rows = traj.summary().to_dict(orient="records")
        bad = diverged_seeds(traj)
        summary = [{**{k: _json_value(v) for k, v in r.items()},
                    "status": "ok" if bad[i] == 0 else "diverged",
                    "diverged_seeds": int(bad[i])} for i, r in enumerate(rows)]
        out = {"config": config.model_dump(mode="json"), "summary": summary,
               "divergences": [{"config": c, "seed": s, "step": t}
                               for c, s, t in traj.divergences]}
        click.echo(json.dumps(out))
    else:
        _table(traj, f"{config.method} ({config.regime}, {config.steps} steps, "
                     f"{traj.shape[1]} seed(s))")
    for c, s, t in traj.divergences:
        click.echo(f"warning: config {c} seed {s} diverged at step {t} (stopped)", err=True)
    sys.stdout.flush()
    if traj.divergences:
        n_runs = traj.shape[0] * traj.shape[1]
        report_diverged(len(traj.divergences), n_runs, "left the sane range and were stopped; "
                        "their values are not results", fail_on_diverged)
