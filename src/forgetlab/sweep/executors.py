"""Executors: where chunks run. ``local`` (a process pool, default), ``dask`` and ``ray``.

Each executor takes a picklable function and a list of items (chunks), runs ``fn(item)``
remotely and yields ``(position, result)`` as results arrive, in any order. Results are
returned to the calling process, which alone writes the store, so workers need no shared
file system and a worker that dies only costs its chunk a retry (Dask and Ray reschedule it).

* ``local``: ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes (default:
  all cores), started with ``spawn`` (scripts calling it need the ``if __name__ ==
  "__main__":`` guard); workers ignore SIGINT so that Ctrl-C reaches only the driver, which
  cancels what has not started. A worker that dies stops the sweep with :class:`WorkerLost`
  (there is no retry locally; running again resumes). Each worker checks its parent once a
  second (and asks Linux for SIGKILL when the parent dies): a driver killed with SIGKILL
  takes its workers with it.
* ``dask``: a ``distributed.Client`` on ``address`` (a scheduler such as
  ``tcp://host:8786``, connection timeout 10 s), or on a ``LocalCluster`` of ``workers``
  single-threaded processes without the workers' statistical profiler, started with SIGINT
  ignored so that Ctrl-C reaches only the driver; the shutdown after Ctrl-C is quiet
  (``distributed``'s log silenced).
* ``ray``: ``ray.init(address)`` (``auto`` or ``ray://host:10001``), or a local Ray
  instance with ``workers`` CPUs.

Dask and Ray are optional (``pip install forgetlab[sweep]``); ``local`` needs neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from forgetlab.parallel import WorkerLost, available_cores, process_pool

EXECUTORS = ("local", "dask", "ray")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while child processes are started (they inherit it), then restore."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables while child processes are started, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    """Silence the named loggers (e.g. ``distributed`` while it shuts down after Ctrl-C)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Executor(ABC):
    """Runs ``fn`` over items on some workers; a context manager that owns its resources."""

    name: str

    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]
                      ) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(items[index]))`` as each finishes; cancel the rest on close."""

    @abstractmethod
    def cancel(self) -> None:
        """Cancel the work submitted by the last ``map_unordered`` that has not finished."""

    @abstractmethod
    def close(self) -> None:
        """Cancel pending work and release workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """A process pool of ``workers`` processes on this machine."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cores()
        self._pool = process_pool(self.workers)
        self._pending: set[Future[Any]] = set()

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]
                      ) -> Iterator[tuple[int, Any]]:
        index = {}
        for i, item in enumerate(items):
            fut = self._pool.submit(fn, item)
            index[fut] = i
        self._pending = set(index)
        while self._pending:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise WorkerLost("a local worker process died (killed or out of memory); "
                                     "the chunks stored so far are intact, run again to "
                                     "resume") from None
                yield index.pop(fut), result  # a finished result is held by the caller only

    def cancel(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending = set()

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor(Executor):
    """A ``distributed`` client: on ``address``, or on a LocalCluster of ``workers`` processes."""

    name = "dask"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("--executor dask needs the sweep extra: "
                             "pip install 'forgetlab[sweep]'") from None
        self.cluster = None
        if address is None:
            # worker processes read their configuration from the environment they inherit:
            # a chunk cancelled after Ctrl-C is not worth a warning, and the statistical
            # profiler (a stack sample every 10 ms) slows the Python-heavy chunks by ~25%.
            # The nannies' MALLOC_TRIM_THRESHOLD_ (which also fixes glibc's mmap threshold)
            # returns every large numpy temporary to the system: a chunk ran ~15% slower.
            import dask

            with _sigint_ignored(), _environ(DASK_LOGGING__DISTRIBUTED="error",
                                             DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False"), \
                    dask.config.set({"distributed.nanny.pre-spawn-environ."
                                     "MALLOC_TRIM_THRESHOLD_": None}):
                self.cluster = LocalCluster(n_workers=workers or available_cores(),
                                            threads_per_worker=1, processes=True,
                                            dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            try:
                with _quiet_logs("distributed", "tornado"):
                    self.client = Client(address, timeout="10s")
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(f"--address: cannot connect to the Dask scheduler at "
                                 f"{address!r}: {str(err).splitlines()[0] if str(err) else err!r}"
                                 ) from None
        self._futures: dict[Any, Any] = {}

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]
                      ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        futures = self.client.map(fn, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        self._futures = {f.key: f for f in futures}
        for fut in as_completed(futures):
            result = fut.result()
            self._futures.pop(fut.key).release()  # the cluster need not keep a finished result
            yield index[fut.key], result

    def cancel(self) -> None:
        if self._futures:
            self.client.cancel(list(self._futures.values()))
            self._futures = {}

    def close(self) -> None:
        with _quiet_logs("distributed", "tornado", "asyncio"), \
                contextlib.suppress(Exception):
            self.cancel()
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        self.cluster = None


class RayExecutor(Executor):
    """Ray tasks: on the cluster at ``address``, or on a local instance with ``workers`` CPUs."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs the sweep extra: "
                             "pip install 'forgetlab[sweep]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                with _sigint_ignored():
                    if address is None:
                        ray.init(num_cpus=workers or available_cores(), include_dashboard=False,
                                 log_to_driver=False, logging_level=logging.ERROR)
                    else:
                        ray.init(address=address, log_to_driver=False,
                                 logging_level=logging.ERROR)
            except (ConnectionError, TimeoutError) as err:
                raise ValueError(f"--address: cannot connect to the Ray cluster at "
                                 f"{address!r}: {err}") from None
        self._refs: dict[Any, int] = {}

    def map_unordered(self, fn: Callable[[Any], Any], items: Sequence[Any]
                      ) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=3)(fn)
        refs = [remote.remote(item) for item in items]
        self._refs = {ref: i for i, ref in enumerate(refs)}
        pending = refs
        del refs
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                result = ray.get(ref)
                yield self._refs.pop(ref), result  # no reference left: the store frees it

    def cancel(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs = {}

    def close(self) -> None:
        with _quiet_logs("ray"), contextlib.suppress(Exception):
            self.cancel()
            if self._started:
                self._ray.shutdown()
        self._started = False


def check_executor(kind: str, address: str | None, workers: int | None) -> None:
    """Validate executor arguments (before anything is written); ValueError naming the option."""
    if kind not in EXECUTORS:
        raise ValueError(f"--executor must be one of {list(EXECUTORS)}, got {kind!r}")
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"--workers must be an integer >= 1, got {workers}")
    if kind == "local" and address is not None:
        raise ValueError("--address applies to --executor dask or ray, not local")


def make_executor(kind: str = "local", address: str | None = None,
                  workers: int | None = None) -> Executor:
    """Build an executor by name; ``address`` only for ``dask`` and ``ray``."""
    check_executor(kind, address, workers)
    if kind == "dask":
        return DaskExecutor(address, workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    return LocalExecutor(workers)
