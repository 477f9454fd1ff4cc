"""Shared by the bench scripts: best-of-repeats timing and the results log.

Every bench appends one JSON line per run to ``bench/results/NAME.jsonl`` holding the git
commit (with ``+dirty`` when the working tree has changes), the UTC time and its measurements,
so that a regression shows up as a drop in a ratio between two commits.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` wall-clock timings of ``fn()`` (seconds): on a shared machine
    the minimum is the least disturbed measurement."""
    return best_time_and_cpu(fn, repeat)[0]


def best_time_and_cpu(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the fastest of ``repeat`` calls of
    ``fn()``; the CPU time is robust to other load, the wall time shows the threads' gain."""
    best = (float("inf"), float("inf"))
    for _ in range(max(1, repeat)):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def best_times(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` timings of each function, taken in turns (one of each per
    round), so that a change in the machine's load affects every entry alike."""
    return {k: v[0] for k, v in best_times_and_cpu(fns, repeat).items()}


def best_times_and_cpu(fns: dict[str, Callable[[], object]], repeat: int
                       ) -> dict[str, tuple[float, float]]:
    """:func:`best_times` with each fastest call's CPU seconds: ``{name: (wall, cpu)}``."""
    best = dict.fromkeys(fns, (float("inf"), float("inf")))
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            best[name] = min(best[name], best_time_and_cpu(fn, 1))
    return best


def git_commit() -> str:
    """The commit hash (``+dirty`` if tracked files differ from it), ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def append_result(name: str, record: dict[str, Any]) -> Path:
    """Append ``record`` with the commit and time to ``bench/results/<name>.jsonl``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    line = {"commit": git_commit(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **record}
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return path
