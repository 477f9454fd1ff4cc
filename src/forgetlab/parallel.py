"""Threads over independent runs, and the number of cores.

Runs that each draw from their own generator are independent, so splitting them over threads
changes no number; numpy releases the GIL in its array loops and samplers, so the threads run
in parallel while the arrays are large enough.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not on Linux


def thread_map(work: Callable[[_In], _Out], items: Sequence[_In], threads: int,
               pool: ThreadPoolExecutor | None = None) -> list[_Out]:
    """``[work(item) for item in items]``, in order, on ``threads`` threads (``pool`` if
    given, else a new one); in the calling thread when one thread or one item suffices."""
    if threads <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    if pool is not None:
        return list(pool.map(work, items))
    with ThreadPoolExecutor(min(threads, len(items))) as own:
        return list(own.map(work, items))
