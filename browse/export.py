"""``newsarchive export``: one row per article, its latest (the catalog's one definition,
:meth:`storage.catalog.Catalog.read`), written out as JSON Lines, CSV or Parquet.

The rows are the catalog's columns (:func:`storage.catalog.catalog_schema`, ``text`` only
when asked for), so an exported Parquet file answers the same queries as the catalog's
"latest" view. They are read a few whole (site, date) partitions at a time, since an
article's rows all live in one partition, and written out before the next read: how many
partitions a read takes follows the size of the last ones read (:data:`READ_TARGET_BYTES`),
so memory stays about the same whatever the size of the archive, text or not.

An archive (or a site) written before the catalog existed has none: its records are read
from their ``meta.json`` instead, as ``ls`` does, and turned into the same rows.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from browse.listing import terminal_text, to_json
from browse.records import iter_records
from storage import Archive, Record
from storage.catalog import TEXT_COLUMN, Catalog, archive_date, catalog_file_table, catalog_schema
from storage.lazy import LazyModule

# Imported on first use: the command line registers ``export`` (and reads FORMATS) for every
# command, crawls included, which need no pyarrow.
pa = LazyModule("pyarrow")
pc = LazyModule("pyarrow.compute")
pq = LazyModule("pyarrow.parquet")

FORMATS = ("jsonl", "csv", "parquet")
"""What ``export`` writes."""

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
"""The format an ``--output`` file's suffix stands for, when ``--format`` is not given."""

READ_TARGET_BYTES = 16 * 2**20
"""About how many bytes of rows one read of the catalog brings into memory: the number of
partitions a read takes is this over the size of the partitions read last (one at least,
:data:`MAX_PARTITIONS_PER_READ` at most). A read holds a few times as much at its peak
(the scan's batches, then the latest rows copied out of them)."""

MAX_PARTITIONS_PER_READ = 64
"""Most (site, date) partitions read at once (small partitions: each read lists fewer
fragments, and its rows are sorted at once)."""

RECORDS_PER_BATCH = 256
"""Records turned into rows at a time when an archive has no catalog."""

PROGRESS_SECONDS = 5.0
"""Seconds between two progress lines of a long export."""


class ExportUsageError(ValueError):
    """An export that cannot be done as asked (an unknown site, Parquet to standard output,
    an output suffix that names no format): one line for the user, exit 2."""


@dataclass(frozen=True)
class Source:
    """Where the rows of one site (or of every site) come from."""

    site: str | None
    """The site, or None for every site of the archive."""
    catalog: Catalog | None
    """Its catalog; None when it has none, and its records are read from ``meta.json``."""


def output_format(format_: str | None, output: str | None) -> str:
    """The format to write: ``format_`` when given, else the one ``output``'s suffix names,
    else JSON Lines (to standard output). Parquet is written to a file only."""
    to_stdout = output in (None, "-")
    if format_ is None:
        if to_stdout:
            format_ = "jsonl"
        else:
            format_ = SUFFIXES.get(Path(output).suffix.lower())
            if format_ is None:
                raise ExportUsageError(
                    f"cannot tell the format of {output} from its suffix "
                    f"({', '.join(SUFFIXES)}): give --format {'|'.join(FORMATS)}")
    if format_ == "parquet" and to_stdout:
        raise ExportUsageError("Parquet is written to a file only: give --output FILE.parquet")
    return format_


def export_schema(text: bool) -> pa.Schema:
    """The exported columns: the catalog's, in its order, ``text`` only if ``text``."""
    schema = catalog_schema()
    return schema if text else schema.remove(schema.get_field_index(TEXT_COLUMN))


def sources(archive: Archive, sites: Iterable[str] = ()) -> list[Source]:
    """What to read for ``sites`` (every site when none): each site's catalog, or its
    records where it has no catalog (as ``ls`` does). Raises :class:`ExportUsageError` for
    a site the archive has no article of."""
    names = list(dict.fromkeys(sites))
    if not names:
        catalog = Catalog(archive.url)
        return [Source(None, catalog if catalog.partitions() else None)]
    out: list[Source] = []
    unknown: list[str] = []
    for name in names:
        catalog = Catalog(archive.url, site=name)
        if catalog.partitions(name):
            out.append(Source(name, catalog))
        elif next(iter(archive.iter_meta_keys(name)), None) is not None:
            out.append(Source(name, None))
        else:
            unknown.append(name)
    if unknown:
        # Only now, the whole catalog's listing: to name the sites there are.
        known = sorted({site for site, _day in Catalog(archive.url).partitions()})
        there = f" (its catalog has: {', '.join(known)})" if known else ""
        raise ExportUsageError(f"no article of site {', '.join(map(repr, unknown))} in "
                               f"{archive.url}{there}")
    return out


def latest_rows(catalog: Catalog, *, site: str | None = None, since: date | None = None,
                until: date | None = None, language: str | None = None,
                columns: Iterable[str], target_bytes: int | None = None
                ) -> Iterator[pa.Table]:
    """Each article's latest row (of ``site``, dated within [since, until], in ``language``
    when given), as tables of ``columns`` in the order of their partitions (by site, then
    date): a few whole partitions at a time, about ``target_bytes`` of rows each (never
    less than one partition; :data:`READ_TARGET_BYTES` by default). Not sorted further: a
    sort would copy every row once more."""
    target_bytes = target_bytes or READ_TARGET_BYTES
    columns = list(columns)
    wanted = list(dict.fromkeys([*columns, "language"]))
    partitions = [p for p in catalog.partitions(site)
                  if (since is None or p[1] >= since) and (until is None or p[1] <= until)]
    size = 1
    while partitions:
        chunk, partitions = partitions[:size], partitions[size:]
        table = catalog.read(columns=wanted, partitions=chunk)
        # The next read takes as many partitions as fit the target at this one's size.
        per_partition = max(1, table.nbytes // len(chunk))
        size = max(1, min(MAX_PARTITIONS_PER_READ, target_bytes // per_partition))
        if language:
            table = table.filter(in_language(table, language))
        if table.num_rows:
            yield table.select(columns)


def in_language(table: pa.Table, language: str) -> pa.ChunkedArray:
    """Which rows of ``table`` are in ``language`` (an ISO 639-1 code, any case), as ``ls
    --lang`` and :func:`browse.records.iter_records` tell."""
    return pc.equal(pc.utf8_lower(pc.fill_null(table["language"], "")), language.lower())


def record_rows(archive: Archive, *, site: str | None = None, since: date | None = None,
                until: date | None = None, language: str | None = None, text: bool = False,
                schema: pa.Schema) -> Iterator[pa.Table]:
    """The records of an archive (or site) without a catalog, read from their ``meta.json``
    (each is the article's latest state), as tables of ``schema``'s columns, in listing
    order, :data:`RECORDS_PER_BATCH` at a time."""
    records = iter_records(archive, site=site, since=since, until=until, language=language)
    with ThreadPoolExecutor(8, thread_name_prefix="export-text") as pool:
        for batch in _batches(records, RECORDS_PER_BATCH):
            texts = pool.map(archive.read_text, batch) if text else [None] * len(batch)
            rows = catalog_file_table(zip(batch, texts))
            rows = rows.append_column("site", pa.array([r.site for r in batch], pa.string()))
            rows = rows.append_column("date", pa.array(
                [archive_date(r, archive.backend) for r in batch], pa.date32()))
            yield rows.select(schema.names).cast(schema)


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- writers: a table at a time ------------------------------------------------------------


class JsonLinesWriter:
    """One JSON object per row and line: times in ISO 8601 (UTC), lists as arrays, structs
    and maps as objects, null as null. Control and bidi characters are escaped
    (:func:`browse.listing.to_json`): valid JSON that reads back to the same strings."""

    def __init__(self, stream: IO[str], schema: pa.Schema) -> None:
        self.stream = stream
        self.maps = [f.name for f in schema if pa.types.is_map(f.type)]

    def write(self, table: pa.Table) -> None:
        lines = [to_json(_plain_row(row, self.maps), default=_json_default)
                 for row in table.to_pylist()]
        self.stream.write("".join(line + "\n" for line in lines))

    def close(self) -> None:
        self.stream.flush()


class CsvWriter:
    """A header, then one line per row: text as it is, times in ISO 8601 (UTC), booleans
    ``true``/``false``, null empty, and the columns that hold lists, structs or maps as
    JSON. On a terminal, control and bidi characters become spaces."""

    def __init__(self, stream: IO[str], schema: pa.Schema, *, terminal: bool = False) -> None:
        self.stream = stream
        self.names = schema.names
        self.maps = [f.name for f in schema if pa.types.is_map(f.type)]
        self.terminal = terminal
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(self.names)

    def write(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            cells = [_csv_cell(value) for value in _plain_row(row, self.maps).values()]
            if self.terminal:
                cells = [terminal_text(cell) for cell in cells]
            self.writer.writerow(cells)

    def close(self) -> None:
        self.stream.flush()


class ParquetWriter:
    """The rows as Parquet (zstd), typed as the catalog: a row group per table written."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def _plain_row(row: dict[str, Any], maps: list[str]) -> dict[str, Any]:
    """A row of ``to_pylist`` with its map columns as dicts (pyarrow gives key-value pairs)."""
    for name in maps:
        if row[name] is not None:
            row[name] = dict(row[name])
    return row


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


# -- the export ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """What an export has written so far."""

    articles: int
    """Articles (rows) written."""
    site: str
    """The site of the last row written."""
    day: date
    """Its date."""


def export(archive: Archive, chosen: list[Source], write: Callable[[pa.Table], None], *,
           schema: pa.Schema, since: date | None = None, until: date | None = None,
           language: str | None = None,
           progress: Callable[[Progress], None] | None = None) -> int:
    """Write each article's latest row of ``chosen`` (dated within [since, until], in
    ``language``) with ``write``, a table of ``schema`` at a time; ``progress`` is called
    after each. Returns the number of articles written."""
    text = TEXT_COLUMN in schema.names
    written = 0
    for source in chosen:
        if source.catalog is not None:
            tables = latest_rows(source.catalog, site=source.site, since=since, until=until,
                                 language=language, columns=schema.names)
        else:
            tables = record_rows(archive, site=source.site, since=since, until=until,
                                 language=language, text=text, schema=schema)
        for table in tables:
            write(table)
            written += table.num_rows
            if progress is not None and table.num_rows:
                last = table.slice(table.num_rows - 1).to_pylist()[0]
                progress(Progress(articles=written, site=last["site"], day=last["date"]))
    return written


class ProgressLines:
    """Prints a line to ``stream`` about what an export has written, at most every
    :data:`PROGRESS_SECONDS`: a long export says it is moving, a short one says nothing."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self.last = time.monotonic()

    def __call__(self, done: Progress) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            print(f"newsarchive: export: {done.articles:,} articles so far "
                  f"(at {done.site} {done.day})", file=self.stream or sys.stderr, flush=True)


Writer = JsonLinesWriter | CsvWriter | ParquetWriter


@contextmanager
def open_writer(format_: str, output: str | None, schema: pa.Schema, *,
                stdout: IO[str] | None = None, terminal: bool = False) -> Iterator[Writer]:
    """A writer of ``format_`` to the file ``output``, or to ``stdout`` (``output`` None or
    ``-``; ``terminal``: it is one). A file is written under a temporary name beside it
    and renamed over it once complete, so that a failed or interrupted export leaves no
    partial file, nor an earlier one half overwritten. OSError when it cannot be written."""
    if output in (None, "-"):
        stream = stdout or sys.stdout
        writer = (CsvWriter(stream, schema, terminal=terminal) if format_ == "csv"
                  else JsonLinesWriter(stream, schema))
        yield writer
        writer.close()
        return
    path = Path(output)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        if format_ == "parquet":
            writer = ParquetWriter(partial, schema)
            try:
                yield writer
            finally:
                writer.close()
        else:
            with open(partial, "w", encoding="utf-8", newline="") as stream:
                writer = CsvWriter(stream, schema) if format_ == "csv" else JsonLinesWriter(
                    stream, schema)
                yield writer
                writer.close()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
