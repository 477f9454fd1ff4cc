"""The quick report opened in a real headless Chromium (Debian's package), driven over the
Chrome DevTools protocol through ``--remote-debugging-pipe`` (no extra Python dependency).

Checks: the summary table lists every claim, every figure loads with a natural size > 0,
the page logs no console error and throws no exception; a full-page screenshot is saved
next to the report.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from forgetlab.claims import claim_ids
from reproduce_run import quick_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--window-size=1280,900",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.quick_run,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed "
                       "(make test installs Debian's chromium package when run as root)"),
]


class DevTools:
    """A minimal Chrome DevTools protocol client over the pipe pair on fds 3 (in) and 4 (out)."""

    def __init__(self, profile_dir: str) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def _fds() -> None:
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            preexec_fn=_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, timeout: float = 60.0,
             **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10.0)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)


def _evaluate(cdp: DevTools, session: str, expression: str) -> Any:
    result = cdp.send("Runtime.evaluate", session, expression=expression, returnByValue=True,
                      awaitPromise=True)
    return result["result"]["value"]


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for e in events:
        params = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(json.dumps(params.get("args")))
        elif e.get("method") == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails")))
        elif e.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


@pytest.fixture(scope="module")
def page() -> dict[str, Any]:
    """Load report.html, collect what the checks need, save a screenshot."""
    run = quick_run()
    report = run.out / "report.html"
    assert report.exists(), run.stderr[-3000:]
    profile_dir = tempfile.mkdtemp(prefix="forgetlab-chromium-")
    cdp = DevTools(profile_dir)
    try:
        target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
        session = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session)
        cdp.send("Page.navigate", session, url=report.resolve().as_uri())
        cdp.wait_for("Page.loadEventFired")
        rows = _evaluate(cdp, session, "Array.from(document.querySelectorAll("
                         "'#summary tr[data-claim]')).map(r => r.dataset.claim)")
        images = _evaluate(cdp, session, "Promise.all(Array.from(document.images).map(i => "
                           "i.decode().catch(() => null).then(() => [i.complete, i.naturalWidth, "
                           "i.naturalHeight])))")
        shot = cdp.send("Page.captureScreenshot", session, format="png",
                        captureBeyondViewport=True)
        screenshot = run.out / "report-screenshot.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)
        cdp.send("Runtime.evaluate", session, expression="1")  # drain late events
        return {"rows": rows, "images": images, "errors": _console_errors(cdp.events),
                "screenshot": screenshot, "claims": run.claims()}
    finally:
        cdp.close()
        shutil.rmtree(profile_dir, ignore_errors=True)


def test_summary_table_lists_every_claim(page: dict[str, Any]) -> None:
    assert page["rows"] == claim_ids()


def test_every_figure_loads(page: dict[str, Any]) -> None:
    n_png = sum(f.endswith(".png") for c in page["claims"] for f in c["figures"])
    assert n_png >= 1
    assert len(page["images"]) == n_png
    for complete, width, height in page["images"]:
        assert complete and width > 0 and height > 0


def test_no_console_errors(page: dict[str, Any]) -> None:
    assert page["errors"] == []


def test_screenshot_saved(page: dict[str, Any]) -> None:
    data = page["screenshot"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
