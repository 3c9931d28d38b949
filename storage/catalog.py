"""The archive's catalog: every archived record and its text as Parquet, partitioned by site
and date, under ``catalog/`` in the archive itself.

Why: ``meta.json`` files are one object per article, fine for the crawler and for ``show``,
but hopeless for analysis (a million GETs to count articles per site). The catalog holds the
same fields in a columnar, typed form that analysts query in place, in the bucket, with
DuckDB, pandas/pyarrow or Athena, without copying the archive or running a database:

    catalog/site=<site>/date=<YYYY-MM-DD>/<run_id>.parquet

Hive-style partition folders let every one of those tools prune by site and date. ``site``
and ``date`` live only in the path, never inside the files (Athena and Hive forbid a
partition column that is also a file column, and it keeps pyarrow from seeing two ``site``
fields), so read the catalog as a *dataset* with hive partitioning.

How a run writes it: :class:`CatalogWriter` appends each archived record to a local JSON
Lines file as it goes (one flushed line per record, so a killed crawl loses at most the
line being written) and turns it into Parquet once, at :meth:`CatalogWriter.close`: one file
per (site, date) per run, never rewritten by another run, so writers need no coordination.
:func:`recover_pending` converts the pending files of runs that died before closing.

A record archived again by a later run (a new version, a new alias) gets a row in that
run's file too, in the same ``site=/date=`` folder (the date is the article's folder's). Its
latest state is its *latest row*: the most ``versions`` (they are only ever added; a
reprocessing adds one without a new fetch), then the latest ``fetched_at``, then the latest
``checked_at``; rows equal on all three (an alias added) go to the run file over the
compacted one, then to the greater file name. :func:`read_catalog` returns that row alone;
:class:`Catalog` lists the catalog once for readers that read it in parts, and lists it
again when a compaction deleted a file it had listed.

Files stay few: :func:`compact_catalog` (``newsarchive compact``, and ``serve`` every night)
merges each closed day's files into one ``compacted-<hash>.parquet`` holding each article's
latest row, and deletes the files it merged. A day then has its compacted file plus the
run files written since, which readers merge as they merge run files. It also keeps, per
site, ``catalog/site=<site>/_days.json`` (:data:`DAYS_SUMMARY`): each compacted day's file
and :class:`DayFigures`, so that per-day figures over a long history read the open days
only (:meth:`Catalog.summarized`).

The columns are :class:`storage.record.Record`'s fields, written out with their Arrow types
in :func:`catalog_schema`: a field added to the record needs its column added there (a test
says so when it is missing).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from storage.backends import Backend, archive_location
from storage.errors import ArchiveAccessDenied, ArchiveError, InvalidKey, ObjectNotFound
from storage.index import compare_and_swap
from storage.keys import day_of_meta_key, is_meta_key, validate_run_id, validate_site_name
from storage.lazy import LazyModule
from storage.record import Extractor, Record, Version, as_utc
from storage.word_filter import WordFilter, text_keys, word_filter_key

# Imported on first use (storage.lazy): ``CatalogWriter.add`` writes JSON Lines, and pyarrow
# is needed only when a run's catalog is written or read.
pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")
ds = LazyModule("pyarrow.dataset")
pafs = LazyModule("pyarrow.fs")
pq = LazyModule("pyarrow.parquet")

logger = logging.getLogger(__name__)

CATALOG_ROOT = "catalog"
"""Archive-relative folder of the catalog."""

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
"""Content type of the catalog's objects on S3."""

PARTITION_COLUMNS = ("site", "date")
"""Columns stored in the path (``site=<site>/date=<YYYY-MM-DD>``), not inside the files."""

TEXT_COLUMN = "text"
"""The article's cleaned text (``text.txt``)."""

EXTRA_COLUMN = "extra_json"
"""JSON object of the record's fields this version does not know (``Record.extra``), or null."""

OFFSET_FIELDS = ("published", "modified")
"""Datetime fields whose UTC offset (the publisher's time zone) gets its own column
``<field>_offset_minutes``: Parquet timestamps are instants, the offset would be lost."""

ROWS_PER_BATCH = 500
"""Rows converted to Arrow at a time when a run's catalog is written: bounds the memory of
closing a run of any size."""

_PARALLEL_UPLOADS = 8

COMPACTED_PREFIX = "compacted-"
"""Name prefix of a day's compacted file (``compacted-<hash>.parquet``); no run id has it."""

_PENDING_PREFIX = "catalog-"
_PENDING_SUFFIX = ".jsonl"


# -- schema: the columns, written out ------------------------------------------------------


@functools.cache
def catalog_schema() -> pa.Schema:
    """The catalog as :func:`read_catalog` returns it: a contract analysts' queries depend
    on, so it is written out here column by column, and ``tests/test_catalog.py`` fails when
    :class:`~storage.record.Record` gains or loses a field that it does not follow.

    Every field of the record (``extra`` aside) in declaration order, the times
    (``published``, ``modified``, ``fetched_at``, ``checked_at``) as instants in UTC, with
    the publisher's UTC offset of ``published`` and ``modified`` beside them (null when the
    time is null or had none); then ``text`` (the cleaned text), ``extra_json`` (fields this
    version does not know, as a JSON object) and the ``date`` partition (``site`` is the
    other partition column: both are in the path, not in the files). Every column is
    nullable. A column renamed or retyped would no longer read from the files already
    written, nor answer analysts' queries: add columns, never change one.
    """
    timestamp = pa.timestamp("us", tz="UTC")
    strings = pa.list_(pa.string())
    return pa.schema([
        ("id", pa.string()),
        ("site", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("title", pa.string()),
        ("authors", strings),
        ("published", timestamp),
        ("published_offset_minutes", pa.int16()),
        ("modified", timestamp),
        ("modified_offset_minutes", pa.int16()),
        ("language", pa.string()),
        ("fetched_at", timestamp),
        ("http_status", pa.int64()),
        ("content_sha256", pa.string()),
        ("extractor", pa.struct([("name", pa.string()), ("version", pa.string())])),
        ("raw_key", pa.string()),
        ("text_key", pa.string()),
        ("meta_key", pa.string()),
        ("aliases", strings),
        ("near_duplicate_of", pa.string()),
        ("duplicate_of", pa.string()),
        ("text_fingerprint", pa.string()),
        ("versions", pa.list_(pa.struct([
            ("fetched_at", timestamp),
            ("content_sha256", pa.string()),
            ("raw_key", pa.string()),
            ("text_key", pa.string()),
            ("url", pa.string()),
            ("extractor", pa.string()),
            ("warc_key", pa.string()),
            ("warc_offset", pa.int64()),
        ]))),
        ("checked_at", timestamp),
        ("charset", pa.string()),
        ("paywalled", pa.bool_()),
        ("warc_key", pa.string()),
        ("warc_offset", pa.int64()),
        ("description", pa.string()),
        ("section", pa.string()),
        ("tags", strings),
        ("image_url", pa.string()),
        ("metadata_sources", pa.map_(pa.string(), pa.string())),
        ("source", pa.string()),
        ("source_file", pa.string()),
        ("source_offset", pa.int64()),
        ("screenshot_key", pa.string()),
        ("schema_version", pa.int64()),
        (TEXT_COLUMN, pa.string()),
        (EXTRA_COLUMN, pa.string()),
        ("date", pa.date32()),
    ])


OFFSET_COLUMNS = {f"{name}_offset_minutes": name for name in OFFSET_FIELDS}
"""Each offset column and the record field whose offset it keeps."""


@functools.cache
def _file_schema() -> pa.Schema:
    """Schema of the Parquet files: :func:`catalog_schema` without the partition columns."""
    return pa.schema([f for f in catalog_schema() if f.name not in PARTITION_COLUMNS])


@dataclass(frozen=True)
class _Column:
    """One column of a file that is filled from a record field."""

    name: str
    """The column's name."""
    source: str
    """The record field the value comes from (an offset column's: its time)."""
    convert: Callable[[Any], Any]
    """Turns the field's value into the column's."""


@functools.cache
def _record_columns() -> tuple[_Column, ...]:
    """The file's columns filled from the record (all but ``text`` and ``extra_json``)."""
    out = []
    for f in _file_schema():
        if f.name in (TEXT_COLUMN, EXTRA_COLUMN):
            continue
        if f.name in OFFSET_COLUMNS:
            out.append(_Column(f.name, OFFSET_COLUMNS[f.name], _offset_minutes))
        else:
            out.append(_Column(f.name, f.name, _column_converter(f.type)))
    return tuple(out)


def _column_converter(arrow_type: pa.DataType) -> Callable[[Any], Any]:
    """How a record's value (a Python value of the field's type) becomes a value of a
    column of ``arrow_type``; None stays None. Times become UTC (naive ones taken as UTC),
    tuples lists, a mapping key-value pairs, a dataclass (or dict) a struct."""
    types_ = pa.types
    if types_.is_string(arrow_type):
        return _nullable(str)
    if types_.is_boolean(arrow_type):
        return _nullable(bool)
    if types_.is_integer(arrow_type):
        return _nullable(int)
    if types_.is_floating(arrow_type):
        return _nullable(float)
    if types_.is_timestamp(arrow_type):
        return _nullable(_to_utc)
    if types_.is_date(arrow_type):
        return _nullable(_to_date)
    if types_.is_map(arrow_type):
        return _nullable(lambda v: [(str(k), None if x is None else str(x))
                                    for k, x in v.items()])
    if types_.is_list(arrow_type):
        item_convert = _column_converter(arrow_type.value_type)
        return _nullable(lambda v: [item_convert(x) for x in v])
    if types_.is_struct(arrow_type):
        children = [(f.name, _column_converter(f.type)) for f in arrow_type]

        def convert_struct(value: Any) -> dict[str, Any]:
            get = value.get if isinstance(value, dict) else lambda n: getattr(value, n, None)
            return {name: convert(get(name)) for name, convert in children}

        return _nullable(convert_struct)
    raise TypeError(f"no conversion to a catalog column of type {arrow_type}")


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _to_utc(value: datetime | str) -> datetime:
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _to_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return as_utc(value).date()
    return date.fromisoformat(value) if isinstance(value, str) else value


def _offset_minutes(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    offset = value.utcoffset()
    return None if offset is None else int(offset.total_seconds() // 60)


def _to_json(value: Any) -> str:
    """``value`` as the JSON text of a string column (``extra_json``)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _file_row(record: Record, text: str | None) -> dict[str, Any]:
    """A record and its text as one row of a catalog file."""
    row = {c.name: c.convert(getattr(record, c.source)) for c in _record_columns()}
    row[TEXT_COLUMN] = text
    row[EXTRA_COLUMN] = _to_json(record.extra) if record.extra else None
    return row


def catalog_file_table(rows: Iterable[tuple[Record, str]]) -> pa.Table:
    """Records and their texts as the table a run writes to a catalog file (one site and
    date: the caller's to group), as :class:`CatalogWriter` writes it."""
    return pa.Table.from_pylist([_file_row(record, text) for record, text in rows],
                                schema=_file_schema())


def catalog_key(site: str, day: date, run_id: str) -> str:
    """``catalog/site=<site>/date=<YYYY-MM-DD>/<run_id>.parquet`` (archive-relative). A run
    id that would read as a compacted file's name is refused."""
    validate_site_name(site)
    validate_run_id(run_id)
    if run_id.startswith(COMPACTED_PREFIX):
        raise InvalidKey(f"invalid run id {run_id!r}: {COMPACTED_PREFIX}* names compacted files")
    return f"{CATALOG_ROOT}/site={site}/date={day:%Y-%m-%d}/{run_id}.parquet"


def pending_path(pending_dir: Path, run_id: str) -> Path:
    """The local JSON Lines file a run's catalog rows wait in until the run closes."""
    return Path(pending_dir) / f"{_PENDING_PREFIX}{validate_run_id(run_id)}{_PENDING_SUFFIX}"


def archive_date(record: Record, backend: Backend | None = None) -> date:
    """The article's archive date: the date folder of its ``meta.json`` when its key says
    so, else the publication date (UTC), else the fetch date (UTC), as the archive
    computes it (see :func:`storage.keys.article_keys`)."""
    if backend is not None:
        try:
            key = backend.relative(record.meta_key)
            if is_meta_key(key):
                return day_of_meta_key(key)
        except (ArchiveError, ValueError):
            pass
    return as_utc(record.published or record.fetched_at).date()


# -- writing -------------------------------------------------------------------------------


class CatalogWriter:
    """Collects one run's catalog rows and writes them as Parquet when the run ends.

    :meth:`add` is safe to call from any thread; each row is one flushed line of
    ``<pending_dir>/catalog-<run_id>.jsonl``, so the rows survive the process being
    killed and :func:`recover_pending` can finish the job.
    """

    def __init__(self, backend: Backend, pending_dir: Path, run_id: str) -> None:
        self.backend = backend
        self.run_id = validate_run_id(run_id)
        self.path = pending_path(pending_dir, run_id)
        self._lock = threading.Lock()
        self._file: io.TextIOWrapper | None = None
        self._closed = False

    def add(self, record: Record, text: str) -> None:
        """Append ``record`` and its cleaned ``text`` to the run's pending file."""
        line = json.dumps({**record.to_dict(), TEXT_COLUMN: text}, ensure_ascii=False)
        with self._lock:
            if self._closed:
                raise ArchiveError(f"catalog writer of run {self.run_id} is closed")
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8", newline="\n")
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                raise ArchiveError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> list[str]:
        """Write the run's rows as Parquet, one file per (site, date), then delete the
        pending file; returns the located keys written (none for a run without rows).

        Memory stays bounded however many rows the run has: the pending file is read twice,
        once to find each (site, date)'s rows, then one (site, date) at a time, in batches
        of ``ROWS_PER_BATCH``, through a local temporary Parquet file.

        On a storage error the pending file stays, for :func:`recover_pending` to retry.
        """
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
            try:
                # A run touches a day or two, a backfill hundreds: each (site, date)'s file
                # is made here, one after the other (pyarrow's memory, one at a time), and
                # uploaded while the next is made, several at once (on S3 each upload is a
                # round trip of its own).
                with open(self.path, "rb") as pending, ThreadPoolExecutor(
                        _PARALLEL_UPLOADS, thread_name_prefix="catalog-put") as uploads:
                    groups = self._group_rows(pending)
                    written = [uploads.submit(self._upload, *self._write_group(
                                   pending, site, day, offsets))
                               for (site, day), offsets in sorted(groups.items())]
                    keys = [upload.result() for upload in written]
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise ArchiveError(f"cannot read {self.path}: {exc}") from exc
            self.path.unlink(missing_ok=True)
            logger.info("catalog of run %s: %d file(s)", self.run_id, len(keys))
            return keys

    def _group_rows(self, pending: IO[bytes]) -> dict[tuple[str, date], list[int]]:
        """Offsets of the pending lines to write, per (site, date), in order of each
        record's first row; a record added more than once (a new alias or version within
        the run) keeps its last row."""
        groups: dict[tuple[str, date], dict[str, int]] = {}
        offset = 0
        for number, line in enumerate(pending, 1):
            start, offset = offset, offset + len(line)
            parsed = self._row(line, number)
            if parsed is not None:
                group, record_id, _row = parsed
                groups.setdefault(group, {})[record_id] = start
        return {group: list(rows.values()) for group, rows in groups.items()}

    def _row(self, line: bytes, number: int) -> tuple[tuple[str, date], str, dict] | None:
        """One pending line as ((site, date), record id, catalog row), or None for a line
        that does not parse."""
        if not line.strip():
            return None
        try:
            data = json.loads(line)
            text = data.pop(TEXT_COLUMN, None)
            record = Record.from_dict(data)
            group = (validate_site_name(record.site), archive_date(record, self.backend))
            row = _file_row(record, None if text is None else str(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A torn last line (the process was killed mid-write) or a damaged one.
            logger.warning("%s line %d skipped: %s", self.path, number, exc)
            return None
        return group, record.id, row

    def _write_group(self, pending: IO[bytes], site: str, day: date,
                     offsets: list[int]) -> tuple[str, Path]:
        """Write one (site, date)'s rows as a local Parquet file; returns its key and the
        file, for :meth:`_upload`."""
        key = catalog_key(site, day, self.run_id)
        schema = _file_schema()
        parquet = self.path.with_name(f"{self.path.stem}.{site}.{day:%Y-%m-%d}.parquet.tmp")
        try:
            with pq.ParquetWriter(parquet, schema, compression="zstd") as writer:
                for first in range(0, len(offsets), ROWS_PER_BATCH):
                    rows = []
                    for offset in offsets[first:first + ROWS_PER_BATCH]:
                        pending.seek(offset)
                        # Parsed in the first pass already: it parses again.
                        rows.append(self._row(pending.readline(), 0)[2])
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        except BaseException:
            parquet.unlink(missing_ok=True)
            raise
        return key, parquet

    def _upload(self, key: str, parquet: Path) -> str:
        """Put a file of :meth:`_write_group` under its key, then remove it; returns the
        located key."""
        try:
            self.backend.put_file(key, parquet, content_type=PARQUET_CONTENT_TYPE)
        finally:
            parquet.unlink(missing_ok=True)
        return self.backend.locate(key)


def recover_pending(backend: Backend, pending_dir: Path, *,
                    is_alive: Callable[[str], bool]) -> list[str]:
    """Write the catalog of every run that left a pending file and is no longer running
    (``is_alive(run_id)`` false); returns the located keys written.

    Lines that do not parse (the torn last line of a killed process) are skipped and
    logged. A file that cannot be converted is logged and left in place for the next
    attempt; this never raises because of one file.
    """
    pending_dir = Path(pending_dir)
    if not pending_dir.is_dir():
        return []
    keys: list[str] = []
    for path in sorted(pending_dir.glob(f"{_PENDING_PREFIX}*{_PENDING_SUFFIX}")):
        run_id = path.name[len(_PENDING_PREFIX) : -len(_PENDING_SUFFIX)]
        try:
            if is_alive(run_id):
                continue
            written = CatalogWriter(backend, pending_dir, run_id).close()
        except Exception:  # one bad file must not stop the others
            logger.exception("cannot recover the pending catalog %s", path)
            continue
        logger.info("recovered the catalog of run %s: %d file(s)", run_id, len(written))
        keys += written
    return keys


# -- reading -------------------------------------------------------------------------------


# Columns added to a read to tell each article's latest row, dropped before it returns.
_ID = "__latest_id"
_VERSIONS = "__latest_versions"
_FETCHED = "__latest_fetched_at"
_CHECKED = "__latest_checked_at"
_SOURCE = "__latest_source"

_LATEST_ORDER = ((_VERSIONS, "descending"), (_FETCHED, "descending"),
                 (_CHECKED, "descending"), (_SOURCE, "descending"))
"""Which of an article's rows is its latest, best first (see the module's docstring)."""


def _latest_key_projection() -> dict[str, ds.Expression]:
    """The hidden columns that rank an article's rows (all but ``_SOURCE``, which is the
    file's): small, so a read of a few columns does not read ``versions`` whole."""
    return {_ID: ds.field("id"),
            _VERSIONS: pc.list_value_length(ds.field("versions")),
            _FETCHED: ds.field("fetched_at"),
            _CHECKED: ds.field("checked_at")}


def _source_rank(file_names: Iterable[str]) -> dict[str, int]:
    """Each catalog file name's rank among ``file_names`` for ties between rows: compacted
    files first, then run files, each by name; the greatest rank wins."""
    names = sorted(set(file_names), key=lambda n: (not n.startswith(COMPACTED_PREFIX), n))
    return {name: rank for rank, name in enumerate(names)}


def _keep_latest(table: pa.Table) -> pa.Table:
    """``table`` (with the hidden ranking columns) reduced to each id's latest row, in the
    order the rows came, without the hidden columns. Rows without an id are all kept."""
    hidden = [_ID, _VERSIONS, _FETCHED, _CHECKED, _SOURCE]
    if table.num_rows > 1:
        keyed = table.set_column(table.schema.get_field_index(_VERSIONS), _VERSIONS,
                                 pc.fill_null(table[_VERSIONS], 0))
        # Nulls last: a row checked or fetched at a known time is later than one without.
        order = pc.sort_indices(keyed, sort_keys=[(_ID, "ascending", "at_end")] + [
            (name, direction, "at_end") for name, direction in _LATEST_ORDER])
        ids = keyed[_ID].take(order).combine_chunks()
        first = pc.fill_null(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)), True)
        first = pa.concat_arrays([pa.array([True]), first])
        kept = pc.filter(order, first)
        table = table.take(kept.take(pc.sort_indices(kept)))
    return table.drop_columns(hidden)


class _NoPandas:
    """A finder that makes ``import pandas`` fail as if pandas were not installed."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (kept out of this process)",
                                      name=name)
        return None


def keep_pandas_out() -> None:
    """Make this process run as if pandas were not installed, as in the service's own
    installation (pandas is no dependency of ours). pyarrow imports pandas, when it finds it,
    at its first conversion of a Python value (even one ``True``), only to ask whether the
    value is a pandas object: 0.3-0.5 s of CPU and 40 MB in every crawl and command that
    touches the catalog, none of which reads or writes a DataFrame. For the entry points of
    our own processes only (a crawl's, the ``newsarchive`` command's), never for a library
    caller, whose code may use pandas; a process that has imported pandas already keeps it."""
    if "pandas" not in sys.modules and _NoPandas not in sys.meta_path:
        sys.meta_path.insert(0, _NoPandas)


Columns = Sequence[str] | Mapping[str, "ds.Expression"]
"""What a read returns: column names, or a projection (each name's expression, e.g.
``{"title": ds.field("title"), "words": pc.utf8_length(ds.field("text"))}``)."""


class Catalog:
    """The catalog of one archive (a directory or ``s3://bucket/prefix``), or of one of its
    sites, listed once and read in place, typed as :func:`catalog_schema`.

    Listing is the one step whose cost grows with the number of files, whatever is read;
    a reader that reads several parts of the catalog (search, day by day) lists it once.
    On S3 the endpoint, region and credentials come from the standard ``AWS_*`` variables
    (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
    ``AWS_ACCESS_KEY_ID``...), else the AWS SDK's default chain.
    """

    def __init__(self, archive_url: str, site: str | None = None) -> None:
        self.archive_url = archive_url
        self.site = None if site is None else validate_site_name(site)
        self._filesystem, self._root = _catalog_location(archive_url)
        self._parts: dict[tuple[str, date], list[tuple[str, int]]] = {}
        self._summaries: set[str] = set()
        self._word_filters: dict[tuple[str, date], WordFilter | None] = {}
        self._list()

    def _list(self) -> None:
        """List the catalog's files (of :attr:`site` alone, when given) again: each
        partition's paths and sizes, and the sites that have a summary."""
        parts: dict[tuple[str, date], list[tuple[str, int]]] = {}
        summaries: set[str] = set()
        folder = self._root if self.site is None else f"{self._root}/site={self.site}"
        try:
            infos = self._filesystem.get_file_info(
                pafs.FileSelector(folder, recursive=True, allow_not_found=True))
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(self.archive_url, exc) from exc
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = f"{CATALOG_ROOT}/" + info.path[len(self._root):].lstrip("/")
            parsed = _parse_catalog_key(relative)
            if parsed is not None:
                site, day, name = parsed
                # Hidden as pyarrow's discovery hides them: temporary files of writes.
                if not name.startswith((".", "_")):
                    parts.setdefault((site, day), []).append((info.path, info.size))
            elif relative.endswith(f"/{DAYS_SUMMARY}") and relative.count("/") == 2:
                summaries.add(relative.split("/")[1][len("site="):])
        self._parts, self._summaries = parts, summaries

    def partitions(self, site: str | None = None) -> list[tuple[str, date]]:
        """The (site, date) partitions that have files (of ``site``), sorted."""
        return sorted(p for p in self._parts if site is None or p[0] == site)

    def files(self, partition: tuple[str, date]) -> list[str]:
        """The file names of one (site, date) partition, sorted."""
        return sorted(path.rsplit("/", 1)[-1] for path, _size in self._parts.get(partition, ()))

    def summarized(self, site: str | None = None) -> dict[tuple[str, date], DayFigures]:
        """The figures of the closed days (of ``site``) that are nothing but the compacted
        file their site's summary names (:data:`DAYS_SUMMARY`): those days need not be read
        for per-day figures. A day with a run file written since its compaction is not
        among them. One small read per site."""
        out: dict[tuple[str, date], DayFigures] = {}
        for name in sorted({s for s, _ in self._parts if (site is None or s == site)
                            and s in self._summaries}):
            for day, entry in self._summary(name).items():
                if self.files((name, day)) == [entry.file]:
                    out[(name, day)] = entry.figures
        return out

    def _summary(self, site: str) -> dict[date, _SummaryEntry]:
        path = f"{self._root}/site={site}/{DAYS_SUMMARY}"
        try:
            with self._filesystem.open_input_stream(path) as stream:
                return _parse_summary(stream.read())
        except FileNotFoundError:
            return {}
        except ValueError as exc:  # damaged: the files are read instead
            logger.warning("catalog summary %s ignored: %s", path, exc)
            return {}
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(self.archive_url, exc) from exc

    def cannot_hold(self, partition: tuple[str, date], keys: Sequence[str]) -> bool:
        """True when the partition is a compacted day whose month's word filter says no word
        of it starts with one of ``keys`` (:func:`storage.word_filter.query_key`): a search
        for them need not read it. False when it may, or cannot be told (no filter, or a
        file written to the day since its compaction)."""
        site, day = partition
        month = day.replace(day=1)
        if (site, month) not in self._word_filters:
            self._word_filters[(site, month)] = self._read_word_filter(site, month)
        words = self._word_filters[(site, month)]
        if words is None or [words.days.get(day)] != self.files(partition):
            return False
        return not all(words.may_hold(key) for key in keys)

    def _read_word_filter(self, site: str, month: date) -> WordFilter | None:
        path = f"{self._root}/{word_filter_key(CATALOG_ROOT, site, month).split('/', 1)[1]}"
        try:
            with self._filesystem.open_input_stream(path) as stream:
                return WordFilter.from_bytes(stream.read())
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError) as exc:
            if _vanished(exc):
                return None
            raise _read_error(self.archive_url, exc) from exc

    def read(self, *, filter: ds.Expression | None = None, columns: Columns | None = None,
             latest: bool = True,
             partitions: Iterable[tuple[str, date]] | None = None) -> pa.Table:
        """The rows (``latest``: each article's latest row, see the module's docstring; else
        every row of every file) that ``filter`` keeps, of every partition or of
        ``partitions`` only, with ``columns`` (all by default).

        ``filter`` is a ``pyarrow.dataset`` expression, e.g. ``ds.field("site") == "cbc"``
        or ``ds.field("date") >= datetime.date(2024, 5, 1)``; partition filters skip whole
        folders. The latest row is chosen among the rows the filter keeps: a filter on other
        columns (``title``...) may keep an article's older row whose latest does not match
        (a projection can test a column instead, leaving every row in). Columns written by
        a newer version than this one are not returned.
        """
        schema = catalog_schema()
        projection = ({name: ds.field(name) for name in schema.names} if columns is None
                      else dict(columns) if isinstance(columns, Mapping)
                      else {name: ds.field(name) for name in columns})
        partitions = (sorted(self._parts) if partitions is None
                      else list(dict.fromkeys(partitions)))
        for attempt in range(1, RELISTS + 2):
            try:
                tables = [self._read_files(chunk, schema, projection, filter, latest)
                          for chunk in self._chunks(partitions)]
                break
            except (pa.ArrowException, OSError, KeyError) as exc:
                if not (_vanished(exc) and attempt <= RELISTS):
                    raise _read_error(self.archive_url, exc) from exc
                # A compaction deleted a file after this listing; what it held is in the
                # compacted file written before, which a new listing finds.
                logger.info("catalog file gone while being read (compacted?): listing again")
                self._list()
        tables = [table for table in tables if table.num_rows]
        if not tables:
            return self._empty(projection)
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def _chunks(self, partitions: list[tuple[str, date]]
                ) -> Iterator[list[tuple[str, int, tuple[str, date]]]]:
        """The files of ``partitions`` (path, size, partition), a few whole partitions at a
        time (about :data:`FILES_PER_READ` files)."""
        chunk: list[tuple[str, int, tuple[str, date]]] = []
        for partition in partitions:
            chunk += [(path, size, partition) for path, size in self._parts.get(partition, ())]
            if len(chunk) >= FILES_PER_READ:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _read_files(self, files: list[tuple[str, int, tuple[str, date]]], schema: pa.Schema,
                    projection: dict[str, ds.Expression], filter: ds.Expression | None,
                    latest: bool) -> pa.Table:
        """The rows of ``files`` (whole partitions: an article's rows are all in one), each
        article's latest alone if ``latest``, in buffers of their own."""
        file_format = ds.ParquetFileFormat()
        fragments = [file_format.make_fragment(
                         path, self._filesystem, file_size=size,
                         partition_expression=(ds.field("site") == site) & (ds.field("date") == day))
                     for path, size, (site, day) in files]
        dataset = ds.FileSystemDataset(fragments, schema, file_format, self._filesystem)
        if not latest:
            return dataset.to_table(filter=filter, columns=projection).combine_chunks()
        tagged = [(t.record_batch, t.fragment.path.rsplit("/", 1)[-1])
                  for t in dataset.scanner(
                      filter=filter, columns=projection | _latest_key_projection()).scan_batches()]
        if not tagged:
            return self._empty(projection)
        rank = _source_rank(name for _, name in tagged)
        batches = [batch.append_column(_SOURCE, pa.repeat(pa.scalar(rank[name], pa.int32()),
                                                          batch.num_rows))
                   for batch, name in tagged]
        # Copied out: the scan's batches hold on to each file's buffers and metadata.
        return _keep_latest(pa.Table.from_batches(batches)).combine_chunks()

    def _empty(self, projection: Mapping[str, ds.Expression]) -> pa.Table:
        """No rows, with the columns of ``projection`` typed as a read would give them."""
        try:
            empty = ds.dataset(catalog_schema().empty_table())
            return empty.to_table(columns=dict(projection))
        except (pa.ArrowException, KeyError) as exc:
            raise _read_error(self.archive_url, exc) from exc


FILES_PER_READ = 500
"""Files a read scans at once (whole partitions): a scan holds each file's metadata until it
ends (a few hundred kilobytes with the catalog's columns), so a year of run files is read
in parts, each part's rows copied out and the rest let go."""

RELISTS = 5
"""Times a read lists the catalog again when a file it listed is gone (each time, a
compaction merged a day the read had listed)."""

# How pyarrow says a file is gone: FileNotFoundError for a local one; on S3 an OSError
# naming the AWS error (its only form, see _S3_REFUSALS below).
_GONE = ("NoSuchKey", "NO_SUCH_KEY", "Path does not exist", "HTTP status 404",
         "specified key does not exist",
         "RESOURCE_NOT_FOUND")


def _vanished(exc: BaseException) -> bool:
    """Whether ``exc`` says a file that was listed is no longer there. On S3 pyarrow says so
    with an OSError, or, when a scan opens the file, with ArrowInvalid ("Could not open
    Parquet input source ...: AWS Error RESOURCE_NOT_FOUND")."""
    if isinstance(exc, FileNotFoundError):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return False  # a local error of its own (permissions, a full disk...)
    return isinstance(exc, (OSError, pa.ArrowException)) and any(g in str(exc) for g in _GONE)


def read_catalog(archive_url: str, *, filter: ds.Expression | None = None,
                 columns: Columns | None = None, latest: bool = True) -> pa.Table:
    """The catalog of the archive at ``archive_url`` (a directory or ``s3://bucket/prefix``),
    read in place, typed as :func:`catalog_schema`: one row per article, its latest (see
    the module's docstring), unless ``latest`` is false (every row of every file). See
    :meth:`Catalog.read` for ``filter`` and ``columns``."""
    return Catalog(archive_url).read(filter=filter, columns=columns, latest=latest)


RECORD_COLUMNS = tuple(name for name in (f.name for f in dataclasses.fields(Record))
                       if name != "extra")
"""The catalog columns :func:`record_from_row` needs besides the offsets and ``extra_json``."""


def record_columns() -> list[str]:
    """The columns a read needs to rebuild records (:func:`record_from_row`): every column
    but ``text`` and ``date``."""
    return [name for name in catalog_schema().names if name not in (TEXT_COLUMN, "date")]


def record_from_row(row: Mapping[str, Any]) -> Record:
    """The record a catalog row (a dict of :func:`record_columns`, as ``to_pylist`` gives
    it) was written from: the inverse of the writer's conversion. ``published`` and
    ``modified`` get back their publisher's offset (naive, as they were, when the row
    kept none), the other times are UTC, as the crawl writes them; fields this version
    does not know come back from ``extra_json``."""
    values: dict[str, Any] = {name: row.get(name) for name in RECORD_COLUMNS}
    for name in OFFSET_FIELDS:
        moment, offset = values[name], row.get(f"{name}_offset_minutes")
        if moment is not None:
            values[name] = (moment.replace(tzinfo=None) if offset is None
                            else moment.astimezone(timezone(timedelta(minutes=offset))))
    for name in ("authors", "aliases", "tags"):
        values[name] = tuple(values[name] or ())
    values["metadata_sources"] = dict(values["metadata_sources"] or ())
    values["extractor"] = Extractor(**values["extractor"])
    # A version's null field (one written before the field existed) takes its default.
    values["versions"] = tuple(Version(**{k: v for k, v in version.items() if v is not None})
                               for version in values["versions"] or ())
    for name, field_ in ((f.name, f) for f in dataclasses.fields(Record)):
        if values.get(name) is None and field_.default is not dataclasses.MISSING:
            values[name] = field_.default  # a column added after the row was written
    extra = row.get(EXTRA_COLUMN)
    values["extra"] = json.loads(extra) if extra else {}
    return Record(**values)


# pyarrow raises every S3 error as a plain OSError, with no errno and no subclass that would
# tell a refusal from a lost connection; the AWS error type is only in its message ("AWS
# Error ACCESS_DENIED during HeadObject operation", or "HTTP status 403" for an error the SDK
# has no type for). So a refusal is read from the message, only there: local file errors
# are OSErrors with their errno, a damaged file ArrowInvalid, an unknown column a KeyError.
_S3_REFUSALS = ("ACCESS_DENIED", "AccessDenied", "HTTP status 403")


def _read_error(archive_url: str, exc: BaseException) -> ArchiveError:
    """The archive error for a failed read of the catalog (pyarrow's ``exc``)."""
    message = f"cannot read the catalog of {archive_url}: {exc}"
    s3_error = isinstance(exc, OSError) and exc.errno is None
    if s3_error and any(s in str(exc) for s in _S3_REFUSALS):
        return ArchiveAccessDenied(message)
    return ArchiveError(message)


def _catalog_location(archive_url: str):
    """The pyarrow file system and catalog path of an archive URL (its meaning is
    :func:`storage.backends.archive_location`'s, as for every backend)."""
    location = archive_location(archive_url)
    if location.bucket is not None:
        root = "/".join(p for p in (location.bucket, location.prefix, CATALOG_ROOT) if p)
        try:
            return s3_filesystem(), root
        except (pa.ArrowException, OSError) as exc:
            raise ArchiveError(f"cannot open S3 for {archive_url}: {exc}") from exc
    return (pafs.LocalFileSystem(),
            str(location.directory.expanduser().resolve() / CATALOG_ROOT))


def s3_filesystem():
    """A ``pyarrow.fs.S3FileSystem`` configured like boto3 from the standard environment:
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (MinIO, Ceph, R2... path-style
    addressing), ``AWS_DEFAULT_REGION``/``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``; without keys, the AWS SDK's default
    chain (profiles, instance roles)."""
    env = os.environ
    attempts = env.get("AWS_MAX_ATTEMPTS", "")
    kwargs: dict[str, Any] = {
        "connect_timeout": 10,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(
            max_attempts=int(attempts) if attempts.isdigit() else 5),
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme and parts.netloc:
            kwargs["scheme"] = parts.scheme
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        else:
            kwargs["endpoint_override"] = endpoint
    region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        kwargs["access_key"] = env["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        kwargs["session_token"] = env.get("AWS_SESSION_TOKEN")
    return pafs.S3FileSystem(**kwargs)


# -- compaction ----------------------------------------------------------------------------


DAYS_SUMMARY = "_days.json"
"""Name of a site's summary of its compacted days (``catalog/site=<site>/_days.json``): each
day's compacted file and :class:`DayFigures`, so that per-day figures need not open the
files of closed days. Its leading ``_`` hides it from pyarrow's, Hive's, Athena's and
Spark's discovery of the dataset, and it is no ``.parquet`` file for DuckDB's globs."""

FIGURE_COLUMNS = ("site", "date", "title", "authors", "published")
"""The columns :func:`day_figures` reads."""


@dataclass(frozen=True)
class DayFigures:
    """How many articles (latest rows) one site has under one date, and how well their
    metadata came out."""

    articles: int
    """Articles."""
    with_published: int
    """Of those, articles with a publication date."""
    with_authors: int
    """Of those, articles with at least one author."""
    with_title: int
    """Of those, articles with a non-empty title."""


def day_figures(rows: pa.Table) -> dict[tuple[str, date], DayFigures]:
    """Per (site, date), the figures of ``rows``: latest rows with :data:`FIGURE_COLUMNS`."""
    if rows.num_rows == 0:
        return {}
    flags = _figure_flags(rows).append_column("site", rows["site"]).append_column(
        "date", rows["date"])
    grouped = flags.group_by(["site", "date"]).aggregate(
        [("published", "count"), ("published", "sum"), ("authors", "sum"), ("title", "sum")])
    return {(row["site"], row["date"]): DayFigures(
                articles=row["published_count"], with_published=row["published_sum"],
                with_authors=row["authors_sum"], with_title=row["title_sum"])
            for row in grouped.to_pylist()}


def _figure_flags(rows: pa.Table) -> pa.Table:
    """1 or 0 per row: has a publication date, an author, a title."""
    return pa.table({
        "published": pc.cast(pc.is_valid(rows["published"]), pa.int64()),
        "authors": pc.cast(pc.greater(pc.fill_null(pc.list_value_length(rows["authors"]), 0),
                                      0), pa.int64()),
        "title": pc.cast(pc.greater(pc.fill_null(pc.utf8_length(rows["title"]), 0), 0),
                         pa.int64()),
    })


def _one_day_figures(rows: pa.Table) -> DayFigures:
    """The figures of ``rows`` (one day's latest rows, with title, authors and published)."""
    flags = _figure_flags(rows)
    return DayFigures(articles=rows.num_rows,
                      with_published=pc.sum(flags["published"]).as_py() or 0,
                      with_authors=pc.sum(flags["authors"]).as_py() or 0,
                      with_title=pc.sum(flags["title"]).as_py() or 0)


def days_summary_key(site: str) -> str:
    """``catalog/site=<site>/_days.json`` (archive-relative)."""
    return f"{CATALOG_ROOT}/site={validate_site_name(site)}/{DAYS_SUMMARY}"


@dataclass(frozen=True)
class _SummaryEntry:
    """One compacted day of a site's summary."""

    file: str
    """The day's compacted file (its name)."""
    figures: DayFigures
    """Its figures."""


def _parse_summary(data: bytes) -> dict[date, _SummaryEntry]:
    """A summary's entries; raises ValueError for one that does not parse."""
    try:
        days = json.loads(data)["days"]
        return {date.fromisoformat(day): _SummaryEntry(
                    file=str(entry["file"]),
                    figures=DayFigures(**{f.name: int(entry[f.name])
                                          for f in dataclasses.fields(DayFigures)}))
                for day, entry in days.items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a catalog summary: {exc}") from exc


def _summary_json(entries: dict[date, _SummaryEntry]) -> bytes:
    return json.dumps({"days": {
        day.isoformat(): {"file": entry.file, **dataclasses.asdict(entry.figures)}
        for day, entry in sorted(entries.items())}}, indent=0).encode()


@dataclass(frozen=True)
class SiteCompaction:
    """What :func:`compact_catalog` did to one site's catalog."""

    site: str
    """The site."""
    closed_days: int
    """Days before the cut-off that have catalog files."""
    days_compacted: int
    """Of those, days merged now (the others were one compacted file already, or changed
    under a concurrent compaction and are left for the next)."""
    files_before: int
    """The site's catalog files (all days) when they were listed."""
    files_after: int
    """Its files once compaction was done (files written since the listing not counted)."""


CLOSED_AFTER = timedelta(hours=3)
"""How long after its end (midnight UTC) a day counts as closed, for compaction."""


def default_compaction_cutoff(now: datetime | None = None) -> date:
    """The first day :func:`compact_catalog` leaves alone by default: the day
    :data:`CLOSED_AFTER` ago (UTC), so today, and yesterday until 03:00.

    Today's partition takes a run file from every crawl: compacting it would rewrite a
    growing file every time and still leave it open. Yesterday's still receives, for a
    while after midnight, the files of crawls that started before and close after it, and
    of killed crawls whose rows the next one recovers; three hours on, those have come
    (``serve`` compacts at 03:15, see :mod:`flows.compaction`), and a file that comes later
    still is merged by the next compaction (compaction is safe against late files). Every
    day but today is then one file per site, which readers need not open.
    """
    now = now or datetime.now(timezone.utc)
    return (as_utc(now) - CLOSED_AFTER).date()


def compact_catalog(backend: Backend, *, site: str | None = None, before: date | None = None,
                    progress: Callable[[str, int, int], None] | None = None
                    ) -> list[SiteCompaction]:
    """Merge the files of each closed day (before ``before``, by default
    :func:`default_compaction_cutoff`) of ``site`` (all sites by default) into one
    ``compacted-<hash>.parquet`` with each article's latest row, then delete the files
    merged; returns what was done per site, in site order. ``progress(site, done, total)``
    is called after each day compacted.

    - Idempotent: a day that is one compacted file costs nothing beyond the listing.
    - Safe against crawls writing meanwhile: only the files listed, read and merged are
      deleted; a run file written to the day after the listing stays, and readers merge it
      with the compacted file until the next compaction folds it in.
    - Safe when killed: the compacted file is written before any file is deleted, and the
      rows it holds are the latest rows of the files still there, so readers (who keep each
      article's latest row) read the same rows at every step. The next compaction merges
      the leftovers. Two compactions at once are safe too: a day whose file vanished while
      being read (the other one merged it) is left for the next.
    - A file with columns this version does not know (written by a newer one) leaves its
      day alone rather than dropping them.
    """
    before = before or default_compaction_cutoff()
    prefix = f"{CATALOG_ROOT}/" if site is None else f"{CATALOG_ROOT}/site={validate_site_name(site)}/"
    days: dict[str, dict[date, list[str]]] = {}
    files: dict[str, int] = {}
    for key in backend.iter_keys(prefix):
        parsed = _parse_catalog_key(key)
        if parsed is None:
            continue
        key_site, day, _name = parsed
        files[key_site] = files.get(key_site, 0) + 1
        if day < before:
            days.setdefault(key_site, {}).setdefault(day, []).append(key)
    out = []
    for key_site in sorted(files):
        closed = days.get(key_site, {})
        todo = {day: sorted(keys) for day, keys in sorted(closed.items())
                if not (len(keys) == 1 and _is_compacted(keys[0]))}
        summary = _read_summary(backend, key_site)
        entries = {day: entry for day, entry in summary.items() if day in closed}
        compacted = removed = 0
        for done, (day, keys) in enumerate(todo.items(), 1):
            result = _compact_day(backend, key_site, day, keys)
            if result is not None:
                compacted += 1
                removed += len(keys) - 1
                entries[day] = result
            if progress is not None:
                progress(key_site, done, len(todo))
        # Days compacted before the summary knew them (by a compaction killed before it
        # wrote the summary, or by two at once, the last one's summary winning): once.
        for day, keys in closed.items():
            name = keys[0].rsplit("/", 1)[-1]
            if day not in todo and (day not in entries or entries[day].file != name):
                figures = _figures_of_file(backend, keys[0])
                if figures is not None:
                    entries[day] = _SummaryEntry(name, figures)
        if entries != summary:
            # The word filters first: a compaction killed before the summary is written
            # finds these days changed again next time, and covers what it missed.
            _cover_words(backend, key_site, {day: entry for day, entry in entries.items()
                                             if summary.get(day) != entry})
            backend.put(days_summary_key(key_site), _summary_json(entries),
                        content_type="application/json")
        out.append(SiteCompaction(site=key_site, closed_days=len(closed),
                                  days_compacted=compacted, files_before=files[key_site],
                                  files_after=files[key_site] - removed))
    return out


def _cover_words(backend: Backend, site: str, entries: dict[date, _SummaryEntry]) -> None:
    """Add the days just compacted (``entries``) to their months' word filters
    (:mod:`storage.word_filter`), unless a filter covers one already with the same file:
    one read of each day's titles and texts. Compare-and-swap, so a compaction running at
    once adds its days too. Only the months of these days are read: the cost is the new
    days', whatever the history."""
    months: dict[date, dict[date, str]] = {}
    for day, entry in entries.items():
        months.setdefault(day.replace(day=1), {})[day] = entry.file

    def covering(files: dict[date, str]) -> Callable[[WordFilter | None], WordFilter | None]:
        def cover(current: WordFilter | None) -> WordFilter | None:
            current = current or WordFilter()
            added = False
            for day, name in sorted(files.items()):
                if current.days.get(day) == name:
                    continue
                compacted = f"{CATALOG_ROOT}/site={site}/date={day:%Y-%m-%d}/{name}"
                try:
                    table = pq.ParquetFile(pa.BufferReader(backend.get(compacted))).read(
                        columns=["title", TEXT_COLUMN])
                except ObjectNotFound:
                    continue  # compacted again meanwhile: the next compaction covers it
                except (pa.ArrowException, OSError) as exc:
                    raise ArchiveError(f"cannot read {compacted}: {exc}") from exc
                current.add(day, name, text_keys(
                    value for column in ("title", TEXT_COLUMN) for value in
                    table[column].to_pylist()))
                added = True
            return current if added else None
        return cover

    for month, files in sorted(months.items()):
        key = word_filter_key(CATALOG_ROOT, site, month)
        try:
            compare_and_swap(backend, key, covering(files), decode=WordFilter.from_bytes,
                             encode=WordFilter.to_bytes,
                             content_type="application/octet-stream")
        except ArchiveError as exc:
            logger.warning("word filter %s not updated (%s): searches read those days", key, exc)


def read_word_filter(backend: Backend, site: str, month: date) -> WordFilter | None:
    """A site-month's word filter, or None when it has none (or a damaged one)."""
    try:
        return WordFilter.from_bytes(backend.get(word_filter_key(CATALOG_ROOT, site, month)))
    except ObjectNotFound:
        return None


def _read_summary(backend: Backend, site: str) -> dict[date, _SummaryEntry]:
    """A site's summary of its compacted days (empty when it has none, or a damaged one:
    compaction writes it anew)."""
    try:
        return _parse_summary(backend.get(days_summary_key(site)))
    except ObjectNotFound:
        return {}
    except ValueError as exc:
        logger.warning("catalog summary of %s ignored and written again: %s", site, exc)
        return {}


def _figures_of_file(backend: Backend, key: str) -> DayFigures | None:
    """The figures of a compacted file (one row per article), or None if it is gone."""
    try:
        table = pq.ParquetFile(pa.BufferReader(backend.get(key))).read(
            columns=["title", "authors", "published"])
    except ObjectNotFound:
        return None
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"cannot read {key}: {exc}") from exc
    return _one_day_figures(table)


def compacted_key(site: str, day: date, merged: Sequence[str]) -> str:
    """The key of the file merging the catalog files ``merged`` (keys) of ``site`` and
    ``day``: named by a hash of their names, so a compaction run again over the same files
    (after being killed) writes the same key again rather than one more file."""
    digest = hashlib.sha256("\n".join(sorted(merged)).encode("utf-8")).hexdigest()[:16]
    return (f"{CATALOG_ROOT}/site={validate_site_name(site)}/date={day:%Y-%m-%d}/"
            f"{COMPACTED_PREFIX}{digest}.parquet")


def _parse_catalog_key(key: str) -> tuple[str, date, str] | None:
    """(site, day, file name) of a catalog file's key, or None for another key."""
    parts = key.split("/")
    if (len(parts) != 4 or parts[0] != CATALOG_ROOT or not parts[1].startswith("site=")
            or not parts[2].startswith("date=") or not parts[3].endswith(".parquet")):
        return None
    try:
        return parts[1][len("site="):], date.fromisoformat(parts[2][len("date="):]), parts[3]
    except ValueError:
        return None


def _is_compacted(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


def _compact_day(backend: Backend, site: str, day: date,
                 keys: list[str]) -> _SummaryEntry | None:
    """Merge ``keys`` (one site and day) into one compacted file, then delete them; returns
    the file's name and figures, or None (nothing written) when the day is left for later."""
    schema = _file_schema()
    tables = []
    try:
        for key in keys:
            # One file: ParquetFile, without the dataset machinery of pq.read_table.
            table = pq.ParquetFile(pa.BufferReader(backend.get(key))).read()
            unknown = set(table.column_names) - set(schema.names)
            if unknown:
                logger.warning("catalog %s %s not compacted: %s has columns this version does "
                               "not know (%s)", site, day, key, ", ".join(sorted(unknown)))
                return None
            name = key.rsplit("/", 1)[-1]
            tables.append((name, _conformed(table, schema)))
    except ObjectNotFound:
        logger.info("catalog %s %s changed while being read (another compaction?): "
                    "left for the next", site, day)
        return None
    except (pa.ArrowException, OSError) as exc:
        raise ArchiveError(f"cannot compact the catalog of {site} {day}: {exc}") from exc
    rank = _source_rank(name for name, _ in tables)
    merged = pa.concat_tables([
        _with_latest_keys(table, rank[name]) for name, table in tables])
    latest = _keep_latest(merged)
    latest = latest.take(pc.sort_indices(latest, sort_keys=[("id", "ascending")]))
    sink = pa.BufferOutputStream()
    pq.write_table(latest, sink, compression="zstd")
    target = compacted_key(site, day, keys)
    backend.put(target, sink.getvalue().to_pybytes(), content_type=PARQUET_CONTENT_TYPE)
    # Only now, and only the files read: one written since the listing stays for next time.
    for key in keys:
        if key != target:
            backend.delete(key)
    logger.info("catalog %s %s: %d file(s) compacted into %s (%d rows)",
                site, day, len(keys), target, latest.num_rows)
    return _SummaryEntry(target.rsplit("/", 1)[-1], _one_day_figures(latest))


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (a catalog file) with ``schema``'s columns in its order: a column missing
    (written before it was added) is null."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _with_latest_keys(table: pa.Table, source: int) -> pa.Table:
    """``table`` (a file's rows) with the hidden columns that rank an article's rows."""
    return (table.append_column(_ID, table["id"])
            .append_column(_VERSIONS, pc.list_value_length(table["versions"]))
            .append_column(_FETCHED, table["fetched_at"])
            .append_column(_CHECKED, table["checked_at"])
            .append_column(_SOURCE, pa.repeat(pa.scalar(source, pa.int32()), table.num_rows)))
