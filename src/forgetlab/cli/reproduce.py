"""``forgetlab reproduce``: check every claim of the theory and write the report."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from forgetlab._validation import as_count
from forgetlab.claims.base import ClaimResult, ClaimSpec, claim_ids, get_profile, select
from forgetlab.cli._common import EXIT_FAILED
from forgetlab.parallel import available_cores
from forgetlab.progress import ProgressBar
from forgetlab.report.build import build_report

#: A temporary report directory untouched for this long belongs to a killed run [s].
STALE_SECONDS = 300.0


def clean_stale(out: str | Path, now: float | None = None) -> tuple[list[Path], list[Path]]:
    """Remove the temporary directories (``.<out>.tmp-*``, ``.<out>.old-*``) that killed
    runs left beside ``out``; returns (removed, kept). One whose newest file changed in the
    last :data:`STALE_SECONDS` may belong to a run in progress and is kept (and reported)."""
    target = Path(out).absolute()
    now = time.time() if now is None else now
    removed: list[Path] = []
    kept: list[Path] = []
    pattern = [f".{target.name}.tmp-*", f".{target.name}.old-*"]
    if not target.parent.is_dir():
        return removed, kept
    for leftover in sorted(p for g in pattern for p in target.parent.glob(g) if p.is_dir()):
        try:
            newest = max([leftover.stat().st_mtime] + [f.stat().st_mtime
                                                       for f in leftover.rglob("*")])
        except OSError:
            continue
        if now - newest < STALE_SECONDS:
            kept.append(leftover)
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        (kept if leftover.exists() else removed).append(leftover)
    return removed, kept


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
@click.option("--workers", type=int, default=None,
              help="Processes running the claims side by side (default: the available "
                   "cores); the numbers do not depend on it.")
def reproduce(profile: str, out: str, only: str, seed: int, allow_fail: bool,
              workers: int | None) -> None:
    """Check claims C1..C10 (and the Chen et al. and LM sections), theory beside simulation.

    Writes OUT/claims.json, one figure per claim (PNG and SVG) and a self-contained
    OUT/report.html. Exit code 0 when every claim passes, 1 when one fails (0 with
    --allow-fail), 2 for bad input, 130 when interrupted (the previous report is kept).
    Temporary directories of killed runs beside OUT are removed (or reported) first.
    """
    get_profile(profile)
    ids = [s.strip() for s in only.split(",") if s.strip()] or None
    specs = select(ids)
    if seed < 0:
        raise ValueError(f"--seed must be an integer >= 0, got {seed}")
    workers = available_cores() if workers is None else as_count(workers, "--workers")
    removed, kept = clean_stale(out)  # --out itself is checked by build_report before work
    for path in removed:
        click.echo(f"note: removed {path}, left by a run that was killed", err=True)
    for path in kept:
        click.echo(f"note: {path} may belong to a run in progress (changed in the last "
                   f"{STALE_SECONDS:.0f} s); remove it by hand if not", err=True)
    command = "forgetlab " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "forgetlab reproduce"
    with ProgressBar("claims", len(specs), "claims", transient=False) as progress:
        if workers > 1 and len(specs) > 1:
            progress.describe(f"claims on {min(workers, len(specs))} processes")

        def on_start(spec: ClaimSpec) -> None:
            progress.describe(f"{spec.claim_id}: {spec.title}")

        def on_done(spec: ClaimSpec, result: ClaimResult) -> None:
            progress.print(
                f"{spec.claim_id:>8}  [{_STYLE[result.status]}]{result.status:<7}[/] "
                f"{result.runtime_s:6.1f} s  {spec.title}"
            )
            progress.advance()

        results = build_report(out, profile, ids, seed, command, on_start, on_done, workers)
    Console().print(_summary(results))
    click.echo(f"report: {out}/report.html")
    if not all(r.ok for r in results) and not allow_fail:
        sys.exit(EXIT_FAILED)
