"""One run of ``forgetlab reproduce --profile quick`` per test session, shared by the tests.

The run goes through the real command line (a subprocess), so its exit code and its files are
exactly what a user gets. It is cached in-process: every test module that asks for it gets the
same directory, and the suite runs once.
"""

from __future__ import annotations

import functools
import json
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
def quick_run() -> QuickRun:
    """Run the quick profile once (with --allow-fail so every claim is reported)."""
    root = Path(tempfile.mkdtemp(prefix="forgetlab-quick-"))
    out = root / "report"
    cmd = [str(Path(sys.executable).parent / "forgetlab"), "reproduce", "--profile", "quick",
           "--out", str(out), "--allow-fail"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    return QuickRun(out, proc.returncode, proc.stdout, proc.stderr)
