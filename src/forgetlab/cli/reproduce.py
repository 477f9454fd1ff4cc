"""``forgetlab reproduce``: check every claim of the theory and write the report."""

from __future__ import annotations

import shlex
import sys

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from forgetlab.claims.base import ClaimResult, ClaimSpec, claim_ids, get_profile, select
from forgetlab.report.build import build_report

_STYLE = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow"}


def _summary(results: list[ClaimResult]) -> Table:
    table = Table(title="forgetlab reproduction: summary")
    for col in ("claim", "title", "status", "checks passed", "time [s]"):
        table.add_column(col, justify="right" if col in ("checks passed", "time [s]") else "left")
    for r in results:
        n_ok = sum(c.passed for c in r.checks)
        table.add_row(
            r.claim_id, r.title, f"[{_STYLE[r.status]}]{r.status}[/]",
            f"{n_ok}/{len(r.checks)}", f"{r.runtime_s:.1f}",
        )
    return table


@click.command("reproduce")
@click.option("--profile", default="quick", show_default=True,
              help="quick (a few minutes, CI) or full (the publication run, under 20 minutes).")
@click.option("--out", "out", default="reproduce-report", show_default=True,
              type=click.Path(file_okay=True, dir_okay=True),
              help="Report directory: claims.json, config.json, figures/, report.html.")
@click.option("--claims", "only", default="",
              help=f"Comma-separated subset of claims (default all: {','.join(claim_ids())}).")
@click.option("--seed", default=20260312, show_default=True, type=int,
              help="Root seed; each claim draws an independent stream from (seed, claim id).")
@click.option("--allow-fail", is_flag=True,
              help="Write the report and exit 0 even when a claim fails.")
def reproduce(profile: str, out: str, only: str, seed: int, allow_fail: bool) -> None:
    """Check claims C1..C9 (and the Chen et al. and LM sections), theory beside simulation.

    Writes OUT/claims.json, one figure per claim (PNG and SVG) and a self-contained
    OUT/report.html. Exit code 0 when every claim passes, 1 when one fails (0 with
    --allow-fail), 2 for bad input.
    """
    get_profile(profile)
    ids = [s.strip() for s in only.split(",") if s.strip()] or None
    specs = select(ids)
    console = Console(stderr=True)
    command = "forgetlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "forgetlab reproduce"
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("claims", total=len(specs))

        def on_start(spec: ClaimSpec) -> None:
            progress.update(task, description=f"{spec.claim_id}: {spec.title}")

        def on_done(spec: ClaimSpec, result: ClaimResult) -> None:
            progress.console.print(
                f"{spec.claim_id:>8}  [{_STYLE[result.status]}]{result.status:<7}[/] "
                f"{result.runtime_s:6.1f} s  {spec.title}"
            )
            progress.advance(task)

        results = build_report(out, profile, ids, seed, command, on_start, on_done)
    Console().print(_summary(results))
    click.echo(f"report: {out}/report.html")
    if not all(r.ok for r in results) and not allow_fail:
        sys.exit(1)
