"""Run the claims and write the report directory atomically.

The directory holds ``claims.json`` (schema in :mod:`forgetlab.claims.base`), ``config.json``
(profile, seed, claims, command and software versions: enough to regenerate every number),
``figures/<claim>*.png|svg`` and ``report.html``. Everything is written into a temporary sibling
directory first and moved into place at the end, so an interrupted run never leaves a
half-written report; an existing directory is replaced only if it is itself a report.

Claims draw from independent streams (seeded by the root seed and the claim id), so running
them on several processes (``workers``) changes no number; figures are drawn here as each
claim's result arrives.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Generator
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from forgetlab._validation import as_count
from forgetlab.claims.base import ClaimResult, ClaimSpec, Profile, get_profile, run_claim, select
from forgetlab.parallel import WorkerLost, process_pool, terminate
from forgetlab.report.figures import render_claim_figures
from forgetlab.report.html import software_versions, write_report

_MARKER = "claims.json"


def _prepare(out: Path) -> None:
    """Refuse an --out that cannot hold a report: a file, a foreign directory, no permission."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a directory, but {out.name!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise ValueError(
            f"--out {out.name!r} exists, is not empty and is not a forgetlab report; "
            "choose a new directory"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=out.parent)
        Path(probe).rmdir()
    except OSError as err:
        raise ValueError(f"--out is not writable: {err.strerror or err}") from None


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _claim_results(specs: list[ClaimSpec], prof: Profile, seed: int, workers: int,
                   on_start: Callable[[ClaimSpec], None] | None
                   ) -> Generator[tuple[int, ClaimResult], None, None]:
    """(position in ``specs``, result) of each claim as it finishes: here, in order, calling
    ``on_start`` before each, or on ``workers`` processes, in any order.  The processes are
    stopped at once when the caller stops early (Ctrl-C, an error)."""
    if workers <= 1 or len(specs) <= 1:
        for i, spec in enumerate(specs):
            if on_start is not None:
                on_start(spec)
            yield i, run_claim(spec, prof, seed)
        return
    pool = process_pool(min(workers, len(specs)))
    finished = False
    try:
        futures = {pool.submit(run_claim, spec, prof, seed): i for i, spec in enumerate(specs)}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                raise WorkerLost("a claim's worker process died (killed or out of memory); "
                                 "run again, or with --workers 1") from None
            yield futures[fut], result
        finished = True
    finally:
        if finished:
            pool.shutdown()
        else:
            terminate(pool)


def build_report(
    out: str | Path,
    profile: str = "quick",
    claims: list[str] | None = None,
    seed: int = 20260312,
    command: str = "",
    on_start: Callable[[ClaimSpec], None] | None = None,
    on_done: Callable[[ClaimSpec, ClaimResult], None] | None = None,
    workers: int = 1,
) -> list[ClaimResult]:
    """Run the selected claims (all by default) on ``workers`` processes and write the report
    directory ``out``; the numbers do not depend on ``workers``.

    ``on_start(spec)`` is called before each claim when ``workers`` is 1 (with more, the
    claims start together); ``on_done(spec, result)`` as each finishes. Raises ValueError for
    an unknown profile or claim id, a bad ``seed`` or ``workers``, or an ``out`` that cannot
    be written. Returns the claim results in the order of ``claims``.
    """
    prof = get_profile(profile)
    specs = select(claims)
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    workers = as_count(workers, "workers")
    out = Path(out).absolute()
    _prepare(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        by_position: dict[int, ClaimResult] = {}
        # closed at once when this loop stops early, so the processes stop with it
        with contextlib.closing(_claim_results(specs, prof, int(seed), workers,
                                               on_start)) as finishing:
            for i, result in finishing:
                result.figures += render_claim_figures(result, tmp / "figures")
                by_position[i] = result
                if on_done is not None:
                    on_done(specs[i], result)
        results = [by_position[i] for i in range(len(specs))]
        dicts = [r.to_dict() for r in results]
        config = {
            "profile": prof.name,
            "seed": int(seed),
            "claims": [s.claim_id for s in specs],
            "command": command,
            "versions": software_versions(),
        }
        (tmp / "claims.json").write_text(json.dumps(dicts, indent=1) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        write_report(dicts, tmp, config)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return results
