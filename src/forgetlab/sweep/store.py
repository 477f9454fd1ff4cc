"""Result store: a Parquet dataset of one file per chunk, the resolved configurations and a
manifest.

Layout of a sweep directory::

    manifest.json               format, engine, sweep name, seeds, the spec
    configs.parquet             one row per configuration: index, config_id, resolved JSON
    part-<chunk_id>.parquet     one row per run of one chunk
    .lock                       held (flock) by the one process writing the directory

Every file is written atomically: to a temporary name in the same directory, flushed and
fsync-ed, then renamed over its final name (and the directory fsync-ed). A reader therefore
sees a chunk entirely or not at all; temporary files are ignored and cleaned at the next run.
A chunk's rows are complete when its part file exists, so resuming recomputes only runs that
are in no part file. One row per run holds ``run_id``, ``config_id``, ``seed_index``, every
configuration field (dotted names; lists as JSON text) and the engine's metrics; a part
file's schema metadata names its configuration columns.

A directory holds one sweep. Re-running a spec into it may only *extend* it (more seeds or
more configurations of the same engine); a spec that drops stored configurations or changes
the engine would mix incompatible results and is refused. Reading checks run ids as
fixed-width bytes in numpy arrays (32 bytes a run), so a store of a million runs is verified
without building Python sets.
"""

from __future__ import annotations

import contextlib
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

FORMAT = 2
MANIFEST = "manifest.json"
CONFIGS = "configs.parquet"
_PART_PREFIX = "part-"
_TMP_PREFIX = ".tmp-"
BOOKKEEPING = ("run_id", "config_id", "seed_index")
CONFIG_COLUMNS_KEY = b"forgetlab.config_columns"
ID_DTYPE = "S32"


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
    by_config: dict[str, dict[str, Any]] = {}
    flat = [by_config.setdefault(r.config_id, flatten(r.config)) for r in runs]
    for name in dict.fromkeys(k for f in by_config.values() for k in f):
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
    frame = pd.DataFrame(columns)
    frame.attrs["config_columns"] = list(dict.fromkeys(k for f in by_config.values() for k in f))
    return frame


def encode_rows(runs: Sequence[Run], metrics: Mapping[str, Any]) -> bytes:
    """One chunk's rows (:func:`rows_frame`) as Parquet bytes, its configuration columns named
    in the schema metadata: what a worker sends back for the driver to write."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = rows_frame(runs, metrics)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[CONFIG_COLUMNS_KEY] = json.dumps(frame.attrs["config_columns"]).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buffer)
    return buffer.getvalue()


def run_status(diverged_step: Any) -> NDArray[np.str_]:
    """``"diverged"`` where a run was stopped (diverged_step >= 0), else ``"ok"``."""
    return np.where(np.asarray(diverged_step) >= 0, "diverged", "ok")


def _manifest(engine: str, name: str, seeds: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "engine": engine, "name": name, "seeds": seeds, "spec": spec}


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
        raise ValueError(f"DIR: {path} has format {data.get('format')!r}, expected {FORMAT} (a "
                         "store written by another forgetlab version: read it with that "
                         "version, or run the sweep into a new directory)")
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


def _read_part(path: Path, columns: list[str] | None = None, filters: Any = None) -> Any:
    """A Parquet file of the store as a pyarrow table (``columns``, rows matching ``filters``);
    :class:`StoreError` naming the file if it is damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns, filters=filters)
    except (OSError, pa.ArrowException) as err:
        raise _damaged(path, err) from None


def _damaged(path: Path, err: Exception) -> StoreError:
    return StoreError(errno.EIO, f"cannot read {path}: the file is damaged ({err}); delete it "
                      "and run the sweep again to recompute its runs")


def _ids(values: Any) -> NDArray[np.bytes_]:
    return np.asarray(values, dtype=ID_DTYPE)


def held(sorted_ids: NDArray[np.bytes_], ids: NDArray[np.bytes_]) -> NDArray[np.bool_]:
    """Whether each of ``ids`` (any shape) is in ``sorted_ids`` (sorted): a binary search per
    id, 40 bytes of temporaries per id (``np.isin`` would sort both arrays together)."""
    if not len(sorted_ids):
        return np.zeros(ids.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.asarray(sorted_ids[at] == ids)


def scan_runs(directory: str | Path, diverged: bool = False
              ) -> tuple[NDArray[np.bytes_], int]:
    """The run ids stored in the completed chunk files of ``directory`` (sorted; empty if
    none), and how many of those runs diverged when ``diverged``; reads only those columns.

    :class:`StoreError` naming the files if a run is stored twice or a file is damaged."""
    d = Path(directory)
    files = part_files(d) if d.is_dir() else []
    ids, count = [], 0
    for path in files:
        columns = ["run_id"]
        if diverged and "diverged_step" in _schema_names(path):
            columns.append("diverged_step")
        table = _read_part(path, columns)
        ids.append(_ids(table.column("run_id").to_numpy(zero_copy_only=False)))
        if diverged and "diverged_step" in table.column_names:
            count += int((table.column("diverged_step").to_numpy() >= 0).sum())
    stored = np.sort(np.concatenate(ids)) if ids else np.zeros(0, dtype=ID_DTYPE)
    twice = stored[1:][stored[1:] == stored[:-1]]
    if len(twice):
        rid = twice[0]
        where = [p for p in files if rid in _ids(_read_part(p, ["run_id"]).column(0)
                                                 .to_numpy(zero_copy_only=False))]
        raise StoreError(errno.EEXIST, f"run {rid.decode()} is stored twice, in "
                         f"{' and '.join(map(str, where))}: delete the file that is a copy")
    return stored, count


def _schema_names(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as err:
        raise _damaged(path, err) from None


def load_configs(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The resolved configurations of a sweep: ``config_index`` (position in the spec),
    ``config_id`` and ``config`` (canonical JSON; ``json.loads`` gives the configuration that
    ``forgetlab simulate`` accepts)."""
    path = Path(directory) / CONFIGS
    read_manifest(directory)
    if not path.exists():
        raise ValueError(f"DIR: {directory} holds no {CONFIGS}")
    return _read_part(path, columns).to_pandas()


class ConfigWriter:
    """Streams resolved configurations to a temporary Parquet file, one row group per block."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        self._schema = pa.schema([("config_index", pa.int64()), ("config_id", pa.string()),
                                  ("config", pa.string())])
        self._writer = pq.ParquetWriter(path, self._schema, compression="zstd")

    def write(self, start: int, config_ids: Sequence[str], configs: Sequence[str]) -> None:
        """Configurations ``start, start + 1, ...``: their ids and canonical JSON."""
        import pyarrow as pa

        index = np.arange(start, start + len(config_ids), dtype=np.int64)
        self._writer.write_table(pa.table([index, list(config_ids), list(configs)],
                                          schema=self._schema))

    def close(self) -> None:
        """Finish the file and flush it to disk."""
        self._writer.close()
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())


class ResultStore:
    """A sweep directory opened for writing by one process (an exclusive ``flock``).

    ``open`` creates the directory (or opens a stored sweep) and takes the lock;
    ``config_writer`` streams the planned configurations to a temporary file; ``commit``
    checks that they may extend the stored sweep and installs them with the manifest;
    ``write_chunk`` stores one chunk atomically; ``discard`` undoes an uncommitted ``open``
    (a directory it created is removed).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock: int | None = None
        self._created = False
        self._configs: ConfigWriter | None = None

    def open(self) -> None:
        """Create the directory if needed, take its lock and clean stale temporary files."""
        d = self.directory
        try:
            self._created = not d.exists()
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
        if not (d / MANIFEST).exists() and part_files(d):
            self.close()
            raise ValueError(f"--out: {d} holds result files but no {MANIFEST}; "
                             "use an empty directory")
        if (d / MANIFEST).exists():
            try:
                read_manifest(d)
            except ValueError:
                self.close()
                raise

    def config_writer(self) -> ConfigWriter:
        """A writer of the planned configurations into a temporary file of the directory."""
        path = self.directory / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{CONFIGS}"
        try:
            self._configs = ConfigWriter(path)
        except OSError as err:
            raise _io_error("write", path, err) from None
        return self._configs

    def commit(self, engine: str, name: str, seeds: int, spec: Mapping[str, Any],
               config_ids: NDArray[np.bytes_], sample: Sequence[Mapping[str, Any]]) -> list[str]:
        """Check that the planned configurations (``config_ids``; ``sample``, some of them
        resolved, for the message) may extend the stored sweep, then install them and the
        manifest. Returns notes for the user (e.g. the stored sweep had another name)."""
        d = self.directory
        if self._configs is None:
            raise RuntimeError("commit before config_writer")
        notes = []
        if (d / MANIFEST).exists():
            old = read_manifest(d)
            self._check_compatible(old, engine, seeds, config_ids, sample)
            if old.get("name") != name:
                notes.append(f"the sweep stored in {d} was named {old.get('name')!r}; it is now "
                             f"{name!r} (a name does not change results)")
        try:
            self._configs.close()
            os.replace(self._configs.path, d / CONFIGS)
            _fsync_dir(d)
            atomic_write(d / MANIFEST, json.dumps(_manifest(engine, name, seeds, spec)).encode())
        except OSError as err:
            raise _io_error("write", d / MANIFEST, err) from None
        self._configs = None
        self._created = False
        return notes

    def _check_compatible(self, old: Mapping[str, Any], engine: str, seeds: int,
                          config_ids: NDArray[np.bytes_],
                          sample: Sequence[Mapping[str, Any]]) -> None:
        d = self.directory
        problems = []
        if old["engine"] != engine:
            problems.append(f"engine {old['engine']!r} != {engine!r}")
        if seeds < old["seeds"]:
            problems.append(f"seeds {seeds} < stored {old['seeds']}")
        stored = load_configs(d, ["config_id"])["config_id"].to_numpy()
        missing = np.flatnonzero(~held(np.sort(config_ids), _ids(stored)))
        if len(missing):
            first = json.loads(_read_part(d / CONFIGS, ["config"],
                                          [("config_id", "==", stored[missing[0]])])
                               .column(0)[0].as_py())
            hint = _closest_difference(first, sample)
            problems.append(f"{len(missing)} stored configuration(s) are not in this spec "
                            f"(first one differs by {hint})")
        if problems:
            raise ValueError(f"--out: {d} holds results of a different sweep and this spec "
                             f"would mix incompatible results: {'; '.join(problems)}. "
                             "Use a new output directory (a spec may only add seeds or "
                             "configurations to a stored sweep).")

    def write_chunk(self, chunk_id: str, data: bytes) -> Path:
        """Store one chunk's encoded rows (:func:`encode_rows`) atomically as
        ``part-<chunk_id>.parquet``."""
        path = self.directory / f"{_PART_PREFIX}{chunk_id}.parquet"
        try:
            atomic_write(path, data)
        except OSError as err:
            raise _io_error("write", path, err,
                            "; the results stored so far are intact, free space or fix "
                            "permissions and run again to resume") from None
        return path

    def discard(self) -> None:
        """Undo an uncommitted ``open``: :meth:`close`, and remove the directory if ``open``
        created it."""
        created = self._created
        self.close()
        if created:
            (self.directory / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()

    def close(self) -> None:
        """Remove uncommitted configurations and release the directory lock."""
        if self._configs is not None:
            with contextlib.suppress(Exception):
                self._configs.close()
            self._configs.path.unlink(missing_ok=True)
            self._configs = None
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
    a run appears twice or a row's configuration is not in the stored configurations.
    """
    d = Path(directory)
    manifest = read_manifest(d)
    configs = load_configs(d, ["config_id", "config_index"])
    order = pd.Series(configs["config_index"].to_numpy(), index=configs["config_id"].to_numpy())
    scan_runs(d)  # a run stored twice: StoreError naming both files
    frames, config_columns = [], []
    for path in part_files(d):
        table = _read_part(path)
        meta = (table.schema.metadata or {}).get(CONFIG_COLUMNS_KEY)
        frame = table.to_pandas()
        if not len(frame):
            continue
        index = frame["config_id"].map(order)
        if index.isna().any():
            raise StoreError(errno.EINVAL, f"{path} holds rows of configurations that are not "
                             f"in {d / CONFIGS}")
        frame["_order"] = index.to_numpy(dtype=np.int64) * (manifest["seeds"] + 1) \
            + frame["seed_index"].to_numpy()
        frames.append(frame)
        config_columns.append((int(frame["_order"].min()), json.loads(meta) if meta else []))
    if not frames:
        return pd.DataFrame(columns=list(BOOKKEEPING))
    ranks = np.argsort([first for first, _ in config_columns], kind="stable")
    table = pd.concat([frames[i] for i in ranks], ignore_index=True)
    if "diverged_step" in table.columns and "status" not in table.columns:
        table["status"] = run_status(table["diverged_step"])
    fields = list(dict.fromkeys(c for i in ranks for c in config_columns[i][1]))
    metrics = sorted(set(table.columns) - set(BOOKKEEPING) - set(fields) - {"_order"})
    key = table["_order"].to_numpy()
    table = table[[*BOOKKEEPING, *fields, *metrics]]
    return table.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
