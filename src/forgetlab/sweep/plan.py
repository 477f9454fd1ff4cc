"""Sweep plan: the runs of a spec grouped into chunks that the engine executes in one call.

A *chunk runner* is the engine seen from the sweep: it resolves configurations, says which
configurations may share one vectorised call (its ``group_key``), estimates memory, and runs a
chunk, returning one value per run for each metric. Chunks are formed per group, in run order,
whole configurations at a time, up to ``chunk_size`` runs; a chunk's id is the hash of its run
ids, so the same runs always make the same chunk whatever the executor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from forgetlab.sweep.resources import MAX_RUNS, Estimate, human_bytes, human_seconds
from forgetlab.sweep.spec import Run, SweepSpec


@runtime_checkable
class ChunkRunner(Protocol):
    """The engine interface a sweep needs. Implementations must be picklable (module level).

    * ``name``: engine identity and result-schema version, stored in the manifest; results of
      different engines never mix.
    * ``resolve(config)``: validate one configuration and return it resolved (defaults filled,
      JSON-able); raise ``ValueError`` naming the field.
    * ``group_key(config)``: runs whose keys are equal can be executed in one vectorised call.
    * ``estimate_bytes(runs)``: peak working memory of executing ``runs`` in one call.
    * ``estimate_seconds(runs)`` (optional): rough run time of that call on one core.
    * ``run(runs)``: execute one chunk; returns ``{metric: array [len(runs)]}``, each run's
      values a function of that run alone (its config and ``Run.seed_sequence()``).
    """

    name: str

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]: ...

    def group_key(self, config: dict[str, Any]) -> Hashable: ...

    def estimate_bytes(self, runs: Sequence[Run]) -> int: ...

    def run(self, runs: Sequence[Run]) -> dict[str, NDArray[Any]]: ...


@dataclass(frozen=True)
class Chunk:
    """Runs executed together in one engine call; ``chunk_id`` = SHA-256 of their run ids."""

    chunk_id: str
    runs: tuple[Run, ...]

    def __len__(self) -> int:
        return len(self.runs)


def chunk_id(runs: Sequence[Run]) -> str:
    """The id of a chunk: SHA-256 (hex, 32 chars) of its run ids in order."""
    return hashlib.sha256("\n".join(r.run_id for r in runs).encode()).hexdigest()[:32]


def make_chunks(runs: Sequence[Run], runner: ChunkRunner, chunk_size: int) -> list[Chunk]:
    """Group runs by ``runner.group_key`` and pack each group's configurations into chunks.

    A chunk holds whole configurations (all their pending seeds), as many as fit in
    ``chunk_size`` runs and at least one, so the engine never simulates a seed twice.
    """
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size}")
    groups: dict[Hashable, dict[str, list[Run]]] = {}
    for run in runs:
        configs = groups.setdefault(runner.group_key(run.config), {})
        configs.setdefault(run.config_id, []).append(run)
    chunks = []
    for configs in groups.values():
        current: list[Run] = []
        for members in configs.values():
            if current and len(current) + len(members) > chunk_size:
                chunks.append(Chunk(chunk_id(current), tuple(current)))
                current = []
            current.extend(members)
        if current:
            chunks.append(Chunk(chunk_id(current), tuple(current)))
    return chunks


@dataclass(frozen=True)
class Plan:
    """How a sweep will run: its runs, chunks, groups and estimated peak memory."""

    spec: SweepSpec
    runs: tuple[Run, ...]
    chunks: tuple[Chunk, ...]
    n_groups: int
    workers: int
    chunk_bytes: int
    result_bytes: int
    cpu_seconds: float = 0.0

    @property
    def peak_bytes(self) -> int:
        """Estimated peak memory: ``workers`` chunks in flight plus the result table."""
        return self.workers * self.chunk_bytes + self.result_bytes

    @property
    def estimate(self) -> Estimate:
        """Peak memory and wall time (the chunks' time spread over ``workers``)."""
        return Estimate(self.peak_bytes, self.cpu_seconds / self.workers)

    def summary(self) -> str:
        """A few human-readable lines: runs, configurations, seeds, chunks, memory."""
        sizes = [len(c) for c in self.chunks] or [0]
        return "\n".join([
            f"sweep:          {self.spec.name}",
            f"runs:           {len(self.runs)} ({self.spec.n_configs} configurations x "
            f"{self.spec.seeds} seeds)",
            "axes:           " + (", ".join(f"{k} ({len(v)})" for k, v in self.spec.axes.items())
                                   or "none"),
            f"chunks:         {len(self.chunks)} (size <= {max(sizes)}, {self.n_groups} engine "
            f"group(s))",
            f"memory / chunk: {human_bytes(self.chunk_bytes)} (estimated)",
            f"peak memory:    {human_bytes(self.peak_bytes)} with {self.workers} worker(s) "
            "(estimated)",
            f"run time:       {human_seconds(self.estimate.seconds)} with {self.workers} "
            "worker(s) (rough estimate)",
        ])


def make_plan(spec: SweepSpec, runner: ChunkRunner, workers: int = 1,
              chunk_size: int | None = None) -> Plan:
    """Resolve all runs (validating every configuration) and chunk them.

    ``result_bytes`` counts one row per run: its resolved configuration as JSON plus eight
    bytes per metric and bookkeeping column (an upper bound before compression).
    """
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    if spec.n_runs > MAX_RUNS:
        raise ValueError(f"the sweep has {spec.n_runs} runs ({spec.n_configs} configurations x "
                         f"{spec.seeds} seeds), more than the ceiling of {MAX_RUNS}; split it "
                         "or use fewer values or seeds")
    size = spec.chunk_size if chunk_size is None else chunk_size
    runs = spec.runs(runner.resolve)
    chunks = make_chunks(runs, runner, size)
    n_groups = len({runner.group_key(r.config) for r in runs})
    chunk_bytes = max((runner.estimate_bytes(c.runs) for c in chunks), default=0)
    row = np.mean([len(repr(r.config)) for r in runs[:: max(1, len(runs) // 64)]]) if runs else 0
    result_bytes = int(len(runs) * (row + 8 * 32))
    seconds = getattr(runner, "estimate_seconds", None)
    cpu = float(sum(seconds(c.runs) for c in chunks)) if seconds is not None else 0.0
    return Plan(spec, tuple(runs), tuple(chunks), n_groups, int(workers), int(chunk_bytes),
                result_bytes, cpu)
