"""Threads and processes over independent runs, and the number of cores.

Runs that each draw from their own generator are independent, so splitting them over threads
or processes changes no number; numpy releases the GIL in its array loops and samplers, so the
threads run in parallel while the arrays are large enough.  A process pool
(:func:`process_pool`) is for work that holds the GIL: its workers are spawned, ignore SIGINT
(Ctrl-C is the parent's, which cancels or :func:`terminate`-s them) and die with their parent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory)."""


PARENT_POLL_SECONDS = 1.0


def _die_with_parent(parent: int, poll: float = PARENT_POLL_SECONDS) -> None:
    """Exit this process as soon as ``parent`` is gone (parent-death check).

    On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill it; everywhere, a
    daemon thread polls ``os.getppid()`` and exits when the process was re-parented."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-death-check", daemon=True).start()


def _worker_init(parent: int) -> None:
    """Pool worker start-up: ignore SIGINT (Ctrl-C is the parent's) and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that ignore SIGINT and die with this one
    (callers need the ``if __name__ == "__main__":`` guard of ``spawn``)."""
    return ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(),))


def terminate(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the running workers now (after Ctrl-C or an
    error: their results are not wanted, and a long task would hold the exit)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
