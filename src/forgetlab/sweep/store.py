"""Result store: a Parquet dataset of one file per chunk plus a manifest of configurations.

Layout of a sweep directory::

    manifest.json               engine, seeds and the resolved configurations, keyed by config_id
    part-<chunk_id>.parquet     one row per run of one chunk
    .lock                       held (flock) by the one process writing the directory

Every file is written atomically: to a temporary name in the same directory, flushed and
fsync-ed, then renamed over its final name (and the directory fsync-ed). A reader therefore
sees a chunk entirely or not at all; temporary files are ignored and cleaned at the next run.
A chunk's rows are complete when its part file exists, so resuming recomputes only runs that
are in no part file. One row per run holds ``run_id``, ``config_id``, ``seed_index``, every
configuration field (dotted names; lists as JSON text) and the engine's metrics.

A directory holds one sweep. Re-running a spec into it may only *extend* it (more seeds or
more configurations of the same engine); a spec that drops stored configurations or changes
the engine would mix incompatible results and is refused.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from forgetlab.sweep.spec import Run, canonical_json

FORMAT = 1
MANIFEST = "manifest.json"
_PART_PREFIX = "part-"
_TMP_PREFIX = ".tmp-"
BOOKKEEPING = ("run_id", "config_id", "seed_index")


class StoreError(OSError):
    """The store could not be written (full disk, no permission) or one of its files is
    damaged (truncated, duplicated); the message names the file. What is stored elsewhere
    stays valid."""

    def __str__(self) -> str:
        return str(self.strerror)


def _io_error(action: str, path: Path, err: OSError, hint: str = "") -> StoreError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on device"
    return StoreError(err.errno or 0, f"cannot {action} {path}: {reason}{hint}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, flush, fsync, rename, fsync directory."""
    tmp = path.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}{path.suffix}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested configuration under dotted names; lists become JSON text."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            out[name] = canonical_json(list(value))
        else:
            out[name] = value
    return out


def rows_frame(runs: Sequence[Run], metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The table of one chunk: bookkeeping, configuration fields, then metrics."""
    n = len(runs)
    columns: dict[str, Any] = {
        "run_id": [r.run_id for r in runs],
        "config_id": [r.config_id for r in runs],
        "seed_index": np.array([r.seed_index for r in runs], dtype=np.int64),
    }
    flat = [flatten(r.config) for r in runs]
    for name in dict.fromkeys(k for f in flat for k in f):
        columns[name] = [f.get(name) for f in flat]
    for name, values in metrics.items():
        arr = np.asarray(values)
        if arr.shape != (n,):
            raise ValueError(f"metric {name!r} has shape {arr.shape}, expected ({n},)")
        if name in columns:
            raise ValueError(f"metric {name!r} collides with a configuration field")
        columns[name] = arr
    if "diverged_step" in columns:
        columns["status"] = run_status(columns["diverged_step"])
    return pd.DataFrame(columns)


def run_status(diverged_step: Any) -> NDArray[np.str_]:
    """``"diverged"`` where a run was stopped (diverged_step >= 0), else ``"ok"``."""
    return np.where(np.asarray(diverged_step) >= 0, "diverged", "ok")


def _manifest(engine: str, name: str, seeds: int, runs: Sequence[Run]) -> dict[str, Any]:
    configs: dict[str, Any] = {}
    for r in runs:
        configs.setdefault(r.config_id, r.config)
    return {"format": FORMAT, "engine": engine, "name": name, "seeds": seeds,
            "configs": [{"config_id": k, "config": v} for k, v in configs.items()]}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a sweep directory; ValueError if there is none or it is unreadable."""
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"DIR: {directory} holds no sweep (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"DIR: cannot read {path}: {err}") from None
    if data.get("format") != FORMAT:
        raise ValueError(f"DIR: {path} has format {data.get('format')!r}, expected {FORMAT}")
    return data


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    a, b = flatten(old), flatten(new)
    return [f"{k}: stored {a.get(k)!r}, spec {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _closest_difference(old: Mapping[str, Any], candidates: Iterable[Mapping[str, Any]]) -> str:
    best: list[str] | None = None
    for cand in candidates:
        diff = _differences(old, cand)
        if best is None or len(diff) < len(best):
            best = diff
    return "; ".join((best or [])[:3])


def part_files(directory: Path) -> list[Path]:
    """The completed chunk files of a sweep directory, sorted by name."""
    return sorted(directory.glob(f"{_PART_PREFIX}*.parquet"))


def _read_part(path: Path, columns: list[str] | None = None) -> Any:
    """One part file as a pyarrow table; :class:`StoreError` naming the file if it is damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as err:
        raise StoreError(errno.EIO, f"cannot read {path}: the file is damaged ({err}); delete "
                         "it and run the sweep again to recompute its runs") from None


def _run_files(directory: Path) -> dict[str, Path]:
    """run_id -> the part file storing it; :class:`StoreError` if a run is stored twice."""
    where: dict[str, Path] = {}
    for path in part_files(directory):
        for rid in _read_part(path, ["run_id"]).column(0).to_pylist():
            if rid in where:
                raise StoreError(errno.EEXIST, f"run {rid} is stored twice, in {where[rid]} and "
                                 f"{path}: delete the file that is a copy")
            where[rid] = path
    return where


def stored_run_ids(directory: str | Path) -> set[str]:
    """Run ids present in the completed chunk files of ``directory`` (empty if none); reads only."""
    d = Path(directory)
    return set(_run_files(d)) if d.is_dir() else set()


class ResultStore:
    """A sweep directory opened for writing by one process (an exclusive ``flock``).

    ``open`` validates (or creates) the manifest for the planned runs; ``done_run_ids`` lists
    the runs already stored; ``write_chunk`` stores one chunk atomically.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock: int | None = None

    def open(self, engine: str, name: str, seeds: int, runs: Sequence[Run]) -> list[str]:
        """Create the directory and manifest, or check that ``runs`` may extend the stored sweep.

        Returns notes for the user (e.g. the stored sweep had another name)."""
        d = self.directory
        try:
            d.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _io_error("create the sweep directory", d, err) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise ValueError(f"--out: another sweep is writing to {d}") from None
        for stale in d.glob(f"{_TMP_PREFIX}*"):
            stale.unlink(missing_ok=True)
        new = _manifest(engine, name, seeds, runs)
        notes = []
        if (d / MANIFEST).exists():
            old = read_manifest(d)
            self._check_compatible(old, new)
            if old.get("name") != name:
                notes.append(f"the sweep stored in {d} was named {old.get('name')!r}; it is now "
                             f"{name!r} (a name does not change results)")
        elif part_files(d):
            self.close()
            raise ValueError(f"--out: {d} holds result files but no {MANIFEST}; "
                             "use an empty directory")
        try:
            atomic_write(d / MANIFEST, json.dumps(new, indent=1).encode())
        except OSError as err:
            self.close()
            raise _io_error("write", d / MANIFEST, err) from None
        return notes

    def _check_compatible(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        d = self.directory
        problems = []
        if old["engine"] != new["engine"]:
            problems.append(f"engine {old['engine']!r} != {new['engine']!r}")
        if new["seeds"] < old["seeds"]:
            problems.append(f"seeds {new['seeds']} < stored {old['seeds']}")
        new_ids = {c["config_id"] for c in new["configs"]}
        missing = [c["config"] for c in old["configs"] if c["config_id"] not in new_ids]
        if missing:
            hint = _closest_difference(missing[0], (c["config"] for c in new["configs"]))
            problems.append(f"{len(missing)} stored configuration(s) are not in this spec "
                            f"(first one differs by {hint})")
        if problems:
            self.close()
            raise ValueError(f"--out: {d} holds results of a different sweep and this spec "
                             f"would mix incompatible results: {'; '.join(problems)}. "
                             "Use a new output directory (a spec may only add seeds or "
                             "configurations to a stored sweep).")

    def done_run_ids(self) -> set[str]:
        """Run ids present in completed chunk files (:class:`StoreError` if one is damaged)."""
        return stored_run_ids(self.directory)

    def write_chunk(self, chunk_id: str, frame: pd.DataFrame) -> Path:
        """Store one chunk's rows atomically as ``part-<chunk_id>.parquet``."""
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
        path = self.directory / f"{_PART_PREFIX}{chunk_id}.parquet"
        try:
            atomic_write(path, buffer.getvalue())
        except OSError as err:
            raise _io_error("write", path, err,
                            "; the results stored so far are intact, free space or fix "
                            "permissions and run again to resume") from None
        return path

    def close(self) -> None:
        """Release the directory lock."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_results(directory: str | Path) -> pd.DataFrame:
    """All stored runs of a sweep directory as one DataFrame, one row per run.

    Rows are ordered as the spec lists configurations, then by seed index; columns are the
    bookkeeping columns, the configuration fields, then the metrics by name (with ``status``,
    ``ok`` or ``diverged``, wherever ``diverged_step`` is stored). Raises ValueError if the
    directory holds no sweep; :class:`StoreError` naming the file if a part file is damaged,
    a run appears twice or a row's configuration is not in the manifest.
    """
    d = Path(directory)
    manifest = read_manifest(d)
    order = {c["config_id"]: i for i, c in enumerate(manifest["configs"])}
    _run_files(d)  # a run stored twice: StoreError naming both files
    frames = []
    for path in part_files(d):
        frame = _read_part(path).to_pandas()
        if len(frame) and not set(frame["config_id"]) <= set(order):
            raise StoreError(errno.EINVAL, f"{path} holds rows of configurations that are not "
                             f"in {d / MANIFEST}")
        frames.append(frame)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(BOOKKEEPING))
    table = pd.concat(frames, ignore_index=True)
    if "diverged_step" in table.columns and "status" not in table.columns:
        table["status"] = run_status(table["diverged_step"])
    key = table["config_id"].map(order).to_numpy() * (manifest["seeds"] + 1) + table["seed_index"]
    fields = dict.fromkeys(k for c in manifest["configs"] for k in flatten(c["config"]))
    config_columns = [c for c in fields if c in table.columns]
    metrics = sorted(set(table.columns) - set(BOOKKEEPING) - set(config_columns))
    table = table[[*BOOKKEEPING, *config_columns, *metrics]]
    return table.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
