"""A local Common Crawl News: WARC files (written with warcio) under CC-NEWS's real key
layout, ``crawl-data/CC-NEWS/<YYYY>/<MM>/`` with a ``warc.paths.gz`` per month, and a local
HTTP server for it that counts the requests it gets and can hold files back (to kill a
backfill between two files)."""

from __future__ import annotations

import gzip
import io
import threading
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

PREFIX = "crawl-data/CC-NEWS"


@dataclass(frozen=True)
class Capture:
    """One page to put in a WARC file."""

    url: str
    """The target URI."""
    when: datetime
    """The capture's time (WARC-Date), aware."""
    html: bytes
    """The page."""
    content_type: str = "text/html; charset=utf-8"
    """The response's Content-Type."""


def file_path(starts: datetime, number: int) -> str:
    """The path of a CC-NEWS file starting at ``starts``, as CC-NEWS names them."""
    return f"{PREFIX}/{starts:%Y/%m}/CC-NEWS-{starts:%Y%m%d%H%M%S}-{number:05d}.warc.gz"


def write_warc(stream, captures: list[Capture]) -> list[int]:
    """Write a gzipped WARC (a member per record, as CC-NEWS does) of ``captures``, each a
    request and a response record as a crawler writes them; returns each response's offset."""
    writer = WARCWriter(stream, gzip=True)
    offsets = []
    for capture in captures:
        date = capture.when.strftime("%Y-%m-%dT%H:%M:%SZ")
        request = writer.create_warc_record(
            capture.url, "request", payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders(f"GET {capture.url} HTTP/1.1", [("Accept", "*/*")],
                                          is_http_request=True),
            warc_headers_dict={"WARC-Date": date})
        writer.write_record(request)
        offsets.append(stream.tell())
        response = writer.create_warc_record(
            capture.url, "response", payload=io.BytesIO(capture.html),
            http_headers=StatusAndHeaders("200 OK", [("Content-Type", capture.content_type)],
                                          protocol="HTTP/1.1"),
            warc_headers_dict={"WARC-Date": date})
        writer.write_record(response)
    return offsets


def build(root: Path, files: dict[str, list[Capture]]) -> dict[str, list[int]]:
    """Write each file (path -> captures) under ``root`` and each month's ``warc.paths.gz``;
    returns each file's response offsets."""
    offsets = {}
    months: dict[str, list[str]] = {}
    for path, captures in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as stream:
            offsets[path] = write_warc(stream, captures)
        months.setdefault(str(Path(path).parent), []).append(path)
    for month, paths in months.items():
        (root / month / "warc.paths.gz").write_bytes(
            gzip.compress(("\n".join(sorted(paths)) + "\n").encode()))
    return offsets


class LocalCCNews:
    """An HTTP server for a directory laid out as CC-NEWS. ``hold(path)`` makes requests for
    that file wait until ``release()``; ``requests`` lists every request as ``METHOD path``."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.root = root
        self.requests: list[str] = []
        self._held: set[str] = set()
        self._released = threading.Event()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _file(self) -> Path | None:
                path = self.path.lstrip("/").split("?", 1)[0]
                served.requests.append(f"{self.command} {path}")
                if path in served._held:
                    served._released.wait(120)
                target = (served.root / path).resolve()
                if served.root.resolve() not in target.parents or not target.is_file():
                    self.send_error(404)
                    return None
                return target

            def do_HEAD(self) -> None:
                target = self._file()
                if target is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(target.stat().st_size))
                    self.end_headers()

            def do_GET(self) -> None:
                target = self._file()
                if target is None:
                    return
                data = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def hold(self, *paths: str) -> None:
        """Make requests for these files wait until :meth:`release`."""
        self._held.update(paths)
        self._released.clear()

    def release(self) -> None:
        self._released.set()
        self._held.clear()

    def __enter__(self) -> LocalCCNews:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
