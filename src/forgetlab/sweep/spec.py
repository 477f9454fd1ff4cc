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
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgetlab.sweep.resources import MAX_AXIS_VALUES, MAX_RUNS

DEFAULT_CHUNK_SIZE = 256
_TOP_KEYS = {"name", "seeds", "chunk_size", "base", "axes"}
_RANDOM_KINDS = ("uniform", "loguniform", "integers", "choice")

Resolver = Callable[[dict[str, Any]], dict[str, Any]]
"""Validates one configuration and returns it resolved (defaults filled, JSON-able)."""


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats in shortest round-trip form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def config_id(resolved: Mapping[str, Any]) -> str:
    """SHA-256 (first 32 hex digits) of the canonical JSON of a resolved configuration."""
    return _digest(canonical_json(resolved))


def run_id(cfg_id: str, seed_index: int) -> str:
    """SHA-256 (first 32 hex digits) of a configuration id and a seed index: a run's identity."""
    return _digest(f"{cfg_id}:{seed_index}")


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


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(value: Any, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], name: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ValueError(f"{name}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def _range_values(field: str, table: Mapping[str, Any]) -> list[Any]:
    name = f"axes.{field}"
    _check_keys(table, {"start", "stop", "num", "step", "log"}, name)
    for key in ("start", "stop"):
        if key not in table:
            raise ValueError(f"{name}: a range needs start and stop (and num or step)")
    start = _number(table["start"], f"{name}.start")
    stop = _number(table["stop"], f"{name}.stop")
    if ("num" in table) == ("step" in table):
        raise ValueError(f"{name}: give exactly one of num and step")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{name}.log must be true or false, got {log!r}")
    if "num" in table:
        num = _count(table["num"], f"{name}.num", high=MAX_AXIS_VALUES)
        if log:
            if start <= 0 or stop <= 0:
                raise ValueError(f"{name}: log ranges need start > 0 and stop > 0")
            values = np.geomspace(start, stop, num, dtype=np.float64)
        else:
            values = np.linspace(start, stop, num, dtype=np.float64)
    else:
        if log:
            raise ValueError(f"{name}: log ranges take num, not step")
        step = _number(table["step"], f"{name}.step")
        if step <= 0 or stop < start:
            raise ValueError(f"{name}: need step > 0 and stop >= start")
        with np.errstate(over="ignore"):
            ratio = float(np.float64(stop - start) / step)
        if not ratio < MAX_AXIS_VALUES:
            raise ValueError(f"{name}: the range has {ratio + 1:.3g} values, more than "
                             f"{MAX_AXIS_VALUES}; use a larger step")
        num = int(math.floor(ratio + 1e-9)) + 1
        values = start + step * np.arange(num, dtype=np.float64)
    both_int = all(isinstance(table[k], int) for k in ("start", "stop")) and not log
    if both_int and "step" in table and isinstance(table["step"], int):
        return [int(v) for v in values]
    # 12 significant digits: 0.1 + 2 * 0.1 is stored and shown as 0.3, not 0.30000000000000004.
    return [float(f"{v:.12g}") for v in values]


def _random_values(field: str, table: Mapping[str, Any]) -> list[Any]:
    name = f"axes.{field}"
    kind = table["random"]
    if kind not in _RANDOM_KINDS:
        raise ValueError(f"{name}.random must be one of {list(_RANDOM_KINDS)}, got {kind!r}")
    allowed = {"random", "num", "seed"} | ({"values"} if kind == "choice" else {"low", "high"})
    _check_keys(table, allowed, name)
    num = _count(table.get("num"), f"{name}.num", high=MAX_AXIS_VALUES)
    seed = _count(table.get("seed"), f"{name}.seed", low=0)
    # The stream is keyed by the field name and the seed, so adding an axis never changes it.
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(_digest(field)[:16], 16)]))
    if kind == "choice":
        options = table.get("values")
        if not isinstance(options, list) or not options:
            raise ValueError(f"{name}.values must be a non-empty list")
        return [options[int(i)] for i in rng.integers(len(options), size=num)]
    low = _number(table.get("low"), f"{name}.low")
    high = _number(table.get("high"), f"{name}.high")
    if not low < high:
        raise ValueError(f"{name}: need low < high, got low={low:g}, high={high:g}")
    if kind == "uniform":
        return [float(v) for v in rng.uniform(low, high, num)]
    if kind == "loguniform":
        if low <= 0:
            raise ValueError(f"{name}.low must be > 0 for loguniform, got {low:g}")
        return [float(v) for v in np.exp(rng.uniform(np.log(low), np.log(high), num))]
    if low != int(low) or high != int(high):
        raise ValueError(f"{name}: integers needs integer low and high")
    return [int(v) for v in rng.integers(int(low), int(high), num, endpoint=True)]


def axis_values(field: str, value: Any) -> list[Any]:
    """The values of one axis from its TOML form (a list, a range table or a random table)."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"axes.{field} must not be an empty list")
        if len(value) > MAX_AXIS_VALUES:
            raise ValueError(f"axes.{field} has {len(value)} values, more than {MAX_AXIS_VALUES}")
        return list(value)
    if isinstance(value, Mapping):
        return _random_values(field, value) if "random" in value else _range_values(field, value)
    raise ValueError(f"axes.{field} must be a list, a range table or a random table, got {value!r}")


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

    def raw_configs(self) -> list[dict[str, Any]]:
        """The unresolved configurations, the Cartesian product of the axes in file order."""
        fields = list(self.axes)
        out = []
        for combo in itertools.product(*(self.axes[f] for f in fields)):
            cfg = json.loads(json.dumps(self.base))
            for f, v in zip(fields, combo, strict=True):
                set_field(cfg, f, v)
            out.append(cfg)
        return out

    def runs(self, resolve: Resolver) -> list[Run]:
        """Resolve every configuration (errors name the axis values) and list the runs.

        Runs are ordered configuration-major then seed; resolution happens for all runs before
        any run executes, so an invalid value anywhere stops the sweep before it starts.
        """
        runs: list[Run] = []
        fields = list(self.axes)
        combos = itertools.product(*(self.axes[f] for f in fields))
        for c, (raw, combo) in enumerate(zip(self.raw_configs(), combos, strict=True)):
            try:
                resolved = resolve(raw)
            except ValueError as err:
                where = ", ".join(f"{f}={v!r}" for f, v in zip(fields, combo, strict=True))
                raise ValueError(f"configuration {c} ({where or 'base'}): {err}") from None
            for f in fields:
                try:
                    get_field(resolved, f)
                except KeyError:
                    raise ValueError(f"axes.{f}: not a configuration field") from None
            cid = config_id(resolved)
            for s in range(self.seeds):
                runs.append(Run(len(runs), c, s, cid, run_id(cid, s), resolved))
        return runs

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (axes expanded to their values)."""
        return {"name": self.name, "seeds": self.seeds, "chunk_size": self.chunk_size,
                "base": self.base, "axes": self.axes}


def parse_spec(data: Mapping[str, Any]) -> SweepSpec:
    """Validate a sweep from its TOML data; every error names the offending field."""
    _check_keys(data, _TOP_KEYS, "sweep")
    name = data.get("name", "sweep")
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {name!r}")
    seeds = _count(data.get("seeds", 1), "seeds", high=MAX_RUNS)
    chunk_size = _count(data.get("chunk_size", DEFAULT_CHUNK_SIZE), "chunk_size")
    base = data.get("base", {})
    if not isinstance(base, Mapping):
        raise ValueError("base must be a table of configuration fields")
    axes_raw = data.get("axes", {})
    if not isinstance(axes_raw, Mapping):
        raise ValueError("axes must be a table: field = list | range | random")
    axes: dict[str, list[Any]] = {}
    for field, value in axes_raw.items():
        if not field or any(not p for p in field.split(".")):
            raise ValueError(f"axes: invalid field name {field!r}")
        if isinstance(value, Mapping) and not ({"random", "start", "stop"} & set(value)):
            raise ValueError(
                f"axes.{field} must be a list, a range table or a random table; a nested table "
                f"was given (quote dotted field names: \"{field}.x\" = [...])")
        axes[field] = axis_values(field, value)
    n_runs = math.prod(len(v) for v in axes.values()) * seeds
    if n_runs > MAX_RUNS:
        raise ValueError(f"the sweep has {n_runs} runs (configurations x seeds), more than the "
                         f"ceiling of {MAX_RUNS}; split it or use fewer values or seeds")
    return SweepSpec(name, json.loads(json.dumps(dict(base))), axes, seeds, chunk_size)


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
