"""Session set-up shared by every test module."""

from __future__ import annotations

import signal

# A shell that starts the suite in the background ignores SIGINT for it, and an ignored signal
# stays ignored in every subprocess, so the tests that send Ctrl-C to a real process would see
# nothing happen.  Python's own handler here means subprocesses start with the default.
signal.signal(signal.SIGINT, signal.default_int_handler)
