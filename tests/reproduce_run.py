"""One run of ``forgetlab reproduce --profile quick`` per test session, shared by the tests.

The run goes through the real command line (a subprocess), so its exit code and its files are
exactly what a user gets. It is cached in-process: every test module that asks for it gets the
same directory, and the suite runs once. ``conftest.py`` starts it when a selected test is
marked ``quick_run`` (:func:`start`), so it runs beside the tests that come before its first
reader, and removes it at the end (:func:`stop`).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class QuickRun:
    """The report directory, the exit code and the captured output."""

    out: Path
    returncode: int
    stdout: str
    stderr: str

    def claims(self) -> list[dict[str, Any]]:
        return json.loads((self.out / "claims.json").read_text())

    def claim(self, claim_id: str) -> dict[str, Any]:
        return next(c for c in self.claims() if c["claim_id"] == claim_id)


@functools.cache
def start() -> tuple[subprocess.Popen[str], Path]:
    """Start the quick profile (with --allow-fail so every claim is reported), once."""
    out = Path(tempfile.mkdtemp(prefix="forgetlab-quick-")) / "report"
    cmd = [str(Path(sys.executable).parent / "forgetlab"), "reproduce", "--profile", "quick",
           "--out", str(out), "--allow-fail"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out


def stop() -> None:
    """At the end of the session: kill the run if it is still going (Ctrl-C, a failing
    first reader) and remove its directory."""
    if start.cache_info().currsize:
        proc, out = start()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(out.parent, ignore_errors=True)


@functools.cache
def quick_run() -> QuickRun:
    """The quick profile's run, waited for (started here if it was not yet)."""
    proc, out = start()
    stdout, stderr = proc.communicate(timeout=1800)
    return QuickRun(out, proc.returncode, stdout, stderr)
