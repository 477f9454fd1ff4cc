"""Session set-up shared by every test module."""

from __future__ import annotations

import signal

import pytest

import reproduce_run

# A shell that starts the suite in the background ignores SIGINT for it, and an ignored signal
# stays ignored in every subprocess, so the tests that send Ctrl-C to a real process would see
# nothing happen.  Python's own handler here means subprocesses start with the default.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the quick reproduction run now if a selected test reads it (marker
    ``quick_run``): it runs beside the tests before its first reader, which then only waits
    for what is left."""
    if any(item.get_closest_marker("quick_run") for item in session.items):
        reproduce_run.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    reproduce_run.stop()
