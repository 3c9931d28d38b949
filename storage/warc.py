"""WARC/1.1 files of the exchanges a crawl archived:
``warc/<site>/<YYYY>/<MM>/<DD>/<run_id>-<n>.warc.gz``.

``raw.html.gz`` keeps a body as we decoded it, but not the exchange that produced it. A WARC
keeps each request and response with their headers, in the standard format that replay
tools (pywb, ...) and research pipelines read, and a record points at its capture by
(key, offset): :class:`WarcLocation`.

How, and why so:

- One gzip member per record, so that any record can be read alone by seeking to its
  offset, without decompressing the file from its start.
- Files are written under a local pending directory and uploaded whole, when they pass
  ``roll_bytes`` or when the writer closes: S3 objects cannot be appended to. A file's key
  is fixed by its sequence number when it is opened, so a location is handed out at once
  and is valid from the moment the file is uploaded.
- Every exchange is flushed as soon as it is written, so a killed crawl leaves whole
  records and at most one torn one behind. :func:`recover_pending`, run later for runs that
  are no longer alive, cuts the torn tail and uploads the rest: every location handed out
  before the kill still resolves.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from io import BytesIO
from pathlib import Path
from typing import IO
from urllib.parse import SplitResult, urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from storage.backends import Backend, check_key
from storage.compress import DeflatedBody
from storage.errors import ArchiveError
from storage.keys import WARC_ROOT, validate_run_id, validate_site_name, warc_key
from storage.localfiles import create_exclusive
from storage.record import as_utc

logger = logging.getLogger(__name__)

WARC_CONTENT_TYPE = "application/warc"
"""Content type of the uploaded WARC files."""

DEFAULT_ROLL_BYTES = 100 * 1024 * 1024
"""Size past which a WARC file is closed and uploaded, and the next one begun."""

WARC_VERSION = "1.1"
"""1.1 rather than 1.0 for its microsecond ``WARC-Date``: a crawl fetches many pages a second."""

_WARC_SUFFIX = ".warc.gz"
_SIDECAR_SUFFIX = ".json"
_METHOD = re.compile(r"^[A-Z]{1,20}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 9110 token
_RENAMED_HEADERS = {
    # The body we are given was already decoded by Scrapy: these described the bytes on the
    # wire, not the stored body, and a replay tool honouring them would decode it twice.
    "content-encoding": "X-Archive-Orig-Content-Encoding",
    "transfer-encoding": "X-Archive-Orig-Transfer-Encoding",
    "content-length": "X-Archive-Orig-Content-Length",
}


@dataclass(frozen=True)
class WarcLocation:
    """Where the response record of one exchange lies."""

    key: str
    """Key of the WARC file as users see it (``backend.locate(...)``): from the bucket's
    root, or from the archive directory, like ``Record.raw_key``."""
    offset: int
    """Byte offset of the response record's gzip member in the file."""
    length: int
    """Compressed length of that gzip member, in bytes."""


@dataclass
class _File:
    """A WARC file of this writer that is not in the archive yet."""

    sequence: int
    key: str
    path: Path
    sidecar: Path
    handle: IO[bytes] | None
    size: int = 0
    torn: bool = False
    """A write failed and the file could not be cut back: trim it before uploading."""


class WarcWriter:
    """Writes the exchanges of one crawl run of one site into rolling WARC files.

    Thread-safe: any number of threads may call :meth:`write`. Call :meth:`close` at the end
    of the run; files it could not upload stay in ``pending_dir`` for
    :func:`recover_pending`.
    """

    def __init__(
        self,
        backend: Backend,
        pending_dir: Path,
        site: str,
        run_id: str,
        *,
        roll_bytes: int = DEFAULT_ROLL_BYTES,
        started: datetime | None = None,
    ) -> None:
        if isinstance(roll_bytes, bool) or not isinstance(roll_bytes, int) or roll_bytes <= 0:
            raise ArchiveError(f"roll_bytes must be a positive number of bytes, not {roll_bytes!r}")
        self._backend = backend
        self._pending_dir = Path(pending_dir)
        self._site = validate_site_name(site)
        self._run_id = validate_run_id(run_id)
        self._roll_bytes = roll_bytes
        # Every file of a run goes under the day the run started, so a run's files stay
        # together however long it lasts.
        self._day = _utc(started or datetime.now(timezone.utc)).date()
        try:
            self._pending_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"cannot create {self._pending_dir}: {exc}") from exc
        # One condition guards the current file, the sequence and the bookkeeping of uploads;
        # close() waits on it for uploads of rolled files that other threads are making.
        self._lock = threading.Condition()
        # Found on the first write, not here: the constructor may run on Scrapy's reactor
        # thread, where a listing of a slow archive would stall the whole crawl.
        self._next_sequence: int | None = None
        self._current: _File | None = None
        self._unsent: list[_File] = []
        self._uploading = 0
        self._uploaded: list[str] = []
        self._closed = False

    @property
    def uploaded(self) -> tuple[str, ...]:
        """Located keys of every file this writer has uploaded so far, in upload order."""
        with self._lock:
            return tuple(self._uploaded)

    def write(
        self,
        *,
        url: str,
        fetched_at: datetime,
        status: int,
        reason: str,
        request_headers: list[tuple[str, str]],
        response_headers: list[tuple[str, str]],
        body: bytes,
        method: str = "GET",
        deflated: DeflatedBody | None = None,
    ) -> WarcLocation:
        """Append a request record and a response record for one exchange; return where the
        response record is. The location is valid once its file is uploaded.

        ``body`` is the content-decoded body; header values are text decoded from the wire
        as latin-1 (as HTTP defines), so they are stored as the bytes that were received.
        ``fetched_at`` (naive means UTC) becomes the records' ``WARC-Date``. ``deflated``
        is the body already compressed (:class:`storage.compress.DeflatedBody`), when the
        caller compressed it for another file too.
        """
        # Building and compressing the records is the costly part and shares no state, so it
        # happens before taking the lock.
        request, response = _exchange_records(
            url=url, fetched_at=fetched_at, status=status, reason=reason,
            request_headers=request_headers, response_headers=response_headers, body=body,
            method=method, deflated=deflated,
        )
        rolled = None
        with self._lock:
            if self._closed:
                raise ArchiveError("the WARC writer is closed")
            file = self._current or self._open_next()
            start = file.size
            try:
                file.handle.write(request)
                file.handle.write(response)
                # To the OS now: a killed process loses at most the exchange being written.
                file.handle.flush()
            except OSError as exc:
                self._abandon(file, start)
                raise ArchiveError(f"cannot write {file.path}: {exc}") from exc
            file.size += len(request) + len(response)
            location = WarcLocation(self._backend.locate(file.key), start + len(request),
                                    len(response))
            if file.size >= self._roll_bytes:
                rolled = self._seal_current()
                self._uploading += 1
        if rolled is not None:
            # Outside the lock: other threads go on writing into the next file meanwhile.
            try:
                self._send(rolled, when="rolled")
            except ArchiveError:
                pass  # logged, and kept for close(): this exchange itself is safely written
            finally:
                with self._lock:
                    self._uploading -= 1
                    self._lock.notify_all()
        return location

    def close(self) -> list[str]:
        """Upload every file not uploaded yet, remove their local copies and return their
        located keys. Writing is refused from now on.

        If a file cannot be uploaded it stays in ``pending_dir`` and ArchiveError is raised
        once the others are uploaded; calling close() again retries it, and
        :func:`recover_pending` finds it once the run is over.
        """
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: self._uploading == 0)
            if self._current is not None:
                self._unsent.append(self._seal_current())
            todo = sorted(self._unsent, key=lambda f: f.sequence)
            self._unsent = []
            uploaded: list[str] = []
            failed: list[tuple[_File, ArchiveError]] = []
            for file in todo:
                try:
                    uploaded.append(self._send(file, when="closing"))
                except ArchiveError as exc:
                    failed.append((file, exc))
            if failed:
                names = ", ".join(f.path.name for f, _ in failed)
                raise ArchiveError(
                    f"{len(failed)} WARC file(s) could not be uploaded and stay in "
                    f"{self._pending_dir}: {names} ({failed[0][1]})"
                ) from failed[0][1]
            return uploaded

    # -- internals; the caller holds the lock unless said otherwise ----------------------

    def _open_next(self) -> _File:
        if self._next_sequence is None:
            self._next_sequence = self._first_free_sequence()
        while True:
            sequence = self._next_sequence
            self._next_sequence += 1
            key = warc_key(self._site, self._day, self._run_id, sequence)
            base = f"{self._run_id}-{sequence:05d}"
            path = self._pending_dir / f"{base}{_WARC_SUFFIX}"
            sidecar = self._pending_dir / f"{base}{_SIDECAR_SUFFIX}"
            sidecar_data = json.dumps({
                "key": key, "run_id": self._run_id, "site": self._site, "sequence": sequence,
            }).encode()
            try:
                # The sidecar claims the name (two sites' writers of one run may share the
                # directory) and comes before the file, so a file is never without its key.
                if not create_exclusive(sidecar, sidecar_data):
                    continue
            except OSError as exc:
                raise ArchiveError(
                    f"cannot start a WARC file in {self._pending_dir}: {exc}") from exc
            try:
                handle = open(path, "xb")  # noqa: SIM115 - kept open across writes
            except FileExistsError:  # a stray file without its sidecar: leave it be
                sidecar.unlink(missing_ok=True)
                continue
            except OSError as exc:
                sidecar.unlink(missing_ok=True)
                raise ArchiveError(f"cannot create {path}: {exc}") from exc
            try:
                handle.write(_warcinfo_record(path.name, self._site, self._run_id))
                handle.flush()
            except OSError as exc:
                handle.close()
                _discard(path, sidecar)
                raise ArchiveError(f"cannot write {path}: {exc}") from exc
            file = _File(sequence, key, path, sidecar, handle, size=handle.tell())
            self._current = file
            return file

    def _first_free_sequence(self) -> int:
        """The sequence after the last file of this run already in the archive.

        An earlier writer of the same run (a retried task) may have uploaded files: records
        point into them, so they must never be replaced. One listing, here rather than a
        check per file under the lock, where a slow archive would stall every writer.
        """
        prefix = warc_key(self._site, self._day, self._run_id, 0).rsplit("/", 1)[0] + "/"
        name = re.compile(re.escape(self._run_id) + r"-(\d{5,})" + re.escape(_WARC_SUFFIX))
        try:
            found = [int(m.group(1)) for key in self._backend.iter_keys(f"{prefix}{self._run_id}-")
                     if (m := name.fullmatch(key[len(prefix):]))]
        except ArchiveError as exc:
            # Writing locally is still right when the archive is unreachable; the uploads
            # will report the outage.
            logger.warning("cannot list the WARC files of run %s: %s", self._run_id, exc)
            return 0
        return max(found) + 1 if found else 0

    def _seal_current(self) -> _File:
        file = self._current
        assert file is not None and file.handle is not None
        self._current = None
        try:
            file.handle.close()
        except OSError as exc:
            logger.warning("closing %s: %s", file.path, exc)
            file.torn = True
        file.handle = None
        return file

    def _abandon(self, file: _File, good_size: int) -> None:
        """A write failed midway: cut the file back to its last whole exchange, keep it for
        upload, and let the next write start a new file."""
        self._current = None
        try:
            file.handle.close()
        except OSError:
            pass  # the buffered rest of the failed write; cut off just below
        file.handle = None
        try:
            os.truncate(file.path, good_size)
        except OSError as exc:
            logger.warning("cannot cut %s back to %d bytes: %s", file.path, good_size, exc)
            file.torn = True
        file.size = good_size
        self._unsent.append(file)

    def _send(self, file: _File, *, when: str) -> str:
        """Upload a sealed file and remove its local copy; on failure keep it for close()
        and recover_pending. May run without the lock (a rolled file belongs to no one else)."""
        located = self._backend.locate(file.key)
        try:
            if file.torn:
                try:
                    _trim_torn_tail(file.path)
                except OSError as exc:
                    raise ArchiveError(f"cannot trim {file.path}: {exc}") from exc
                file.torn = False
            self._backend.put_file(file.key, file.path, content_type=WARC_CONTENT_TYPE)
        except ArchiveError as exc:
            logger.warning("cannot upload WARC file %s (%s) to %s: %s; kept for a later upload",
                           file.path.name, when, located, exc)
            with self._lock:
                self._unsent.append(file)
            raise
        _discard(file.path, file.sidecar)
        with self._lock:
            self._uploaded.append(located)
        return located


def recover_pending(
    backend: Backend, pending_dir: Path, *, is_alive: Callable[[str], bool]
) -> list[str]:
    """Upload the WARC files that runs no longer alive left in ``pending_dir`` and return
    their located keys.

    A file of a run for which ``is_alive(run_id)`` is true is left alone: its writer is still
    at work. A torn last record (the process was killed while writing it) is cut off first;
    if a file cannot be read at some point, what precedes that point is kept. One bad file
    never stops the others: its problem is logged and it is left in place.
    """
    pending_dir = Path(pending_dir)
    try:
        sidecars = sorted(p for p in pending_dir.glob(f"*{_SIDECAR_SUFFIX}") if p.is_file())
    except OSError as exc:
        logger.error("cannot list pending WARC files in %s: %s", pending_dir, exc)
        return []
    uploaded = []
    for sidecar in sidecars:
        try:
            located = _recover_one(backend, sidecar, is_alive)
        except ArchiveError as exc:
            logger.warning("pending WARC file %s not recovered: %s", sidecar.name, exc)
            continue
        except Exception:  # whatever one file does, the others still get uploaded
            logger.exception("pending WARC file %s not recovered", sidecar.name)
            continue
        if located is not None:
            uploaded.append(located)
    return uploaded


def _recover_one(backend: Backend, sidecar: Path, is_alive: Callable[[str], bool]) -> str | None:
    path = sidecar.with_name(sidecar.name[: -len(_SIDECAR_SUFFIX)] + _WARC_SUFFIX)
    try:
        meta = json.loads(sidecar.read_bytes())
        run_id = validate_run_id(meta["run_id"])
        key = check_key(meta["key"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"unreadable sidecar: {exc!r}") from exc
    # The sidecar is only ours by convention: the key must be a WARC key for this very file.
    if not key.startswith(f"{WARC_ROOT}/") or key.rsplit("/", 1)[-1] != path.name:
        raise ArchiveError(f"sidecar names {key!r}, not a WARC key for {path.name}")
    if is_alive(run_id):
        return None
    if not path.exists():
        # The writer died between claiming the name and creating the file.
        sidecar.unlink(missing_ok=True)
        return None
    size = path.stat().st_size
    end = _trim_torn_tail(path)
    if end == 0:
        # Not one whole record: no location can point into it.
        logger.warning("pending WARC file %s holds no whole record (%d bytes); removed",
                       path.name, size)
        _discard(path, sidecar)
        return None
    backend.put_file(key, path, content_type=WARC_CONTENT_TYPE)
    _discard(path, sidecar)
    located = backend.locate(key)
    logger.info("recovered WARC file %s of run %s as %s", path.name, run_id, located)
    return located


def _trim_torn_tail(path: Path) -> int:
    """Cut ``path`` after its last whole record; return the length kept."""
    size = path.stat().st_size
    end = _whole_records_end(path)
    if end < size:
        logger.warning("cutting %d bytes of torn or unreadable records off %s",
                       size - end, path.name)
        os.truncate(path, end)
    return end


def _whole_records_end(path: Path) -> int:
    """The offset just past the last of the whole records at the start of ``path``.

    warcio finds the record boundaries; each gzip member is then inflated on its own to
    check that it is complete (its trailer and CRC are there): warcio reads a truncated
    member as a short record without complaint.
    """
    end = 0
    with open(path, "rb") as stream, open(path, "rb") as check:
        records = ArchiveIterator(stream)
        try:
            for _record in records:
                offset, length = records.get_record_offset(), records.get_record_length()
                if offset != end or not _is_whole_member(check, offset, length):
                    break
                end = offset + length
        except Exception as exc:  # noqa: BLE001 - warcio and zlib raise many kinds on bad input
            logger.debug("%s unreadable after byte %d: %r", path.name, end, exc)
        finally:
            records.close()
    return end


def _is_whole_member(check: IO[bytes], offset: int, length: int) -> bool:
    check.seek(offset)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    remaining = length
    try:
        while remaining > 0:
            chunk = check.read(min(remaining, 1 << 20))
            if not chunk:
                return False
            remaining -= len(chunk)
            inflater.decompress(chunk, 0)
    except zlib.error:
        return False
    return inflater.eof and not inflater.unused_data


def _discard(path: Path, sidecar: Path) -> None:
    """Remove an uploaded file, then its sidecar: never a file without its sidecar."""
    try:
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    except OSError as exc:
        # Already in the archive; a later recover_pending uploads the same bytes again.
        logger.warning("cannot remove %s: %s", path, exc)


# -- records ------------------------------------------------------------------------------


class _WireHeaders(StatusAndHeaders):
    """HTTP headers serialised as the bytes that were on the wire.

    warcio percent-encodes non-ASCII header values (and fails on some); ours are latin-1
    text decoded from the wire bytes, so encoding them back gives the original bytes.
    """

    def to_ascii_bytes(self, filter_func=None) -> bytes:
        text = self.to_str(filter_func)
        try:
            return text.encode("latin-1") + b"\r\n"
        except UnicodeEncodeError:  # not decoded as latin-1 by the caller after all
            return text.encode("utf-8") + b"\r\n"


def _exchange_records(
    *,
    url: str,
    fetched_at: datetime,
    status: int,
    reason: str,
    request_headers: Iterable[tuple[str, str]],
    response_headers: Iterable[tuple[str, str]],
    body: bytes,
    method: str,
    deflated: DeflatedBody | None = None,
) -> tuple[bytes, bytes]:
    """The gzip members of the request record and of the response record of one exchange."""
    parts = _check_url(url)
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise ArchiveError(f"invalid HTTP method {method!r}")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
        raise ArchiveError(f"invalid HTTP status {status!r}")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise ArchiveError(f"the body must be bytes, not {type(body).__name__}")
    body = bytes(body)

    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    sent = _clean_headers(request_headers)
    if not any(name.lower() == "host" for name, _ in sent):
        sent.insert(0, ("Host", parts.netloc.rpartition("@")[2]))
    received = []
    for name, value in _clean_headers(response_headers):
        received.append((_RENAMED_HEADERS.get(name.lower(), name), value))
    received.append(("Content-Length", str(len(body))))
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    reason = _clean_value(reason)

    date = _warc_date(fetched_at)
    request_id, response_id = _record_id(), _record_id()
    out = BytesIO()
    writer = WARCWriter(out, gzip=True, warc_version=WARC_VERSION)
    writer.write_record(writer.create_warc_record(
        url, "request", payload=BytesIO(), length=0,
        http_headers=_WireHeaders(f"{method} {target} HTTP/1.1", sent, is_http_request=True),
        warc_headers_dict={"WARC-Type": "request", "WARC-Record-ID": request_id,
                           "WARC-Date": date, "WARC-Target-URI": url,
                           "WARC-Concurrent-To": response_id},
    ))
    # The response record is written uncompressed and gzipped around the body's deflate
    # blocks, so a body compressed for raw.html.gz is not compressed again.
    plain = BytesIO()
    WARCWriter(plain, gzip=False, warc_version=WARC_VERSION).write_record(
        writer.create_warc_record(
            url, "response", payload=BytesIO(body), length=len(body),
            http_headers=_WireHeaders(f"{status} {reason}".rstrip(), received,
                                      protocol="HTTP/1.1"),
            warc_headers_dict={"WARC-Type": "response", "WARC-Record-ID": response_id,
                               "WARC-Date": date, "WARC-Target-URI": url,
                               "WARC-Concurrent-To": request_id},
        ))
    record = plain.getvalue()
    head_length = len(record) - len(body) - len(_RECORD_END)
    if record[head_length:head_length + len(body)] != body or not record.endswith(_RECORD_END):
        raise ArchiveError("warcio wrote the response record in an unexpected layout")
    try:
        response = (deflated or DeflatedBody.of(body)).gzip_between(
            record[:head_length], _RECORD_END, body)
    except ValueError as exc:
        raise ArchiveError(f"cannot write the response record of {url}: {exc}") from exc
    return out.getvalue(), response


# What follows a record's block: two CRLFs (WARC/1.1, section 4).
_RECORD_END = b"\r\n\r\n"


def _warcinfo_record(filename: str, site: str, run_id: str) -> bytes:
    out = BytesIO()
    writer = WARCWriter(out, gzip=True, warc_version=WARC_VERSION)
    writer.write_record(writer.create_warcinfo_record(filename, {
        "software": _software(),
        "format": f"WARC File Format {WARC_VERSION}",
        "conformsTo":
            "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "isPartOf": f"newsarchive run {run_id}",
        "run-id": run_id,
        "site": site,
    }))
    return out.getvalue()


def _software() -> str:
    try:
        return f"newsarchive/{importlib.metadata.version('newsarchive')}"
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "newsarchive"


def _check_url(url: str) -> SplitResult:
    # The URL goes into a WARC header line: whitespace or a control character would end it
    # early or forge the next header.
    if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F
                                                  for c in url):
        raise ArchiveError(
            f"cannot archive URL {url!r}: empty, or with whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArchiveError(f"cannot archive URL {url!r}: not an absolute http(s) URL")
    return parts


def _clean_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        # Scrapy's headers are bytes; latin-1 maps each byte to one character and back.
        name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        # A name that is not a token (or a value with a line break) would forge headers.
        if not _HEADER_NAME.fullmatch(name):
            logger.debug("dropping header with invalid name %r", name)
            continue
        out.append((name, _clean_value(value)))
    return out


def _clean_value(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def _warc_date(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, as WARC/1.1 allows."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(moment: datetime) -> datetime:
    """:func:`storage.record.as_utc`, with anything but a datetime refused as the writer's
    other errors are (an ArchiveError), before it could reach a WARC header."""
    if not isinstance(moment, datetime):
        raise ArchiveError(f"expected a datetime, not {moment!r}")
    return as_utc(moment)


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"
