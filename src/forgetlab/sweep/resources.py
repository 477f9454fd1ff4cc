"""Resource bounds: refuse work whose estimated memory or time is past what the machine allows.

Every command that runs the engine estimates its peak memory and its run time *before* it
starts, from the model of :mod:`forgetlab.sweep.plan` (the chunk runner's ``estimate_bytes``
and ``estimate_seconds``), and refuses with one line when

* the estimated peak memory exceeds the memory available on this machine (``MemAvailable``
  of ``/proc/meminfo``), or
* the estimated time exceeds :data:`CEILING_SECONDS` (one hour),

naming the estimate and how to proceed: ``--force``, or a smaller setting. ``--force`` lifts
the time ceiling; memory past what is available is refused even then (it would end in an
out-of-memory error or swap). Sweep specs have size ceilings of their own (checked before any
configuration is expanded): :data:`MAX_AXIS_VALUES` values per axis and :data:`MAX_RUNS` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Estimated run time above which a command refuses to start without ``--force`` [s].
CEILING_SECONDS = 3600.0
#: Most values one axis of a sweep spec may take.
MAX_AXIS_VALUES = 100_000
#: Most runs (configurations x seeds) in one sweep or one ``simulate`` call.
MAX_RUNS = 1_000_000


class ResourceError(ValueError):
    """A command's estimated memory or time is past the machine's memory or the ceiling."""


def available_bytes() -> int:
    """Memory available to a new process on this machine (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def human_bytes(n: float) -> str:
    """``n`` bytes as B, KiB, MiB, GiB or TiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_seconds(s: float) -> str:
    """A duration in s, min, h or days."""
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.3g} days"


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory [bytes] and run time [s] of one command."""

    peak_bytes: float
    seconds: float

    def problem(self, force: bool = False, available: int | None = None,
                ceiling: float | None = None) -> str | None:
        """Why this estimate is refused (None when it is within bounds); ``ceiling`` defaults
        to :data:`CEILING_SECONDS`."""
        free = available_bytes() if available is None else available
        ceiling = CEILING_SECONDS if ceiling is None else ceiling
        if self.peak_bytes > free:
            return (f"estimated peak memory {human_bytes(self.peak_bytes)} exceeds the "
                    f"{human_bytes(free)} available (estimated time "
                    f"{human_seconds(self.seconds)})")
        if not force and self.seconds > ceiling:
            return (f"estimated run time {human_seconds(self.seconds)} exceeds the ceiling of "
                    f"{human_seconds(ceiling)} (estimated memory "
                    f"{human_bytes(self.peak_bytes)})")
        return None

    def check(self, what: str, hint: str, force: bool = False,
              ceiling: float | None = None, available: int | None = None) -> None:
        """Raise :class:`ResourceError` (one line: the estimate, the bound, how to proceed)."""
        free = available_bytes() if available is None else available
        problem = self.problem(force, free, ceiling)
        if problem is None:
            return
        how = f"use {hint}" if self.peak_bytes > free else f"use --force, or {hint}"
        raise ResourceError(f"{what}: {problem}; {how}")
