"""A Prefect server of our own, for ``newsarchive serve`` on a machine without one.

Schedules need a long-lived Prefect server (the temporary one a single ``crawl`` starts
would vanish with it). When ``PREFECT_API_URL`` names none, ``serve`` starts ``prefect
server start`` on 127.0.0.1 with its SQLite database under the data directory and
analytics off, waits until it answers, and stops it when ``serve`` stops.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class ServerFailed(RuntimeError):
    """The local Prefect server did not start."""


def server_environment(home: Path, port: int) -> dict[str, str]:
    """The environment of a local Prefect server keeping its state under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # The server's own settings must not point it at another server.
        "PREFECT_API_URL": "",
    }


@contextmanager
def local_server(home: Path, port: int, startup_timeout: float = 120.0) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1:``port`` until the block ends; yields the
    API URL. ServerFailed if it does not answer within ``startup_timeout`` seconds."""
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url):
        raise ServerFailed(f"something already listens on 127.0.0.1:{port}; set PREFECT_API_URL "
                           f"to use that Prefect server, or NEWSARCHIVE_PREFECT_PORT for another port")
    log_path = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - closed below, after the process
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(port), "--analytics-off"]
    logger.info("starting a Prefect server on 127.0.0.1:%d (state in %s, log in %s)",
                port, home, log_path)
    # Its own process group: Ctrl-C in a terminal reaches the whole group, and the server
    # must outlive serve's own shutdown long enough to be told the runs' final states.
    process = subprocess.Popen(command, env=server_environment(home, port), stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy(api_url):
            if process.poll() is not None:
                raise ServerFailed(f"the Prefect server exited with status {process.returncode}; "
                                   f"see {log_path}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"the Prefect server did not answer within {startup_timeout:.0f} s; "
                                   f"see {log_path}")
            time.sleep(0.5)
        logger.info("Prefect server ready: %s (UI at http://127.0.0.1:%d)", api_url, port)
        yield api_url
    finally:
        _stop(process)
        log.close()


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    logger.info("stopping the Prefect server")
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
