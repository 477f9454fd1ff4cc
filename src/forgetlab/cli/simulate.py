"""``forgetlab simulate``: run a configuration or a preset and summarise forgetting.

Prints a table per configuration (final and worst-case old mass, final and worst-case drift),
or with ``--json`` one JSON object: the resolved configuration, the summary rows and the
diverged runs. ``--plot FILE`` saves beta(t) and the drift D(m_o(t), a) for every seed.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from forgetlab import presets
from forgetlab.dynamics import simulate as run_simulation
from forgetlab.simconfig import SimulationConfig, load_config
from forgetlab.trajectory import Trajectory

_PROGRESS_MIN_STEPS = 2000


def _progress_bar(total: int, enabled: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/"
                    "{task.total} steps"), TimeRemainingColumn(), disable=not enabled,
                    transient=True)


def _run(config: SimulationConfig, quiet: bool) -> Trajectory:
    show = not quiet and config.steps >= _PROGRESS_MIN_STEPS
    with _progress_bar(config.steps, show) as bar:
        task = bar.add_task("simulate", total=config.steps)
        return run_simulation(config, progress=lambda t: bar.update(task, completed=t))


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
        axes[0].plot(traj.steps, traj.weight_old[0, s], color="C0", alpha=0.5, lw=1)
        axes[1].plot(traj.steps, traj.drift[0, s], color="C3", alpha=0.5, lw=1)
    axes[0].set(xlabel="step t", ylabel="old weight beta(t)", title="mass")
    axes[1].set(xlabel="step t", ylabel="drift D(m_o(t), a)", title="old-component drift")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(traj: Trajectory, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    frame = traj.summary()
    table = Table(title=title)
    for col in ("beta0", "alpha", "beta final", "beta worst", "drift final", "drift worst"):
        table.add_column(col, justify="right")
    for i, row in frame.iterrows():
        table.add_row(f"{traj.beta0[i]:.4g}", f"{traj.alpha[i]:.4g}",
                      f"{row.beta_final:.4g} ± {row.beta_final_sd:.2g}", f"{row.beta_worst:.4g}",
                      f"{row.drift_final:.4g}", f"{row.drift_worst:.4g}")
    Console().print(table)


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with a SimulationConfig.")
@click.option("--preset", help="A named preset (see --list-presets).")
@click.option("--seeds", type=int, help="Override the number of seeds.")
@click.option("--steps", type=int, help="Override the number of steps.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Save a figure of beta and drift.")
@click.option("--list-presets", is_flag=True, help="List the presets and exit.")
def simulate(config_file: str | None, preset: str | None, seeds: int | None, steps: int | None,
             as_json: bool, plot: str | None, list_presets: bool) -> None:
    """Simulate post-training on the two-mode mixture and report mass forgetting and drift."""
    if list_presets:
        for name, text in presets.list_presets().items():
            click.echo(f"{name:22s} {text}")
        return
    if (config_file is None) == (preset is None):
        raise ValueError("give exactly one of --config FILE or --preset NAME")
    if preset is not None and (ext := presets.external(preset)) is not None:
        ext.run(seeds, steps, as_json, plot)
        return
    config = load_config(config_file) if config_file else presets.get(preset or "")
    overrides = {k: v for k, v in (("seeds", seeds), ("steps", steps)) if v is not None}
    if overrides:
        config = config.with_updates(**overrides)
    traj = _run(config, quiet=as_json)
    if plot:
        _plot(traj, plot)
    if as_json:
        rows = traj.summary().to_dict(orient="records")
        out = {"config": config.model_dump(mode="json"),
               "summary": [{k: _json_value(v) for k, v in r.items()} for r in rows],
               "divergences": [{"config": c, "seed": s, "step": t}
                               for c, s, t in traj.divergences]}
        click.echo(json.dumps(out))
    else:
        _table(traj, f"{config.method} ({config.regime}, {config.steps} steps, "
                     f"{traj.shape[1]} seed(s))")
    for c, s, t in traj.divergences:
        click.echo(f"warning: config {c} seed {s} diverged at step {t} (stopped)", err=True)
    sys.stdout.flush()
