"""A small chunk runner for the sweep tests: exact, cheap, seeded only by each run's identity.

Each run draws ``n`` standard normals from ``Run.seed_sequence()`` and reports their mean and
``x * y`` plus that mean, so a wrong seed, a lost row or a duplicated row changes the table.
``sleep`` slows each chunk (seconds per run) so tests can interrupt a sweep midway.
:class:`InlineExecutor` runs chunks in the test's process, optionally stopping after a few.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from forgetlab.sweep.executors import Executor
from forgetlab.sweep.spec import Run


class ToyRunner:
    name = "toy-1"

    def __init__(self, sleep: float = 0.0, n: int = 16) -> None:
        self.sleep = sleep
        self.n = n

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        extra = set(config) - {"x", "y", "kind"}
        if extra:
            raise ValueError(f"unknown field(s) {sorted(extra)}")
        x = float(config.get("x", 0.0))
        if not 0.0 <= x <= 10.0:
            raise ValueError(f"x must lie in [0, 10], got {x:g}")
        return {"x": x, "y": float(config.get("y", 1.0)), "kind": str(config.get("kind", "a"))}

    def group_key(self, config: dict[str, Any]) -> str:
        return config["kind"]

    def estimate_bytes(self, config: dict[str, Any], configs: int, seeds: int) -> int:
        return 8 * self.n * configs * seeds

    def run(self, runs: Sequence[Run]) -> dict[str, np.ndarray]:
        draws = np.stack([np.random.default_rng(r.seed_sequence()).standard_normal(self.n)
                          for r in runs])
        x = np.array([r.config["x"] for r in runs])
        y = np.array([r.config["y"] for r in runs])
        time.sleep(self.sleep * len(runs))
        return {"noise": draws.mean(axis=1), "value": x * y + draws.mean(axis=1)}


def worker_pid(_: int) -> int:
    """The id of the process that runs this task."""
    import os

    return os.getpid()


def worker_environ(name: str) -> str | None:
    """The environment variable ``name`` of the process that runs this task."""
    import os

    return os.environ.get(name)


class InlineExecutor(Executor):
    """Runs every task here, in order; after ``limit`` tasks it raises KeyboardInterrupt, as
    Ctrl-C would, so that a test can stop a sweep midway."""

    name = "inline"

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            if self.limit is not None and i >= self.limit:
                raise KeyboardInterrupt
            yield i, fn(item)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass
