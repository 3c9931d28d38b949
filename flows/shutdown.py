"""How ``newsarchive serve`` is asked to stop: set by its signal handlers, read by
:func:`flows.deployments.serve`. Free of Prefect imports, so that the handlers are in place
before Prefect is imported (a few seconds, during which a Ctrl-C must not end in a
traceback)."""

from __future__ import annotations

import threading


class Shutdown:
    """A stop request: the first one counts, and a later one may only make it hurry."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        """Seconds the runs in progress get to finish after a stop that allows it."""
        self.requested = threading.Event()
        """Set by the first stop request."""
        self.now = threading.Event()
        """Set when the runs in progress must not wait: they are stopped at once."""
        self.reason = ""
        """What asked first, for the console: ``Ctrl-C``, ``SIGTERM``."""

    def request(self, reason: str, *, now: bool) -> None:
        """Ask to stop (from a signal handler: it only sets events); ``now``: stop the
        runs in progress at once."""
        if not self.requested.is_set():
            self.reason = reason
            self.requested.set()
        if now:
            self.now.set()
