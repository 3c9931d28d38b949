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
compacted one, then to the greater file name. :func:`read_catalog` returns that row alone.

Files stay few: :func:`compact_catalog` (``newsarchive compact``) merges each closed day's
files into one ``compacted-<hash>.parquet`` holding each article's latest row, and deletes
the files it merged. A day then has its compacted file plus the run files written since,
which readers merge as they merge run files.

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
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from storage.backends import Backend, archive_location
from storage.errors import ArchiveAccessDenied, ArchiveError, InvalidKey, ObjectNotFound
from storage.keys import day_of_meta_key, is_meta_key, validate_run_id, validate_site_name
from storage.lazy import LazyModule
from storage.record import Record, as_utc

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
                with open(self.path, "rb") as pending:
                    groups = self._group_rows(pending)
                    keys = [self._write_group(pending, site, day, offsets)
                            for (site, day), offsets in sorted(groups.items())]
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
            row = {c.name: c.convert(getattr(record, c.source)) for c in _record_columns()}
            row[TEXT_COLUMN] = None if text is None else str(text)
            row[EXTRA_COLUMN] = _to_json(record.extra) if record.extra else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A torn last line (the process was killed mid-write) or a damaged one.
            logger.warning("%s line %d skipped: %s", self.path, number, exc)
            return None
        return group, record.id, row

    def _write_group(self, pending: IO[bytes], site: str, day: date,
                     offsets: list[int]) -> str:
        """Write one (site, date)'s rows as a Parquet file; returns its located key."""
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


def read_catalog(archive_url: str, *, filter: ds.Expression | None = None,
                 columns: Sequence[str] | None = None, latest: bool = True) -> pa.Table:
    """The catalog of the archive at ``archive_url`` (a directory or ``s3://bucket/prefix``),
    read in place, typed as :func:`catalog_schema`: one row per article, its latest (see
    the module's docstring), unless ``latest`` is false (every row of every file).

    ``filter`` is a ``pyarrow.dataset`` expression, e.g. ``ds.field("site") == "cbc"`` or
    ``ds.field("date") >= datetime.date(2024, 5, 1)``; partition filters skip whole
    folders. The latest row is chosen among the rows the filter keeps: a filter on other
    columns (``title``...) may keep an article's older row whose latest does not match.
    ``columns`` selects columns. On S3 the endpoint, region and credentials come
    from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``,
    ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``...), else the AWS SDK's default chain.
    Columns written by a newer version than this one are not returned.
    """
    filesystem, root = _catalog_location(archive_url)
    schema = catalog_schema()
    wanted = schema.names if columns is None else list(columns)
    try:
        if filesystem.get_file_info(root).type == pafs.FileType.NotFound:
            return schema.empty_table().select(wanted)
        dataset = ds.dataset(
            root, filesystem=filesystem, format="parquet", schema=schema,
            partitioning=ds.partitioning(
                pa.schema([pa.field("site", pa.string()), pa.field("date", pa.date32())]),
                flavor="hive"),
        )
        if not latest:
            return dataset.to_table(filter=filter, columns=wanted)
        projection = {name: ds.field(name) for name in wanted} | _latest_key_projection()
        tagged = [(t.record_batch, t.fragment.path.rsplit("/", 1)[-1])
                  for t in dataset.scanner(filter=filter, columns=projection).scan_batches()]
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise _read_error(archive_url, exc) from exc
    if not tagged:
        return schema.empty_table().select(wanted)
    rank = _source_rank(name for _, name in tagged)
    batches = [batch.append_column(_SOURCE, pa.repeat(pa.scalar(rank[name], pa.int32()),
                                                      batch.num_rows))
               for batch, name in tagged]
    return _keep_latest(pa.Table.from_batches(batches))


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


def default_compaction_cutoff(now: datetime | None = None) -> date:
    """The first day :func:`compact_catalog` leaves alone by default: yesterday (UTC).

    Today's partition takes a run file from every crawl: compacting it would rewrite a
    growing file every time and still leave it open. Yesterday's still receives the files of
    crawls that started before midnight and close after it, and of killed crawls whose
    rows the next one recovers. Compacting it would be safe (a file written after the
    listing is kept and merged next time) but wasted work: it waits one more day.
    """
    now = now or datetime.now(timezone.utc)
    return as_utc(now).date() - timedelta(days=1)


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
        compacted = removed = 0
        for done, (day, keys) in enumerate(todo.items(), 1):
            if _compact_day(backend, key_site, day, keys):
                compacted += 1
                removed += len(keys) - 1
            if progress is not None:
                progress(key_site, done, len(todo))
        out.append(SiteCompaction(site=key_site, closed_days=len(closed),
                                  days_compacted=compacted, files_before=files[key_site],
                                  files_after=files[key_site] - removed))
    return out


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


def _compact_day(backend: Backend, site: str, day: date, keys: list[str]) -> bool:
    """Merge ``keys`` (one site and day) into one compacted file, then delete them; False
    (nothing written) when the day is left for later."""
    schema = _file_schema()
    tables = []
    try:
        for key in keys:
            table = pq.read_table(pa.BufferReader(backend.get(key)))
            unknown = set(table.column_names) - set(schema.names)
            if unknown:
                logger.warning("catalog %s %s not compacted: %s has columns this version does "
                               "not know (%s)", site, day, key, ", ".join(sorted(unknown)))
                return False
            name = key.rsplit("/", 1)[-1]
            tables.append((name, _conformed(table, schema)))
    except ObjectNotFound:
        logger.info("catalog %s %s changed while being read (another compaction?): "
                    "left for the next", site, day)
        return False
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
    return True


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
