"""``forgetlab sweep``: plan, run and plot sweeps (see :mod:`forgetlab.sweep`)."""

from __future__ import annotations

import sys

import click

from forgetlab.sweep.executors import EXECUTORS


@click.group()
def sweep() -> None:
    """Run grids of configurations and seeds, resumably, locally or on a cluster."""


@sweep.command("plan")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--workers", type=int, default=None, help="Workers (default: all cores).")
@click.option("--chunk-size", type=int, default=None, help="Runs per engine call.")
def plan_cmd(spec: str, workers: int | None, chunk_size: int | None) -> None:
    """Validate SPEC and print its runs, chunks and estimated memory; runs nothing."""
    from forgetlab.sweep.engine import DynamicsRunner
    from forgetlab.sweep.executors import default_workers
    from forgetlab.sweep.plan import make_plan
    from forgetlab.sweep.spec import load_spec

    plan = make_plan(load_spec(spec), DynamicsRunner(), workers or default_workers(), chunk_size)
    click.echo(plan.summary())


@sweep.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Result directory (created; re-running resumes).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True)
@click.option("--address", default=None,
              help="Dask scheduler (tcp://host:8786) or Ray address (auto, ray://host:10001).")
@click.option("--workers", type=int, default=None,
              help="Local processes, or LocalCluster / local Ray size (default: all cores).")
@click.option("--chunk-size", type=int, default=None, help="Runs per engine call.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run_cmd(spec: str, out: str, executor: str, address: str | None, workers: int | None,
            chunk_size: int | None, progress: bool) -> None:
    """Run SPEC into the result directory --out, skipping runs already stored there."""
    from forgetlab.sweep.driver import run_sweep
    from forgetlab.sweep.executors import WorkerLost
    from forgetlab.sweep.spec import load_spec
    from forgetlab.sweep.store import StoreError

    try:
        outcome = run_sweep(load_spec(spec), out, executor=executor, address=address,
                            workers=workers, chunk_size=chunk_size, progress=progress)
    except (StoreError, WorkerLost) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    stored = outcome.skipped + outcome.executed
    if outcome.interrupted:
        click.echo(f"interrupted: {stored}/{outcome.total} runs stored in {out}; run the same "
                   "command again to resume", err=True)
        sys.exit(130)
    click.echo(f"{stored}/{outcome.total} runs stored in {out} ({outcome.executed} run now, "
               f"{outcome.skipped} already stored, {outcome.seconds:.1f} s)")


@sweep.command("plot")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--x", "x", required=True, help="Field on the horizontal axis.")
@click.option("--y", "y", default=None, help="Field on the vertical axis (heat map); "
              "omit for line plots.")
@click.option("--metric", required=True, help="Result column to show (e.g. weight_final).")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Image file (default: DIRECTORY/<metric>.png).")
def plot_cmd(directory: str, x: str, y: str | None, metric: str, out: str | None) -> None:
    """Draw a heat map (or lines) of a metric over sweep fields, with theory overlays."""
    from pathlib import Path

    from forgetlab.sweep.plot import plot_sweep
    from forgetlab.sweep.store import load_results

    target = out or str(Path(directory) / f"{metric}.png")
    plot_sweep(load_results(directory), x, y, metric, target)
    click.echo(f"wrote {target}")
