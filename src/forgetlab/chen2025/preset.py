"""The Chen et al. presets (published arithmetic, and ``-clean`` without the floors) as
external runners of ``forgetlab simulate``."""

from __future__ import annotations

from collections.abc import Callable

import click

from forgetlab.chen2025.run import PRESETS, chen2025_cli_summary

_DESCRIPTIONS = {
    "chen2025-two-mode": "Chen et al. 2025 two-mode toy, published arithmetic (1e-12 floors): "
    "SFT (lr 0.15, 0.01) vs RL (lr 0.01), drop and gain at gain >= 0.9",
    "chen2025-single-mode": "Chen et al. 2025 single-mode toy, published arithmetic (1e-12 "
    "floors): SFT (lr 0.05) vs RL (lr 0.005), drop and gain at gain >= 0.9",
    "chen2025-two-mode-clean": "chen2025-two-mode without the 1e-12 floors",
    "chen2025-single-mode-clean": "chen2025-single-mode without the 1e-12 floors",
}


def _runner(name: str) -> Callable[[int | None, int | None, bool, str | None], None]:
    def run(seeds: int | None, steps: int | None, as_json: bool, plot: str | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        runs = len(PRESETS[name].runs)
        with Progress(TextColumn(name), BarColumn(), TextColumn("{task.completed}/{task.total} "
                      "runs"), TimeElapsedColumn(), console=Console(stderr=True),
                      transient=True) as bar:
            task = bar.add_task(name, total=runs)
            text = chen2025_cli_summary(name, seeds, as_json, plot, steps=steps,
                                        progress=lambda k: bar.update(task, completed=k))
        click.echo(text)

    return run


def register_presets() -> None:
    """Register every entry of PRESETS with :func:`forgetlab.presets.register_external`."""
    from forgetlab import presets

    for name in PRESETS:
        if presets.external(name) is None:
            presets.register_external(name, _DESCRIPTIONS[name], _runner(name))
