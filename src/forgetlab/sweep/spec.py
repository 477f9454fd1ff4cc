"""Sweep specification: a base configuration plus axes, expanded into identified runs.

A sweep file (TOML) holds::

    name = "replay-vs-separation"     # free text
    seeds = 3                         # seed indices 0 .. seeds - 1 for every configuration
    chunk_size = 64                   # optional: runs per vectorised call (default 256)

    [base]                            # any SimulationConfig fields (nested tables allowed)
    regime = "finite"
    [base.knobs]
    replay = "old"

    [axes]                            # each key is a dotted configuration field
    "method" = ["sft", "replay-rl"]                                    # a grid list
    "problem.separation" = { start = 1.0, stop = 6.0, num = 6 }        # linspace (or geomspace)
    "knobs.replay_fraction" = { start = 0.1, stop = 0.7, step = 0.2 }  # start + k step <= stop
    "learning_rate" = { random = "loguniform", low = 1e-3, high = 0.1, num = 4, seed = 7 }

The configurations are the Cartesian product of the axes in file order; each configuration is
resolved (validated, defaults filled) by the engine before anything runs, and every run is a
(resolved configuration, seed index) pair. A run's identity is
``run_id = H(config_id : seed index)``, ``config_id = H(canonical JSON of the resolved
configuration)``, H = SHA-256 (first 32 hex digits). The engine draws run (c, s) from
``SeedSequence(config.seed, spawn_key=(int(config_id, 16), s))``
(:mod:`forgetlab.sweep.engine`): its numbers depend on what the run is, never on its position
in the sweep, its chunk or its worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    field_validator,
    model_validator,
)

from forgetlab._validation import Float, Int, validated
from forgetlab.sweep.resources import MAX_AXIS_VALUES, MAX_RUNS

DEFAULT_CHUNK_SIZE = 256

Resolver = Callable[[dict[str, Any]], dict[str, Any]]
"""Validates one configuration and returns it resolved (defaults filled, JSON-able)."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats in shortest round-trip form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(text: str) -> str:
    """SHA-256 of ``text``, its first 32 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def config_id(resolved: Mapping[str, Any]) -> str:
    """SHA-256 (first 32 hex digits) of the canonical JSON of a resolved configuration."""
    return digest(canonical_json(resolved))


def run_id(cfg_id: str, seed_index: int) -> str:
    """SHA-256 (first 32 hex digits) of a configuration id and a seed index: a run's identity."""
    return digest(f"{cfg_id}:{seed_index}")


@dataclass(frozen=True)
class Run:
    """One run of a sweep: a resolved configuration and a seed index.

    ``index`` orders the runs of a sweep for display only; it never feeds a random stream.
    """

    index: int
    config_index: int
    seed_index: int
    config_id: str
    run_id: str
    config: dict[str, Any]

    @property
    def entropy(self) -> int:
        """The 128-bit integer of ``run_id``: the run's ``SeedSequence`` entropy."""
        return int(self.run_id, 16)

    def seed_sequence(self) -> np.random.SeedSequence:
        """The run's root ``SeedSequence``, a function of its identity alone."""
        return np.random.SeedSequence(self.entropy)


def get_field(config: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a nested configuration; KeyError if absent."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def set_field(config: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a nested dict, creating intermediate tables."""
    parts = path.split(".")
    node = config
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"axes.{path}: {'.'.join(parts[: i + 1])} is not a table")
        node = child
    node[parts[-1]] = value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: A number that keeps its type (an integer range of integer steps stays integer).
Number = Int | Float
Count = Annotated[Int, Field(ge=1, le=MAX_AXIS_VALUES)]


class ListAxis(RootModel[Annotated[list[Any], Field(min_length=1, max_length=MAX_AXIS_VALUES)]]):
    """A grid list: the axis takes these values in order."""

    def values(self, field: str) -> list[Any]:
        """The axis values."""
        return list(self.root)


class RangeAxis(_Strict):
    """``start .. stop`` in ``num`` values (linspace, or geomspace with ``log``) or by ``step``
    (start + k step <= stop)."""

    start: Number
    stop: Number
    num: Count | None = None
    step: Number | None = Field(None, gt=0)
    log: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> RangeAxis:
        if (self.num is None) == (self.step is None):
            raise ValueError("give exactly one of num and step")
        if self.log and self.step is not None:
            raise ValueError("log ranges take num, not step")
        if self.log and (self.start <= 0 or self.stop <= 0):
            raise ValueError("log ranges need start > 0 and stop > 0")
        if self.step is not None:
            if self.stop < self.start:
                raise ValueError("a step range needs stop >= start")
            if not self._ratio() < MAX_AXIS_VALUES:
                raise ValueError(f"the range has {self._ratio() + 1:.3g} values, more than "
                                 f"{MAX_AXIS_VALUES}; use a larger step")
        return self

    def _ratio(self) -> float:
        with np.errstate(over="ignore"):
            return float(np.float64(self.stop - self.start) / float(self.step or 1))

    def values(self, field: str) -> list[Any]:
        """The axis values; integers when start, stop and step are all integers."""
        if self.num is not None:
            space = np.geomspace if self.log else np.linspace
            values = space(self.start, self.stop, self.num, dtype=np.float64)
        else:
            num = int(math.floor(self._ratio() + 1e-9)) + 1
            values = self.start + float(self.step or 0) * np.arange(num, dtype=np.float64)
        if all(isinstance(v, int) for v in (self.start, self.stop, self.step)):
            return [int(v) for v in values]
        # 12 significant digits: 0.1 + 2 * 0.1 is stored and shown as 0.3, not 0.30000000000000004.
        return [float(f"{v:.12g}") for v in values]


class RandomAxis(_Strict):
    """``num`` random draws, reproducible from ``seed`` and the field name: ``uniform`` or
    ``loguniform`` on [low, high], ``integers`` in {low .. high}, ``choice`` among ``values``."""

    random: Literal["uniform", "loguniform", "integers", "choice"]
    num: Count
    seed: Int = Field(ge=0)
    low: Number | None = None
    high: Number | None = None
    values_: list[Any] | None = Field(None, alias="values", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RandomAxis:
        if self.random == "choice":
            if self.values_ is None or self.low is not None or self.high is not None:
                raise ValueError("choice takes values (a non-empty list), not low and high")
            return self
        if self.values_ is not None or self.low is None or self.high is None:
            raise ValueError(f"{self.random} takes low and high, not values")
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low:g}, high={self.high:g}")
        if self.random == "loguniform" and self.low <= 0:
            raise ValueError(f"low must be > 0 for loguniform, got {self.low:g}")
        if self.random == "integers" and (self.low != int(self.low) or
                                          self.high != int(self.high)):
            raise ValueError("integers needs integer low and high")
        return self

    def values(self, field: str) -> list[Any]:
        """The draws; the stream is keyed by the field name and the seed, so adding an axis never
        changes it."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed,
                                                            int(digest(field)[:16], 16)]))
        if self.values_ is not None:
            return [self.values_[int(i)] for i in rng.integers(len(self.values_), size=self.num)]
        low, high = float(self.low or 0), float(self.high or 0)
        if self.random == "uniform":
            return [float(v) for v in rng.uniform(low, high, self.num)]
        if self.random == "loguniform":
            return [float(v) for v in np.exp(rng.uniform(np.log(low), np.log(high), self.num))]
        return [int(v) for v in rng.integers(int(low), int(high), self.num, endpoint=True)]


def axis_values(field: str, value: Any) -> list[Any]:
    """The values of one axis from its TOML form (a list, a range table or a random table)."""
    kind: type[ListAxis | RangeAxis | RandomAxis]
    if isinstance(value, list):
        kind = ListAxis
    elif isinstance(value, Mapping) and "random" in value:
        kind = RandomAxis
    elif isinstance(value, Mapping) and {"start", "stop"} & set(value):
        kind = RangeAxis
    elif isinstance(value, Mapping):
        raise ValueError(
            f"axes.{field} must be a list, a range table or a random table; a nested table "
            f"was given (quote dotted field names: \"{field}.x\" = [...])")
    else:
        raise ValueError(f"axes.{field} must be a list, a range table or a random table, "
                         f"got {value!r}")
    return validated(kind, value, noun="sweep", prefix=f"axes.{field}").values(field)


class _SpecFile(_Strict):
    """The top level of a sweep file."""

    name: str = "sweep"
    seeds: Int = Field(1, ge=1, le=MAX_RUNS)
    chunk_size: Int = Field(DEFAULT_CHUNK_SIZE, ge=1)
    base: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("axes")
    @classmethod
    def _field_names(cls, axes: dict[str, Any]) -> dict[str, Any]:
        for field in axes:
            if not field or any(not p for p in field.split(".")):
                raise ValueError(f"invalid field name {field!r}")
        return axes


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep: base configuration, axes (field -> values), seeds."""

    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    seeds: int
    chunk_size: int = DEFAULT_CHUNK_SIZE

    @property
    def n_configs(self) -> int:
        """Number of configurations: the product of the axis lengths."""
        return math.prod(len(v) for v in self.axes.values())

    @property
    def n_runs(self) -> int:
        """Number of runs: configurations times seeds."""
        return self.n_configs * self.seeds

    def axis_values(self, index: int) -> list[Any]:
        """The axis values of configuration ``index`` in the Cartesian product of the axes in
        file order (the last axis varies fastest)."""
        if not 0 <= index < self.n_configs:
            raise IndexError(f"configuration {index} of {self.n_configs}")
        values = []
        for field in reversed(self.axes):
            index, k = divmod(index, len(self.axes[field]))
            values.append(self.axes[field][k])
        return values[::-1]

    def raw_config(self, index: int) -> dict[str, Any]:
        """Configuration ``index``, unresolved: the base with its axis values set."""
        cfg = json.loads(json.dumps(self.base))
        for field, value in zip(self.axes, self.axis_values(index), strict=True):
            set_field(cfg, field, value)
        return cfg

    def resolve(self, index: int, resolve: Resolver) -> dict[str, Any]:
        """Configuration ``index`` resolved by ``resolve``; a ValueError names the configuration
        by its number and axis values, or the axis that is not a configuration field."""
        try:
            resolved = resolve(self.raw_config(index))
        except ValueError as err:
            where = ", ".join(f"{f}={v!r}" for f, v in zip(self.axes, self.axis_values(index),
                                                           strict=True))
            raise ValueError(f"configuration {index} ({where or 'base'}): {err}") from None
        for field in self.axes:
            try:
                get_field(resolved, field)
            except KeyError:
                raise ValueError(f"axes.{field}: not a configuration field") from None
        return resolved

    def runs(self, resolve: Resolver) -> list[Run]:
        """Every run, configuration-major then seed, each configuration resolved
        (:meth:`resolve`); for small sweeps and tests, as it holds every configuration."""
        return [run for c in range(self.n_configs)
                for run in self.config_runs(c, self.resolve(c, resolve), range(self.seeds))]

    def config_runs(self, index: int, resolved: dict[str, Any], seeds: Iterable[int]
                    ) -> list[Run]:
        """The runs of configuration ``index`` (resolved) for the given seed indices."""
        cid = config_id(resolved)
        return [Run(index * self.seeds + int(s), index, int(s), cid, run_id(cid, int(s)),
                    resolved) for s in seeds]

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (axes expanded to their values)."""
        return {"name": self.name, "seeds": self.seeds, "chunk_size": self.chunk_size,
                "base": self.base, "axes": self.axes}


def parse_spec(data: Mapping[str, Any]) -> SweepSpec:
    """Validate a sweep from its TOML data; every error names the offending field and its
    allowed range."""
    top = validated(_SpecFile, data, noun="sweep")
    axes = {field: axis_values(field, value) for field, value in top.axes.items()}
    n_runs = math.prod(len(v) for v in axes.values()) * top.seeds
    if n_runs > MAX_RUNS:
        raise ValueError(f"the sweep has {n_runs} runs (configurations x seeds), more than the "
                         f"ceiling of {MAX_RUNS}; split it or use fewer values or seeds")
    return SweepSpec(top.name, json.loads(json.dumps(top.base)), axes, top.seeds, top.chunk_size)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep TOML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"SPEC: cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"SPEC: {path} is not UTF-8 text: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"SPEC: {path} is not valid TOML: {err}") from None
    return parse_spec(data)
