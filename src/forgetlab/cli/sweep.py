"""``forgetlab sweep``: plan, run and plot sweeps (see :mod:`forgetlab.sweep`).

Exit codes as every command (:mod:`forgetlab.cli._common`): 0 done, 1 runs diverged (with
``--fail-on-diverged``), a lost worker or a store that cannot be written or is damaged, 2 bad
input or a plan past the resource bounds, 130 interrupted (what is stored is kept).
"""

from __future__ import annotations

import sys

import click

from forgetlab.cli._common import (
    EXIT_INTERRUPTED,
    check_output_dir,
    check_output_file,
    report_diverged,
)
from forgetlab.sweep.executors import EXECUTORS


@click.group()
def sweep() -> None:
    """Run grids of configurations and seeds, resumably, locally or on a cluster."""


@sweep.command("plan")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--workers", type=int, default=None,
              help="Workers (default: all cores).")
@click.option("--chunk-size", type=int, default=None,
              help="Runs per engine call.")
def plan_cmd(spec: str, workers: int | None, chunk_size: int | None) -> None:
    """Validate SPEC and print its runs, chunks, estimated memory and time; runs nothing.

    The last line says whether `sweep run` would start (the same resource check)."""
    from forgetlab.parallel import available_cores
    from forgetlab.sweep.engine import DynamicsRunner
    from forgetlab.sweep.executors import LocalExecutor
    from forgetlab.sweep.plan import BLOCK, make_plan
    from forgetlab.sweep.spec import load_spec

    parsed = load_spec(spec)
    n_workers = workers or available_cores()
    if parsed.n_configs > BLOCK:  # resolve the blocks on a local pool, with a progress bar
        with LocalExecutor(n_workers) as pool:
            plan = make_plan(parsed, DynamicsRunner(), n_workers, chunk_size, pool,
                             progress=True)
    else:
        plan = make_plan(parsed, DynamicsRunner(), n_workers, chunk_size)
    click.echo(plan.summary())
    problem = plan.estimate.problem()
    click.echo("bounds:         " + ("within the machine's memory and the time ceiling"
                                     if problem is None else f"sweep run refuses: {problem}"))


@sweep.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Result directory (created; re-running resumes).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True)
@click.option("--address", default=None,
              help="Dask scheduler (tcp://host:8786) or Ray address (auto, ray://host:10001).")
@click.option("--workers", type=int, default=None,
              help="Local processes, or LocalCluster / local Ray size (default: all cores).")
@click.option("--chunk-size", type=int, default=None,
              help="Runs per engine call.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--force", is_flag=True,
              help="Run even when the estimated time exceeds the ceiling (memory is still "
                   "checked).")
@click.option("--fail-on-diverged", is_flag=True,
              help="Exit with code 1 when a stored run diverged.")
def run_cmd(spec: str, out: str, executor: str, address: str | None, workers: int | None,
            chunk_size: int | None, progress: bool, force: bool, fail_on_diverged: bool) -> None:
    """Run SPEC into the result directory --out, skipping runs already stored there."""
    from forgetlab.sweep.driver import run_sweep
    from forgetlab.sweep.spec import load_spec

    parsed = load_spec(spec)
    check_output_dir(out, "--out")
    outcome = run_sweep(parsed, out, executor=executor, address=address, workers=workers,
                        chunk_size=chunk_size, progress=progress, force=force)
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    stored = outcome.skipped + outcome.executed
    if outcome.interrupted:
        click.echo(f"interrupted: {stored}/{outcome.total} runs stored in {out}; run the same "
                   "command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(f"{stored}/{outcome.total} runs stored in {out} and verified ({outcome.executed} "
               f"run now, {outcome.skipped} already stored, {outcome.seconds:.1f} s)")
    if outcome.diverged:
        report_diverged(outcome.diverged, outcome.total, "diverged (status 'diverged' in the "
                        "table; their values are not results)", fail_on_diverged)


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

    if y is not None and y == x:
        raise ValueError(f"--y must differ from --x (both are {x!r}); omit --y for line plots")
    target = out or str(Path(directory) / f"{metric}.png")
    check_output_file(target, "--out")
    plot_sweep(load_results(directory), x, y, metric, target)
    click.echo(f"wrote {target}")
