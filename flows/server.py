"""Prefect servers of our own, for commands run on a machine without one.

Schedules need a long-lived Prefect server. When ``PREFECT_API_URL`` names none, ``serve``
starts ``prefect server start`` on 127.0.0.1 with its SQLite database under the data
directory and analytics off, waits until it answers, and stops it when ``serve`` stops
(:func:`local_server`). Its pid is kept beside the database, so that a ``serve`` started
after one that was killed stops the server the killed one left running
(:func:`stop_leftover_server`) rather than find its port taken.

A one-off ``crawl`` gets a temporary server instead (:class:`TemporaryServer`), the same as
the one Prefect's client starts by itself when no API is set (the API alone, no UI, no
background services, with Prefect's own state under ``PREFECT_HOME``, so the run shows up
there later), but started by the command the moment it starts, alongside its first crawls,
and without the command importing Prefect's server code just to launch it (1.5-2.5 s of CPU
and 70 MB in the command, README "Throughput").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.index import process_alive

logger = logging.getLogger(__name__)


DATABASE_FILE = "prefect.db"
"""File under a local server's home holding its SQLite database (Prefect's own default name,
which its temporary servers use under ``PREFECT_HOME`` too)."""

PID_FILE = "server.pid"
"""File under the server's home holding the pid of the server :func:`local_server` runs,
and that of the command that runs it."""


class ServerFailed(RuntimeError):
    """The local Prefect server did not start."""


class StartAborted(Exception):
    """The command was asked to stop while its Prefect server was starting."""


def server_environment(home: Path, port: int) -> dict[str, str]:
    """The environment of a local Prefect server keeping its state under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / DATABASE_FILE}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # The server's own settings must not point it at another server.
        "PREFECT_API_URL": "",
    }


def stop_leftover_server(home: Path, grace: float = 20.0) -> int | None:
    """Stop the Prefect server that a ``serve`` killed earlier left running with its state
    under ``home`` (both pids are in :data:`PID_FILE`); its pid, or None if there was none.
    A server whose ``serve`` still runs is left alone."""
    pid_file = home / PID_FILE
    try:
        pid, owner = (int(p) for p in pid_file.read_text().split())
    except (FileNotFoundError, ValueError):
        return None
    if process_alive(owner):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    leftover = process_alive(pid) and (not cmdline.exists() or b"server" in cmdline.read_bytes())
    if leftover:
        logger.info("stopping the Prefect server left running by a killed serve (pid %d)", pid)
        stop_process_group(pid, grace)
    pid_file.unlink(missing_ok=True)
    return pid if leftover else None


@contextmanager
def local_server(home: Path, port: int, startup_timeout: float = 120.0,
                 aborted=lambda: False) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1:``port`` until the block ends; yields the
    API URL. ServerFailed if it does not answer within ``startup_timeout`` seconds;
    StartAborted if ``aborted()`` turns true while it starts."""
    api_url = f"http://127.0.0.1:{port}/api"
    if _healthy(api_url):
        raise ServerFailed(f"something already listens on 127.0.0.1:{port}; set PREFECT_API_URL "
                           f"to use that Prefect server, or NEWSARCHIVE_PREFECT_PORT for another port")
    log_path = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - closed below, after the process
    logger.info("starting a Prefect server on 127.0.0.1:%d (state in %s, log in %s)",
                port, home, log_path)
    process = _launch(port, server_environment(home, port), log)
    pid_file = home / PID_FILE
    pid_file.write_text(f"{process.pid} {os.getpid()}\n")
    try:
        if not _answers(process, api_url, startup_timeout, "the Prefect server", log_path,
                        aborted):
            raise ServerFailed(f"the Prefect server exited with status {process.returncode}; "
                               f"see {log_path}")
        logger.info("Prefect server ready: %s (UI at http://127.0.0.1:%d)", api_url, port)
        yield api_url
    finally:
        _stop(process)
        pid_file.unlink(missing_ok=True)
        log.close()


class TemporaryServer:
    """A Prefect server (API only) on a free port of 127.0.0.1 for the length of one
    command: :meth:`start` returns at once, :meth:`wait` until it answers, :meth:`stop`."""

    _ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it

    def __init__(self, log_path: Path, startup_timeout: float = 120.0) -> None:
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.api_url = ""
        self._process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> TemporaryServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        port = _free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        environment = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       # The server's own settings must not point it at another server.
                       "PREFECT_API_URL": ""}
        logger.info("starting a temporary Prefect server on 127.0.0.1:%d (log in %s)", port,
                    self.log_path)
        self._process = _launch(port, environment, self._log, "--no-ui", "--no-services")
        return self

    def wait(self) -> str:
        """Wait until the server answers; its API URL. ServerFailed if it does not."""
        for attempt in range(1, self._ATTEMPTS + 1):
            try:
                if _answers(self._process, self.api_url, self.startup_timeout,
                            "the temporary Prefect server", self.log_path):
                    return self.api_url
            except ServerFailed:
                self.stop()
                raise
            if attempt == self._ATTEMPTS:
                code = self._process.returncode
                self.stop()
                raise ServerFailed(f"the temporary Prefect server exited with status {code}; "
                                   f"see {self.log_path}")
            self.start()  # most likely its port was taken meanwhile: another one
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _launch(port: int, environment: dict[str, str], log, *flags: str) -> subprocess.Popen:
    """``prefect server start`` on 127.0.0.1:``port``, its output to ``log``, in its own
    process group: a Ctrl-C in a terminal reaches the whole group, and the server must
    outlive the command's own shutdown long enough to be told the runs' final states."""
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(port), "--analytics-off", *flags]
    return subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _answers(process: subprocess.Popen, api_url: str, timeout: float, what: str,
             log_path: Path, aborted=lambda: False) -> bool:
    """Wait until the server at ``api_url`` answers (True) or its process exits (False);
    ServerFailed if neither happens within ``timeout`` seconds, StartAborted if
    ``aborted()`` turns true meanwhile."""
    deadline = time.monotonic() + timeout
    while not _healthy(api_url):
        if process.poll() is not None:
            return False
        if aborted():
            raise StartAborted(f"stopped while {what} was starting")
        if time.monotonic() > deadline:
            raise ServerFailed(f"{what} did not answer within {timeout:.0f} s; see {log_path}")
        time.sleep(0.25)
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def stop_process_group(pgid: int, grace: float) -> None:
    """SIGTERM the process group ``pgid`` (not necessarily of our children); SIGKILL it if
    it still runs ``grace`` seconds later."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_group_alive(pgid):
                return
            time.sleep(0.2)


def process_group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` runs on this machine."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
