"""What every command shares: exit codes, output-path checks and error handling.

Exit codes, the same in every command:

* 0: done;
* 1: the work ran but its result failed: a claim failed (``reproduce``), runs diverged with
  ``--fail-on-diverged``, a worker was lost, the result store cannot be written or is damaged;
* 2: bad input (a value out of range, an unreadable file, an output path that cannot be
  written, an estimate past the resource bounds): one line naming the input;
* 130: interrupted (Ctrl-C); what was completed is kept, temporary files are removed.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


def _probe(directory: Path, option: str, target: Path) -> None:
    """Create and delete a file in ``directory``: the only sure test that it is writable."""
    try:
        fd, name = tempfile.mkstemp(prefix=".forgetlab-probe-", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise ValueError(f"{option}: cannot write {target}: {err.strerror or err}") from None


def check_output_file(path: str | Path, option: str) -> Path:
    """Check, before any work, that ``path`` can be written as a file (ValueError naming
    ``option`` otherwise): its folder exists and is writable, and it is not a folder."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option}: {p} is a directory, expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{option}: cannot write {p}: the folder {parent} does not exist")
    _probe(parent, option, p)
    return p


def check_output_dir(path: str | Path, option: str) -> Path:
    """Check that ``path`` is (or can be created as) a writable folder: its nearest existing
    ancestor must be a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option}: {p} exists and is not a directory")
    existing = p
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option}: cannot create {p}: {existing} is not a directory")
    _probe(existing, option, p)
    return p


def fail(message: str, code: int = EXIT_INPUT) -> None:
    """Print ``error: message`` on standard error and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def report_diverged(diverged: int, total: int, what: str, fail_on_diverged: bool) -> None:
    """Warn on standard error that ``diverged`` of ``total`` runs diverged (``what`` says how and
    that their values are not results); exit with EXIT_FAILED under ``--fail-on-diverged``."""
    click.echo(f"diverged: {diverged} of {total} run(s) {what}"
               + ("" if fail_on_diverged else "; --fail-on-diverged makes this an error"),
               err=True)
    if fail_on_diverged:
        sys.exit(EXIT_FAILED)


def handle_errors(invoke: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a click ``invoke``: ValueError -> one line, exit 2; MemoryError -> one line,
    exit 2; the store's errors and lost workers -> one line, exit 1; Ctrl-C -> exit 130."""

    @wraps(invoke)
    def wrapper(self: Any, ctx: click.Context) -> Any:
        from forgetlab.parallel import WorkerLost
        from forgetlab.sweep.store import StoreError

        try:
            return invoke(self, ctx)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except ValueError as err:
            fail(str(err).splitlines()[0] if str(err) else repr(err))
        except MemoryError:
            fail("out of memory: the machine cannot hold this run; use a smaller setting "
                 "(fewer steps, seeds, configurations or a larger stride)")
        except (StoreError, WorkerLost) as err:
            fail(str(err), EXIT_FAILED)

    return wrapper
