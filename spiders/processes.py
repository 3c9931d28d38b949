"""Watching another process of this machine end: how a crawl's extraction workers follow the
crawl, and how a crawl follows the process that started it."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

POLL_SECONDS = 1.0
"""How often a process is looked for where the kernel offers no pidfds."""


def when_gone(pid: int, then: Callable[[], None], *, name: str) -> None:
    """Call ``then`` in a daemon thread (named ``name``) once process ``pid`` has exited; at
    once if it already has. Waits on a pidfd (Linux 5.3 and later), else polls."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = -1  # gone already
    except (AttributeError, OSError):  # no pidfds (not Linux, or before 5.3): poll
        pidfd = None

    def watch() -> None:
        if pidfd is not None and pidfd >= 0:
            select.select([pidfd], [], [])  # readable once the process has exited
        elif pidfd is None:
            from storage.index import process_alive  # only where there are no pidfds

            while process_alive(pid):
                time.sleep(POLL_SECONDS)
        then()

    threading.Thread(target=watch, daemon=True, name=name).start()
