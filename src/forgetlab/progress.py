"""The one progress bar of the command line and the sweep driver (rich, on standard error).

A :class:`ProgressBar` is a context manager over one or more counters, drawn as
``label [bar] done/total unit  rate  elapsed  remaining`` on standard error, so ``--json`` on
standard output stays clean. It draws nothing when ``enabled`` is false (``--quiet``,
``--no-progress``, ``--json``) or when standard error is not a terminal; lines given to
:meth:`ProgressBar.print` are printed either way.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """Units per second of a counter: ``12.5 runs/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s")


class ProgressBar:
    """Counters ``done/total`` of named tasks (the first is ``label``), on standard error.

    ``unit`` names what is counted (``steps``, ``runs``); ``rate`` adds units per second;
    ``transient`` removes the bar when done; ``completed`` starts the first counter there.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "", *,
                 enabled: bool = True, transient: bool = True, rate: bool = False,
                 completed: int = 0) -> None:
        self.console = Console(stderr=True)
        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(),
                                         MofNCompleteColumn(), TextColumn(unit)]
        if rate:
            columns.append(_Rate(unit))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=self.console, transient=transient,
                                  disable=not (enabled and self.console.is_terminal))
        self._label = label
        self._tasks: dict[str, Any] = {}
        if total is not None:
            self._tasks[label] = self._progress.add_task(label, total=total, completed=completed)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, done: int, label: str | None = None, total: int | None = None) -> None:
        """Set the counter of task ``label`` (default the first) to ``done``; a new label
        starts a new counter of ``total``."""
        name = self._label if label is None else label
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done)

    def advance(self, amount: int = 1) -> None:
        """Add ``amount`` to the first counter."""
        self._progress.advance(self._tasks[self._label], amount)

    def describe(self, text: str) -> None:
        """Show ``text`` in place of the first counter's label."""
        self._progress.update(self._tasks[self._label], description=text)

    def print(self, text: str) -> None:
        """Print a line (rich markup) above the bar; printed even when the bar is not drawn."""
        self._progress.console.print(text)
