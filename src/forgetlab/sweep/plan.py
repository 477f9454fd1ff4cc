"""Sweep plan: every configuration resolved once, and the runs packed into engine chunks.

A *chunk runner* is the engine seen from the sweep: it resolves configurations, says which
configurations may share one vectorised call (its ``group_key``), estimates a call's memory
and time, and runs a chunk, returning one value per run for each metric.

Planning streams: configurations are resolved (validated) in blocks of :data:`BLOCK`, on the
executor's workers when one is given, and the plan keeps per configuration only its id and
its group (about 40 bytes), never the configuration itself. A chunk is a list of
configuration indices of one group with the seed indices to run; the worker that runs it
re-resolves its configurations from the spec, checks their ids against the plan and encodes
its rows, so the driver only writes files. Chunks are packed per group in configuration
order, whole configurations at a time, up to ``chunk_size`` runs (at least one
configuration); a chunk's id is the hash of its run ids, so the same runs always make the same
chunk whatever the executor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from forgetlab.progress import ProgressBar
from forgetlab.sweep.resources import MAX_RUNS, Estimate, human_bytes, human_seconds
from forgetlab.sweep.spec import Run, SweepSpec, canonical_json, digest, run_id

if TYPE_CHECKING:
    from forgetlab.sweep.executors import Executor

BLOCK = 1000
"""Configurations resolved per planning task."""

ID_DTYPE = "S32"
"""A configuration or run id (32 hex digits) as fixed-width bytes."""


@runtime_checkable
class ChunkRunner(Protocol):
    """The engine interface a sweep needs. Implementations must be picklable (module level).

    * ``name``: engine identity and result-schema version, stored in the manifest; results of
      different engines never mix.
    * ``resolve(config)``: validate one configuration and return it resolved (defaults filled,
      JSON-able); raise ``ValueError`` naming the field.
    * ``group_key(config)``: resolved configurations whose keys are equal can be executed in
      one vectorised call.
    * ``estimate_bytes(config, configs, seeds)``: peak working memory of one call on
      ``configs`` configurations of ``config``'s group and seed indices ``0 .. seeds - 1``.
    * ``estimate_seconds(config, configs, seeds)`` (optional): rough time of that call on one
      core.
    * ``run(runs)``: execute one chunk; returns ``{metric: array [len(runs)]}``, each run's
      values a function of that run alone (its config and ``Run.seed_sequence()``).
    """

    name: str

    def resolve(self, config: dict[str, Any]) -> dict[str, Any]: ...

    def group_key(self, config: dict[str, Any]) -> Hashable: ...

    def estimate_bytes(self, config: dict[str, Any], configs: int, seeds: int) -> int: ...

    def run(self, runs: Sequence[Run]) -> dict[str, NDArray[Any]]: ...


@dataclass(frozen=True)
class Block:
    """Configurations ``start .. start + len(config_ids) - 1`` resolved: their ids, group keys
    and canonical JSON; ``error`` is the first resolution error (the block stops there)."""

    start: int
    config_ids: list[str]
    keys: list[Hashable]
    configs: list[str]
    error: str | None = None


def resolve_block(task: tuple[ChunkRunner, SweepSpec, int, int]) -> Block:
    """Worker side: resolve configurations ``start .. stop - 1`` of the spec."""
    runner, spec, start, stop = task
    ids: list[str] = []
    keys: list[Hashable] = []
    texts: list[str] = []
    for c in range(start, stop):
        try:
            resolved = spec.resolve(c, runner.resolve)
        except ValueError as err:
            return Block(start, ids, keys, texts, str(err))
        text = canonical_json(resolved)
        ids.append(digest(text))
        keys.append(runner.group_key(resolved))
        texts.append(text)
    return Block(start, ids, keys, texts)


@dataclass(frozen=True)
class Group:
    """Configurations that share one vectorised call: their key and the first of them,
    resolved (what the estimates read)."""

    key: Hashable
    config: dict[str, Any]


@dataclass(frozen=True)
class Chunk:
    """Runs executed in one engine call: configurations (indices into the spec) of one group,
    and ``pending[k, s]``: whether seed index s of the k-th is run."""

    group: int
    configs: NDArray[np.int64]
    pending: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.pending.sum())

    def seeds(self) -> Iterator[tuple[int, NDArray[np.int64]]]:
        """(configuration index, its seed indices to run) in order."""
        for c, row in zip(self.configs, self.pending, strict=True):
            yield int(c), np.flatnonzero(row)


def chunk_id(run_ids: Sequence[str]) -> str:
    """The id of a chunk: SHA-256 (hex, 32 chars) of its run ids in order."""
    return digest("\n".join(run_ids))


@dataclass(frozen=True)
class Plan:
    """How a sweep will run: per configuration its id and group, the groups, and every run
    packed into chunks, with the estimated memory and time."""

    spec: SweepSpec
    config_ids: NDArray[np.bytes_]
    group_of: NDArray[np.int32]
    groups: tuple[Group, ...]
    chunks: tuple[Chunk, ...]
    chunk_size: int
    workers: int
    chunk_bytes: int
    cpu_seconds: float
    sample: tuple[dict[str, Any], ...] = ()

    @property
    def n_runs(self) -> int:
        """Runs in the sweep: configurations times seeds."""
        return len(self.config_ids) * self.spec.seeds

    @property
    def driver_bytes(self) -> int:
        """Memory the driver holds beyond the interpreter: about 48 bytes per configuration
        (ids, groups, chunks) and 200 per run (run ids, pending flags, the ids read back
        from the store and the search over them; bench/sweep_scale.py measures 180 in all at
        a million runs of one seed each), plus 8 MiB for the chunk being written."""
        return int(len(self.config_ids) * 48 + self.n_runs * 200 + 8 * 2**20)

    @property
    def peak_bytes(self) -> int:
        """Estimated peak memory: ``workers`` chunks in flight plus the driver's."""
        return self.workers * self.chunk_bytes + self.driver_bytes

    @property
    def estimate(self) -> Estimate:
        """Peak memory and wall time (the chunks' time spread over ``workers``)."""
        return Estimate(self.peak_bytes, self.cpu_seconds / self.workers)

    def run_ids(self) -> NDArray[np.bytes_]:
        """Every run id, ``[configurations, seeds]``, configuration-major."""
        seeds = range(self.spec.seeds)
        out = np.empty((len(self.config_ids), self.spec.seeds), dtype=ID_DTYPE)
        for c, cid in enumerate(self.config_ids):
            out[c] = [run_id(cid.decode(), s) for s in seeds]
        return out

    def pack(self, pending: NDArray[np.bool_] | None = None) -> list[Chunk]:
        """The pending runs (``[configurations, seeds]`` flags; all when None) packed into
        chunks: per group in configuration order, whole configurations up to ``chunk_size``
        runs and at least one, so the engine never simulates a seed twice."""
        return pack_chunks(self.group_of, self.spec.seeds, self.chunk_size, pending)

    def summary(self) -> str:
        """A few human-readable lines: runs, configurations, seeds, chunks, memory."""
        sizes = [len(c) for c in self.chunks] or [0]
        return "\n".join([
            f"sweep:          {self.spec.name}",
            f"runs:           {self.n_runs} ({self.spec.n_configs} configurations x "
            f"{self.spec.seeds} seeds)",
            "axes:           " + (", ".join(f"{k} ({len(v)})" for k, v in self.spec.axes.items())
                                   or "none"),
            f"chunks:         {len(self.chunks)} (size <= {max(sizes)}, {len(self.groups)} "
            "engine group(s))",
            f"memory / chunk: {human_bytes(self.chunk_bytes)} (estimated)",
            f"peak memory:    {human_bytes(self.peak_bytes)} with {self.workers} worker(s) "
            "(estimated)",
            f"run time:       {human_seconds(self.estimate.seconds)} with {self.workers} "
            "worker(s) (rough estimate)",
        ])


def pack_chunks(group_of: NDArray[np.int32], seeds: int, chunk_size: int,
                pending: NDArray[np.bool_] | None = None) -> list[Chunk]:
    """Chunks of the pending (configuration, seed) pairs; see :meth:`Plan.pack`."""
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size}")
    if pending is None:
        pending = np.ones((len(group_of), seeds), dtype=bool)
    counts = pending.sum(axis=1)
    order = np.argsort(group_of, kind="stable")
    order = order[counts[order] > 0]
    bounds = np.flatnonzero(np.diff(group_of[order])) + 1
    chunks: list[Chunk] = []
    for members in np.split(order, bounds):
        total = np.cumsum(counts[members])
        start, offset = 0, 0
        while start < len(members):
            stop = max(start + 1, int(np.searchsorted(total, offset + chunk_size, side="right")))
            configs = members[start:stop]
            chunks.append(Chunk(int(group_of[configs[0]]), configs, pending[configs]))
            offset = int(total[stop - 1])
            start = stop
    return chunks


def _blocks(spec: SweepSpec, runner: ChunkRunner, executor: Executor | None
            ) -> Iterator[Block]:
    """Resolved blocks as they arrive: on the executor, or one after another here."""
    tasks = [(runner, spec, s, min(s + BLOCK, spec.n_configs))
             for s in range(0, spec.n_configs, BLOCK)]
    if executor is None or len(tasks) == 1:
        yield from map(resolve_block, tasks)
    else:
        for _, block in executor.map_unordered(resolve_block, tasks):
            yield block


def make_plan(spec: SweepSpec, runner: ChunkRunner, workers: int = 1,
              chunk_size: int | None = None, executor: Executor | None = None,
              on_block: Callable[[Block], None] | None = None,
              progress: bool = False) -> Plan:
    """Resolve every configuration (validating it), group the configurations and chunk the runs.

    Blocks of :data:`BLOCK` configurations are resolved on ``executor`` (here when None or
    when there is one block) and handed to ``on_block`` as they arrive (the driver stores the
    resolved configurations); ``progress`` shows a bar when there are several blocks. The
    first invalid configuration found stops planning with its ValueError.
    """
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    if spec.n_runs > MAX_RUNS:
        raise ValueError(f"the sweep has {spec.n_runs} runs ({spec.n_configs} configurations x "
                         f"{spec.seeds} seeds), more than the ceiling of {MAX_RUNS}; split it "
                         "or use fewer values or seeds")
    size = spec.chunk_size if chunk_size is None else chunk_size
    n = spec.n_configs
    ids = np.zeros(n, dtype=ID_DTYPE)
    local = np.zeros(n, dtype=np.int32)
    block_keys: dict[int, tuple[list[Hashable], dict[Hashable, str]]] = {}
    sample: tuple[dict[str, Any], ...] = ()
    with ProgressBar("resolving configurations", n, "configurations",
                     enabled=progress and n > BLOCK) as bar:
        for block in _blocks(spec, runner, executor):
            if block.error is not None:
                if executor is not None:
                    executor.cancel()
                raise ValueError(block.error)
            stop = block.start + len(block.config_ids)
            ids[block.start:stop] = block.config_ids
            distinct = list(dict.fromkeys(block.keys))
            where = {k: i for i, k in enumerate(distinct)}
            local[block.start:stop] = [where[k] for k in block.keys]
            firsts: dict[Hashable, str] = {}
            for k, text in zip(block.keys, block.configs, strict=True):
                firsts.setdefault(k, text)
            block_keys[block.start] = (distinct, firsts)
            if block.start == 0:
                sample = tuple(json.loads(t) for t in block.configs)
            if on_block is not None:
                on_block(block)
            bar.advance(len(block.config_ids))
    group_index: dict[Hashable, int] = {}
    groups: list[Group] = []
    group_of = np.zeros(n, dtype=np.int32)
    for start in sorted(block_keys):  # groups numbered by their first configuration
        distinct, firsts = block_keys[start]
        renumber = np.zeros(len(distinct), dtype=np.int32)
        for i, key in enumerate(distinct):
            if key not in group_index:
                group_index[key] = len(groups)
                groups.append(Group(key, json.loads(firsts[key])))
            renumber[i] = group_index[key]
        stop = min(start + BLOCK, n)
        group_of[start:stop] = renumber[local[start:stop]]
    chunks = pack_chunks(group_of, spec.seeds, size)
    chunk_bytes = max((runner.estimate_bytes(groups[c.group].config, len(c.configs),
                                             spec.seeds) for c in chunks), default=0)
    seconds = getattr(runner, "estimate_seconds", None)
    cpu = (float(sum(seconds(groups[c.group].config, len(c.configs), spec.seeds)
                     for c in chunks)) if seconds is not None else 0.0)
    return Plan(spec, ids, group_of, tuple(groups), tuple(chunks), int(size), int(workers),
                int(chunk_bytes), cpu, sample)


@dataclass(frozen=True)
class ChunkTask:
    """What a worker needs to run one chunk: the runner, the spec, the chunk and the ids the
    plan expects for its configurations."""

    runner: ChunkRunner
    spec: SweepSpec
    chunk: Chunk
    config_ids: NDArray[np.bytes_]


def chunk_runs(task: ChunkTask) -> list[Run]:
    """The chunk's runs, each configuration re-resolved from the spec; a RuntimeError if a
    configuration resolves to another id than at planning (a worker running other code)."""
    spec, chunk = task.spec, task.chunk
    runs: list[Run] = []
    for (c, seeds), expected in zip(chunk.seeds(), task.config_ids, strict=True):
        config_runs = spec.config_runs(c, spec.resolve(c, task.runner.resolve), seeds)
        if config_runs[0].config_id != expected.decode():
            raise RuntimeError(f"configuration {c} resolves to {config_runs[0].config_id} on "
                               f"this worker but to {expected.decode()} when planned: the "
                               "workers run another version of the engine")
        runs.extend(config_runs)
    return runs
