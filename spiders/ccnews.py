"""Common Crawl News (CC-NEWS) as a source of pages: the site is never asked.

CC-NEWS publishes WARC files of news pages (about 1 GB each, many a day) under
``crawl-data/CC-NEWS/<YYYY>/<MM>/``, listed per month in ``warc.paths.gz``; a file's name
holds the time its captures start (``CC-NEWS-<YYYYmmddHHMMSS>-<n>.warc.gz``), and it holds
captures until the next file starts.

:func:`files_for` lists the files whose captures can hold articles of a date range (a capture
is made after publication: up to ``slack`` after the range's end). :func:`scan_file` streams
one file once (never a local copy), keeps the response records whose ``WARC-Target-URI``
host is the site's (and matches its ``article_pattern``), decided on the WARC headers before
any body is read, and sends each kept page through the path a fetched page takes
(:mod:`spiders.page`): extraction in the extraction pool, the site's boilerplate, the
archive's dedup and store, the run's WARC and catalog files. A record says where it came
from (``source``, ``source_file``, ``source_offset``) and keeps the capture's fetch time;
articles dated outside the range, or undated, are not archived.

The source (:class:`Source`) is ``NEWSARCHIVE_CCNEWS_URL``: the public HTTPS endpoint, an
``s3://bucket/prefix`` URL (the usual ``AWS_*`` settings), or a local directory.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecordType

from normalize.boilerplate import SiteBoilerplate
from spiders.config import compile_user_pattern
from spiders.extraction_pool import ExtractionFailed, ExtractionPool, default_pool_size
from spiders.hosts import host_matcher
from spiders.interface import CCNewsSourceError as SourceError
from spiders.interface import SiteConfig
from spiders.items import FetchedPage
from spiders.page import BOILERPLATE_STATE, Problem, canonical_seen_urls, page_record, settle
from spiders.workspace import Workspace
from storage import Archive, ArchiveError, S3Backend, StoreOutcome, canonicalize_url
from storage.catalog import CatalogWriter
from storage.compress import DeflatedBody
from storage.warc import WarcWriter

logger = logging.getLogger(__name__)

PREFIX = "crawl-data/CC-NEWS"
_FILE_NAME = re.compile(r"CC-NEWS-(\d{14})-(\d+)\.warc(?:\.gz)?$")
# Kept pages between the scan and the archive: bounds the scan's memory (a page is at most
# a few MB) while extraction and storing overlap the reading.
IN_FLIGHT_PER_WORKER = 4
LOCAL_STORE_THREADS = 4
S3_STORE_THREADS = 16
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class WarcFile:
    """One CC-NEWS WARC file."""

    path: str
    """Its path under the source, e.g. ``crawl-data/CC-NEWS/2024/05/CC-NEWS-2024...warc.gz``."""
    starts: datetime
    """When its first capture was made (UTC), from its name."""

    @property
    def name(self) -> str:
        """The file's name, without its directory."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def state_name(self) -> str:
        """The name under which a site's scan of this file is recorded in the site's state."""
        match = _FILE_NAME.search(self.name)
        return f"ccnews-{match.group(1)}-{match.group(2)}"


class Source:
    """Where CC-NEWS is read from: an ``http(s)://`` base URL, ``s3://bucket/prefix``, or a
    local directory (a mirror with the same layout)."""

    def __init__(self, url: str) -> None:
        if not url:
            raise SourceError("no CC-NEWS source: set NEWSARCHIVE_CCNEWS_URL")
        self.url = url
        parsed = urllib.parse.urlsplit(self.url)
        self.scheme = parsed.scheme if parsed.scheme in ("http", "https", "s3") else "file"
        if self.scheme == "s3":
            self._bucket, self._prefix = parsed.netloc, parsed.path.strip("/")
            self._client = None
        elif self.scheme == "file":
            self._root = Path(parsed.path if parsed.scheme == "file" else self.url)
        else:
            self._base = self.url if self.url.endswith("/") else self.url + "/"

    def __str__(self) -> str:
        return self.url

    def _s3(self):
        if self._client is None:
            from storage.backends import make_s3_client

            self._client = make_s3_client()
        return self._client

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def open(self, path: str) -> BinaryIO:
        """A stream of the file at ``path``, read as it is consumed (no local copy)."""
        try:
            if self.scheme == "file":
                return open(self._root / path, "rb")
            if self.scheme == "s3":
                return self._s3().get_object(Bucket=self._bucket, Key=self._key(path))["Body"]
            request = urllib.request.Request(self._base + path,
                                             headers={"User-Agent": "newsarchive (CC-NEWS backfill)"})
            return urllib.request.urlopen(request, timeout=60)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot read {path} from {self}: {_reason(exc)}") from exc

    def read(self, path: str) -> bytes | None:
        """The whole (small) file at ``path``, or None if the source has no such file."""
        try:
            with self.open(path) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except SourceError as exc:
            if _not_found(exc.__cause__):
                return None
            raise

    def size(self, path: str) -> int | None:
        """The file's size in bytes, or None when the source does not say."""
        try:
            if self.scheme == "file":
                return (self._root / path).stat().st_size
            if self.scheme == "s3":
                return self._s3().head_object(Bucket=self._bucket, Key=self._key(path))["ContentLength"]
            request = urllib.request.Request(self._base + path, method="HEAD")
            with urllib.request.urlopen(request, timeout=60) as response:
                length = response.headers.get("Content-Length")
                return int(length) if length else None
        except Exception as exc:
            logger.debug("no size for %s: %s", path, exc)
            return None

    def month_files(self, year: int, month: int) -> list[WarcFile]:
        """The WARC files of one month, as its ``warc.paths.gz`` lists them (none if the
        month has no listing)."""
        listing = self.read(f"{PREFIX}/{year:04d}/{month:02d}/warc.paths.gz")
        if listing is None:
            return []
        try:
            lines = gzip.decompress(listing).decode("utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"the listing of {year:04d}-{month:02d} at {self} is not a "
                              f"gzipped list of paths: {exc}") from exc
        files = []
        for line in lines:
            match = _FILE_NAME.search(line)
            if match:
                starts = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
                files.append(WarcFile(line.strip(), starts))
        return files


def _not_found(exc: BaseException | None) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 404
    if isinstance(exc, FileNotFoundError):
        return True
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return code in ("NoSuchKey", "404")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return f"{exc.__class__.__name__}: {exc}"


def capture_window(since: date, until: date, slack: timedelta) -> tuple[datetime, datetime]:
    """The capture times that can hold articles published from ``since`` to ``until``
    (UTC days, included): from the start of ``since`` (a capture is made after
    publication) to the end of ``until`` plus ``slack``."""
    start = datetime.combine(since, dtime(), timezone.utc)
    end = datetime.combine(until + timedelta(days=1), dtime(), timezone.utc) + slack
    return start, end


def files_for(source: Source, since: date, until: date, slack: timedelta) -> list[WarcFile]:
    """The files whose captures can hold articles published from ``since`` to ``until``,
    in time order: those that start before the window ends and whose successor starts after
    it begins (the file before the window's first can hold its first hours)."""
    start, end = capture_window(since, until, slack)
    months = []
    cursor = date((start - timedelta(days=1)).year, (start - timedelta(days=1)).month, 1)
    while cursor <= end.date():
        months.append(cursor)
        cursor = date(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1)
    files = sorted({f for m in months for f in source.month_files(m.year, m.month)},
                   key=lambda f: (f.starts, f.path))
    chosen = []
    for number, warc_file in enumerate(files):
        following = files[number + 1].starts if number + 1 < len(files) else None
        if warc_file.starts < end and (following is None or following > start):
            chosen.append(warc_file)
    return chosen


@dataclass(frozen=True)
class SiteFilter:
    """Which captures belong to a site, judged on the target URI alone."""

    allowed_domains: tuple[str, ...]
    """The site's domains (subdomains included)."""
    article_pattern: str = ""
    """The site's article pattern (RE2, searched in the URL), or empty: any URL."""

    def matcher(self) -> Callable[[str], bool]:
        """A fast predicate on a URL: its host (cut from the URL by hand: this runs on every
        record of every file scanned, where ``urlsplit`` would cost more than the rest) one
        of the site's domains (:func:`spiders.hosts.host_matcher`), and the pattern found."""
        on_site = host_matcher(self.allowed_domains)
        pattern = compile_user_pattern(self.article_pattern) if self.article_pattern else None

        def matches(url: str) -> bool:
            rest = url.partition("://")[2]
            host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            if not on_site(host):
                return False
            return pattern is None or pattern.search(url) is not None

        return matches


@dataclass(frozen=True)
class Capture:
    """A kept response record: a page as CC-NEWS captured it."""

    url: str
    """The target URI."""
    fetched_at: datetime
    """The capture's time (``WARC-Date``)."""
    status: int
    """HTTP status."""
    headers: list[tuple[str, str]]
    """The response's HTTP headers."""
    body: bytes
    """The payload (content encodings removed)."""
    charset: str | None
    """The charset the Content-Type header declares, if any."""
    offset: int
    """Byte offset of the record in the (compressed) file."""


def iter_captures(stream: BinaryIO, wanted: Callable[[str], bool],
                  counts: Counter | None = None) -> Iterator[Capture]:
    """The HTML responses in a WARC stream whose target URI ``wanted`` accepts, read once
    from the start. ``counts``: response ``records`` judged, ``kept``, ``not_html``.

    A WARC file compressed a gzip member per record (as CC-NEWS's are) is read by member
    (:func:`_members`): only the first bytes of each member are inflated, enough for its WARC
    headers, and a member whose record is left out is skipped whole, its body never
    inflated. Inflating every body is what reading costs: FastWARC alone, which inflates them
    all, scans 2.4x as fast as warcio per core, skipping them 6x and more (bench/ccnews.py).
    A kept record is parsed by FastWARC from its member's bytes. Any other layout (a plain
    WARC, one gzip member for many records) is read by FastWARC from the stream as it is."""
    counts = counts if counts is not None else Counter()
    head = stream.read(_SNIFF)
    if head[:3] != _GZIP_MAGIC or _member_head(head, 0) is None:
        yield from _fastwarc_captures(_Prefixed(head, stream), wanted, counts)
        return
    for offset, member, headers in _members(_Prefixed(head, stream)):
        if headers is None:  # not a member of one record: FastWARC reads what it holds
            yield from _fastwarc_captures(io.BytesIO(member), wanted, counts, base=offset)
            continue
        if headers.get("warc-type") != "response":
            continue
        counts["records"] += 1
        if wanted(headers.get("warc-target-uri", "")):
            yield from _fastwarc_captures(io.BytesIO(member), lambda _url: True, counts,
                                          base=offset, judged=True)


def _fastwarc_captures(stream, wanted: Callable[[str], bool], counts: Counter, *,
                       base: int = 0, judged: bool = False) -> Iterator[Capture]:
    """The kept HTML responses of a WARC stream, read by FastWARC: the filter on the WARC
    headers, HTTP headers parsed and bodies read for kept records only. ``base``: the
    stream's offset in the file; ``judged``: the record was counted already."""

    def keep(record) -> bool:
        if not judged:
            counts["records"] += 1
        return wanted(record.headers.get("WARC-Target-URI", ""))

    for record in ArchiveIterator(stream, record_types=WarcRecordType.response,
                                  parse_http=False, func_filter=keep):
        record.parse_http()
        content_type = (record.http_content_type or "").lower()
        if content_type and not content_type.startswith(HTML_TYPES):
            counts["not_html"] += 1
            continue
        counts["kept"] += 1
        yield Capture(
            url=record.headers.get("WARC-Target-URI", ""),
            fetched_at=record.record_date.astimezone(timezone.utc),
            status=record.http_headers.status_code,
            headers=[(k, v) for k, v in record.http_headers.items()],
            body=record.reader.read(),
            charset=record.http_charset or None,
            offset=base + record.stream_pos,
        )


_GZIP_MAGIC = b"\x1f\x8b\x08"
_SNIFF = 1 << 16
_READ = 8 << 20
# Compressed bytes inflated to read a record's WARC headers (a few hundred bytes of text);
# more are given when they do not suffice.
_HEAD_INPUT = 512


class _Prefixed:
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def tell(self) -> int:  # FastWARC asks; offsets are counted by the caller
        return 0

    def readable(self) -> bool:
        return True


def _member_head(data, start: int) -> dict[str, str] | None:
    """The WARC headers that matter here (``warc-type``, ``warc-target-uri``,
    ``content-length``) of the record whose gzip member starts at ``start`` of ``data``,
    with ``_size``: the record's length uncompressed; None when no member of a WARC record
    starts there (a chance match of the gzip magic inside compressed data cannot inflate to
    a WARC header)."""
    # Not even a gzip header and trailer left (the magic's bytes by chance in the last
    # member's trailer), or reserved flag bits set: no member starts here.
    if start + 18 > len(data) or data[start + 3] & 0xE0:
        return None
    take = _HEAD_INPUT
    while True:
        inflater = zlib.decompressobj(31)
        try:
            text = inflater.decompress(bytes(data[start:start + take]), 8 * take)
        except zlib.error:
            return None
        if not text.startswith(b"WARC/"):
            return None
        end = text.find(b"\r\n\r\n")
        if end >= 0:
            break
        if start + take >= len(data) or take >= 1 << 16:
            return None
        take *= 4
    headers = {name.lower().decode(): value.decode("utf-8", "replace")
               for name, value in _WANTED_HEADERS.findall(text, 0, end + 2)}
    try:
        headers["_size"] = str(end + 4 + int(headers.get("content-length", "")) + 4)
    except ValueError:
        return None
    return headers


_WANTED_HEADERS = re.compile(rb"\r\n(WARC-Type|WARC-Target-URI|Content-Length)[ \t]*:[ \t]*"
                             rb"([^\r\n]*?)[ \t]*(?=\r\n)", re.IGNORECASE)


def _members(stream) -> Iterator[tuple[int, bytes, dict[str, str] | None]]:
    """Each gzip member of a WARC stream, in order: its offset, its compressed bytes and its
    record's WARC headers, or None for headers when the member holds anything but exactly
    one record (its uncompressed size, in its gzip trailer, says). A member ends where the
    next begins: the next gzip magic from which a WARC header inflates."""
    buf = bytearray()
    base = 0  # the file offset of buf[0]
    eof = False

    def fill() -> None:
        nonlocal eof
        data = stream.read(_READ)
        if data:
            buf.extend(data)
        else:
            eof = True

    start = 0
    fill()
    following = None  # the next member's headers, read when its start was verified
    while start < len(buf):
        while not eof and len(buf) - start < _SNIFF:
            fill()
        headers = following if following is not None else _member_head(buf, start)
        following = None
        search = start + 10
        while True:
            found = buf.find(_GZIP_MAGIC, search)
            if found < 0 or (not eof and len(buf) - found < _SNIFF):
                if eof:
                    end = len(buf)
                    break
                search = max(search, len(buf) - 2) if found < 0 else found
                fill()
                continue
            following = _member_head(buf, found)
            if following is not None:
                end = found
                break
            search = found + 1
        member = bytes(buf[start:end])
        if headers is not None and (len(member) < 18 or int.from_bytes(member[-4:], "little")
                                    != int(headers["_size"]) & 0xFFFFFFFF):
            headers = None
        yield base + start, member, headers
        start = end
        if start > _READ:  # drop what was read, now and then, not once a member
            del buf[:start]
            base += start
            start = 0


@dataclass
class FileScan:
    """What the scan of one file did for one site."""

    file: str
    """The file's path under the source."""
    counts: Counter = field(default_factory=Counter)
    """``records`` seen, ``kept`` (the site's HTML), ``archived`` (new articles),
    ``duplicates`` (found in the archive: before extraction, or by text), ``out_of_range``,
    ``undated``, ``no_text``, ``too_large`` (over the site's ``max_page_bytes``), ``errors``;
    ``bytes`` read."""
    errors: list[dict] = field(default_factory=list)
    """The errors: url, kind, reason."""

    @property
    def ok(self) -> bool:
        """No page failed (a file with errors is scanned again by ``reprocess="failed"``)."""
        return not self.errors


@dataclass(frozen=True)
class ScanTarget:
    """A site's part of a CC-NEWS backfill."""

    site: str
    """Site name."""
    filter: SiteFilter
    """Which captures are the site's."""
    since: date
    """First publication day (UTC), included."""
    until: date
    """Last publication day (UTC), included."""
    extract_timeout: float = 30.0
    """Seconds one page's extraction may take."""
    max_page_bytes: int = 20 * 1024 * 1024
    """The largest page kept (the site's ``max_page_bytes``, as a crawl downloads no more):
    a larger capture is counted as ``too_large`` and left out."""


class _Counting:
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner, self.read_bytes = inner, 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.read_bytes += len(data)
        return data

    def tell(self) -> int:
        # FastWARC asks where it is; an HTTP or S3 stream cannot say, the count can.
        return self.read_bytes

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.inner.close()


class Scanner:
    """Scans CC-NEWS files for one site into the archive; one per backfill run (its
    extraction pool, WARC and catalog writers are the run's)."""

    @classmethod
    def open(cls, archive: Archive, site: SiteConfig, since: date, until: date, *,
             run_id: str, data_dir: Path) -> Scanner:
        """The scanner of a backfill run of ``site``, in a workspace of its own under
        ``data_dir`` (what a killed scan leaves there is uploaded by the next scan or crawl
        of the site: :func:`recover_abandoned`)."""
        recover_abandoned(archive, data_dir, site.name)
        workspace = Workspace.create(data_dir, site.name, run_id)
        target = ScanTarget(site.name, SiteFilter(site.allowed_domains, site.article_pattern),
                            since, until, site.extract_timeout, site.max_page_bytes)
        return cls(archive, target, run_id=run_id, work_dir=workspace.root, workspace=workspace)

    def __init__(self, archive: Archive, target: ScanTarget, *, run_id: str, work_dir: Path,
                 extraction_workers: int = 0, store_threads: int = 0,
                 workspace: Workspace | None = None) -> None:
        self.archive = archive
        self.workspace = workspace
        self.target = target
        self.run_id = run_id
        self.pool = ExtractionPool(extraction_workers or default_pool_size(), target.extract_timeout)
        self.pool.start()  # every capture is an article to extract
        self.warc = WarcWriter(archive.backend, work_dir / "warc", target.site, run_id)
        self.catalog = CatalogWriter(archive.backend, work_dir / "catalog", run_id)
        if workspace is not None:  # as a crawl's (spiders.archiving)
            archive.keep_journal(workspace.near_dir)
        state = archive.read_site_state(target.site, BOILERPLATE_STATE)
        # The site's learnt boilerplate is stripped, not learnt from: old pages must not
        # teach today's crawls (as in reprocess).
        self.boilerplate = SiteBoilerplate.from_json(state) if state else SiteBoilerplate()
        threads = store_threads or (S3_STORE_THREADS if isinstance(archive.backend, S3Backend)
                                    else LOCAL_STORE_THREADS)
        self._store = ThreadPoolExecutor(threads, thread_name_prefix="newsarchive-ccnews")
        self._wanted = target.filter.matcher()
        self._window = threading.BoundedSemaphore(self.pool.size * IN_FLIGHT_PER_WORKER)
        # The site's URL summary learns what the scan archives: a crawl that lists those
        # URLs later skips them without fetching.
        self.summary_notes = archive.summary_notes(target.site, run_id)

    def scan(self, source: Source, warc_file: WarcFile,
             progress: Callable[[FileScan], None] | None = None) -> FileScan:
        """Scan one file: every kept capture extracted, deduplicated and archived (or
        counted as left out); returns what was done. Raises SourceError if the file cannot
        be read to its end (what was archived stays; the file is scanned again later)."""
        scan = FileScan(warc_file.path)
        lock = threading.Lock()
        pending: list[Future] = []
        last_progress = time.monotonic()
        stream = _Counting(source.open(warc_file.path))
        try:
            for capture in iter_captures(stream, self._wanted, scan.counts):
                self._window.acquire()
                future = self._store.submit(self._archive_capture, capture, warc_file, scan, lock)
                future.add_done_callback(lambda _f: self._window.release())
                pending.append(future)
                if progress is not None and time.monotonic() - last_progress >= 5:
                    last_progress = time.monotonic()
                    scan.counts["bytes"] = stream.read_bytes
                    progress(scan)
        except (SourceError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - FastWARC's panics are BaseExceptions
            # The stream broke (a reset, a truncated file): the file is read again later.
            raise SourceError(f"cannot read {warc_file.path} from {source} to its end: "
                              f"{_reason(exc)}") from exc
        finally:
            for future in pending:
                future.result()
            stream.close()
        scan.counts["bytes"] = stream.read_bytes
        return scan

    def _archive_capture(self, capture: Capture, warc_file: WarcFile, scan: FileScan,
                         lock: threading.Lock) -> None:
        outcome, error = "failed", None
        try:
            outcome, error = self._archive(capture, warc_file)
        except ArchiveError as exc:
            error = ("storage", f"{exc.__class__.__name__}: {exc}")
        except Exception as exc:  # a bug of ours: recorded, and the scan goes on
            logger.exception("failed to archive %s", capture.url)
            error = ("internal", f"{exc.__class__.__name__}: {exc}")
        with lock:
            scan.counts[outcome] += 1
            if error is not None:
                scan.counts["errors"] += 1
                scan.errors.append({"url": capture.url, "kind": error[0], "reason": error[1],
                                    "offset": capture.offset})

    def _archive(self, capture: Capture, warc_file: WarcFile) -> tuple[str, tuple | None]:
        """One kept capture through the page path; returns the outcome's name and the
        error (kind, reason) if any."""
        if capture.status != 200:
            return "not_ok", None
        if len(capture.body) > self.target.max_page_bytes:
            return "too_large", None
        # Archived already (by a crawl, an earlier scan, another file's capture of it):
        # nothing to extract. One index read, where extraction costs tens of milliseconds.
        if self.archive.is_archived(canonicalize_url(capture.url)):
            return "duplicates", None
        try:
            extraction = self.pool.extract(capture.body, capture.charset or "", capture.url,
                                           capture.status)
        except ExtractionFailed as exc:
            return "failed", (exc.kind, str(exc))
        settled = settle(extraction, self.boilerplate, learn=False)
        if isinstance(settled, Problem):
            return ("no_text" if settled.kind == "no_article_text" else "blocked"), None
        article, text = settled
        if article.published is None:
            return "undated", None
        if not self.target.since <= article.published.astimezone(timezone.utc).date() <= self.target.until:
            return "out_of_range", None
        page = FetchedPage(site=self.target.site, url=capture.url, request_url=capture.url,
                           status=capture.status, body=capture.body,
                           encoding=capture.charset or "", fetched_at=capture.fetched_at,
                           discovered_via="ccnews", response_headers=capture.headers)
        deflated = DeflatedBody.of(capture.body)
        location = self.warc.write(url=capture.url, fetched_at=capture.fetched_at,
                                   status=capture.status, reason="", request_headers=[],
                                   response_headers=capture.headers, body=capture.body,
                                   deflated=deflated)
        page.warc = (location.key, location.offset, location.length)
        record = replace(page_record(page, article, text, charset=extraction.charset,
                                     paywalled=extraction.paywalled),
                         source="ccnews", source_file=warc_file.path,
                         source_offset=capture.offset)
        seen = canonical_seen_urls(page)
        result = self.archive.store(record, raw_body=deflated, charset=record.charset,
                                    text=text, run_id=self.run_id, seen_urls=seen)
        if result.outcome is not StoreOutcome.IN_PROGRESS:
            self.summary_notes.note(result.record.urls | seen, result.record.last_seen)
        if result.outcome in (StoreOutcome.WRITTEN, StoreOutcome.VERSION):
            self.catalog.add(result.record, text)
            return "archived", None
        return "duplicates", None

    def close(self) -> None:
        """Stop the workers and threads; upload the run's WARC and catalog files, the
        near-duplicate index, and what the site's URL summary has not been told yet. Raises
        ArchiveError if an upload fails (the files stay in the work directory, for
        :func:`storage.warc.recover_pending` and its catalog twin)."""
        self._store.shutdown(wait=True)
        self.pool.close()
        try:
            self.warc.close()
            self.catalog.close()
            self.archive.flush()
            self.summary_notes.write()
        finally:
            if self.workspace is not None:
                self.workspace.remove_if_done()
                self.workspace.release()


def recover_abandoned(archive: Archive, data_dir: Path, site: str) -> int:
    """Upload what scans and crawls of ``site`` that died on this machine left in their
    workspaces (WARC files, catalog rows, run manifests), so that the articles they archived are in the
    catalog. A workspace with pages in its spool is left to the site's next crawl, which
    extracts them. Returns the workspaces finished."""
    finished = 0
    for workspace in Workspace.abandoned(data_dir, site):
        try:
            if workspace.spool_size():
                continue
            workspace.upload_leftovers(archive)
            if workspace.remove_if_done():
                finished += 1
        except ArchiveError as exc:
            logger.warning("cannot finish run %s yet: %s", workspace.run_id, exc)
        finally:
            workspace.release()
    return finished
