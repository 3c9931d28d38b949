"""The Parquet catalog: written per run and per (site, date) through both backends (a local
directory and a real moto S3 server over HTTP), read back in place with pyarrow, recovered
after a killed run. Nothing is mocked: S3 reads go through pyarrow's own S3 client."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import types
import typing
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from storage import Archive, ArchiveError, InvalidArchiveURL, LocalBackend, Record, S3Backend
from storage.catalog import (
    CATALOG_ROOT,
    DAYS_SUMMARY,
    OFFSET_FIELDS,
    PARQUET_CONTENT_TYPE,
    CatalogWriter,
    _column_converter,
    _to_json,
    catalog_schema,
    compact_catalog,
    read_catalog,
    recover_pending,
)
from storage.record import Version
from tests.conftest import REPO_ROOT
from tests.test_storage import make_record, sha256

SITES = ("alpha", "beta")
# Publication times whose UTC date differs from their local date, and a record without one
# (dated by its fetch time), so the partition date is seen to be the archive's UTC date.
PUBLISHED = (
    datetime(2024, 5, 17, 23, 30, 5, 250000, tzinfo=timezone(timedelta(hours=-5))),  # 05-18 UTC
    datetime(2024, 5, 20, 1, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # 05-19 UTC
    None,  # fetched 2024-05-21
)
FETCHED_AT = datetime(2024, 5, 21, 8, 0, 0, 123456, tzinfo=timezone.utc)
DATES = (date(2024, 5, 18), date(2024, 5, 19), date(2024, 5, 21))


def catalog_record(archive: Archive, n: int, *, site: str, published: datetime | None,
                   text: str) -> Record:
    """A full record as the pipeline writes one, with a version history and metadata."""
    record = make_record(archive, f"https://{site}.example/news/story-{n}", site=site,
                         published=published, fetched_at=FETCHED_AT, text=text,
                         title=f"Headline {n} — ünïcode")
    earlier = Version(fetched_at=FETCHED_AT - timedelta(days=1), content_sha256=sha256("old"),
                      raw_key=record.raw_key.replace("raw.html.gz", "versions/x/raw.html.gz"),
                      text_key=record.text_key.replace("text.txt", "versions/x/text.txt"),
                      url=record.url, extractor="test/0", warc_key="warc/a.warc.gz",
                      warc_offset=1234 + n)
    return replace(
        record,
        authors=(f"Author {n}", "Second Writer") if n % 2 else (),
        modified=published + timedelta(hours=1) if published else None,
        content_sha256=sha256(text),
        versions=(earlier, Version.of(record)),
        tags=("politics", f"tag{n}"),
        metadata_sources={"title": "json-ld", "published": "meta"},
        checked_at=FETCHED_AT + timedelta(hours=n) if n % 3 == 0 else None,
        warc_offset=n * 100,
        charset="utf-8",
    )


def make_records(backend, count: int = 12) -> list[tuple[Record, str]]:
    """``count`` records over 2 sites and 3 dates, each with its text."""
    archive = Archive(backend)
    out = []
    for n in range(count):
        text = f"Story {n}.\nSecond paragraph of story {n} with \u2028 odd line separators."
        record = catalog_record(archive, n, site=SITES[n % 2], published=PUBLISHED[n // 2 % 3],
                                text=text)
        out.append((record, text))
    return out


def expected_date(record: Record) -> date:
    return (record.published or record.fetched_at).astimezone(timezone.utc).date()


def rows_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = table.to_pylist()
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "one row per record"
    return by_id


def assert_row_matches(row: dict[str, Any], record: Record, text: str) -> None:
    assert row["site"] == record.site
    assert row["date"] == expected_date(record)
    assert row["title"] == record.title
    assert row["text"] == text
    assert row["authors"] == list(record.authors)
    assert row["aliases"] == list(record.aliases)
    assert row["tags"] == list(record.tags)
    assert row["url"] == record.url and row["meta_key"] == record.meta_key
    assert row["http_status"] == 200 and row["schema_version"] == record.schema_version
    assert row["extractor"] == {"name": "test", "version": "1"}
    assert dict(row["metadata_sources"]) == record.metadata_sources
    assert row["warc_offset"] == record.warc_offset and row["warc_key"] is None
    # Instants are equal, and stored as UTC; the publisher's offset is kept beside them.
    for name in ("published", "modified", "fetched_at", "checked_at"):
        value = getattr(record, name)
        assert row[name] == value, name
        if value is not None:
            assert row[name].utcoffset() == timedelta(0)
    for name in ("published", "modified"):
        value = getattr(record, name)
        expected = None if value is None else int(value.utcoffset().total_seconds() // 60)
        assert row[f"{name}_offset_minutes"] == expected
    assert row["versions"] == [{**dataclasses.asdict(v)} for v in record.versions]
    assert row["extra_json"] is None


# -- writing and reading -------------------------------------------------------------------


def test_close_writes_one_file_per_site_and_date_and_reads_back(backend, tmp_path):
    records = make_records(backend)
    pending = tmp_path / "pending"
    writer = CatalogWriter(backend, pending, "run-1")
    for record, text in records:
        writer.add(record, text)
    assert (pending / "catalog-run-1.jsonl").is_file()

    keys = writer.close()

    expected = {f"{CATALOG_ROOT}/site={site}/date={day:%Y-%m-%d}/run-1.parquet"
                for site in SITES for day in DATES}
    assert len(expected) == 6
    assert sorted(keys) == sorted(backend.locate(k) for k in expected)
    assert set(backend.iter_keys(CATALOG_ROOT + "/")) == expected
    assert not (pending / "catalog-run-1.jsonl").exists()
    assert writer.close() == []  # idempotent
    with pytest.raises(ArchiveError):
        writer.add(*records[0])

    # Partition columns live in the path only; each file holds its group's rows.
    for key in expected:
        table = pq.read_table(io.BytesIO(backend.get(key)))
        assert "site" not in table.column_names and "date" not in table.column_names
        site = key.split("site=")[1].split("/")[0]
        day = date.fromisoformat(key.split("date=")[1].split("/")[0])
        ids = {r.id for r, _ in records if r.site == site and expected_date(r) == day}
        assert set(table.column("id").to_pylist()) == ids
    if isinstance(backend, S3Backend):
        head = backend._client.head_object(Bucket=backend.bucket,
                                           Key=backend.locate(sorted(expected)[0]))
        assert head["ContentType"] == PARQUET_CONTENT_TYPE

    # Read in place: a local directory, or the bucket through pyarrow's S3 client.
    table = read_catalog(backend.url)
    assert table.schema == catalog_schema()
    rows = rows_by_id(table)
    assert set(rows) == {r.id for r, _ in records}
    for record, text in records:
        assert_row_matches(rows[record.id], record, text)

    # Filters are pyarrow.dataset expressions; partition filters prune folders.
    beta = read_catalog(backend.url, filter=ds.field("site") == "beta")
    assert set(beta.column("id").to_pylist()) == {r.id for r, _ in records if r.site == "beta"}
    day = read_catalog(backend.url, filter=(ds.field("date") == DATES[1])
                       & (ds.field("site") == "alpha"), columns=["id", "title", "date"])
    assert day.column_names == ["id", "title", "date"]
    assert set(day.column("id").to_pylist()) == {
        r.id for r, _ in records if r.site == "alpha" and expected_date(r) == DATES[1]}


def test_records_of_other_runs_and_repeats(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    (first, text), (second, text2) = make_records(backend, 2)
    writer = CatalogWriter(backend, tmp_path / "pending", "run-a")
    writer.add(first, "old text")
    writer.add(replace(first, aliases=("https://alpha.example/amp/story-0",)), text)
    writer.close()
    other = CatalogWriter(backend, tmp_path / "pending", "run-b")
    other.add(second, text2)
    other.close()

    rows = rows_by_id(read_catalog(str(backend.root)))
    # Within a run the record's last state wins; runs add their own files.
    assert rows[first.id]["aliases"] == ["https://alpha.example/amp/story-0"]
    assert rows[first.id]["text"] == text
    assert set(rows) == {first.id, second.id}


def test_a_runs_catalog_files_are_uploaded_at_once(tmp_path):
    """A backfill's run touches hundreds of days, a file each: on S3 every upload is a round
    trip, so they overlap (here: two uploads must be under way together, or neither ends)."""
    together = threading.Barrier(2, timeout=30)  # a hang guard: sequential uploads break it

    class MeetingBackend(LocalBackend):
        def put_file(self, key, path, **kwargs):
            together.wait()
            return super().put_file(key, path, **kwargs)

    backend = MeetingBackend(tmp_path / "archive")
    writer = CatalogWriter(backend, tmp_path / "pending", "run-1")
    for record, text in make_records(backend):
        writer.add(record, text)
    keys = writer.close()  # raises BrokenBarrierError when the uploads go one by one
    assert len(keys) == len(SITES) * len(DATES)
    assert set(backend.iter_keys(CATALOG_ROOT + "/")) == {backend.relative(k) for k in keys}
    assert not list((tmp_path / "pending").iterdir())  # no temporary file left


def test_close_converts_in_batches_with_bounded_memory(tmp_path, monkeypatch):
    """close() reads the pending rows of one (site, date) a batch at a time: a run of any
    size is written without holding its rows in memory. Repeats keep their last state and
    their first place; a torn last line is skipped."""
    import storage.catalog as catalog

    monkeypatch.setattr(catalog, "ROWS_PER_BATCH", 7)
    backend = LocalBackend(tmp_path / "archive")
    archive = Archive(backend)
    writer = CatalogWriter(backend, tmp_path / "pending", "batches")
    records = [catalog_record(archive, n, site="alpha", published=PUBLISHED[0], text=f"text {n}")
               for n in range(30)]
    for record in records:
        writer.add(record, f"first {record.id}")
    for record in records[::3]:  # a new alias within the run: the last row wins
        writer.add(record, f"again {record.id}")
    with open(tmp_path / "pending" / "catalog-batches.jsonl", "a") as fh:
        fh.write('{"id": "torn", "si')
    (key,) = writer.close()
    parquet = pq.ParquetFile(backend.root / backend.relative(key))
    assert parquet.metadata.num_rows == 30
    assert parquet.metadata.num_row_groups == 5  # 30 rows, 7 at a time
    table = parquet.read(columns=["id", "text"])
    assert table.column("id").to_pylist() == [r.id for r in records]
    again = {r.id for r in records[::3]}
    assert table.column("text").to_pylist() == [
        f"again {r.id}" if r.id in again else f"first {r.id}" for r in records]


def test_unknown_fields_go_to_extra_json(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    (record, text), = make_records(backend, 1)
    newer = Record.from_dict({**record.to_dict(), "sentiment": {"score": 0.5},
                              "paywall": True})
    writer = CatalogWriter(backend, tmp_path / "pending", "run-1")
    writer.add(newer, text)
    writer.close()
    row, = read_catalog(str(backend.root)).to_pylist()
    assert json.loads(row["extra_json"]) == {"paywall": True, "sentiment": {"score": 0.5}}
    assert_row_matches({**row, "extra_json": None}, record, text)


# -- the schema: written out in storage/catalog.py, checked against the record here -------------
#
# What the catalog would be if it were derived from Record's annotations (as it was until the
# schema was written out): the reference the written-out schema is held to, so that a field
# the record gains or loses, or a type it changes, fails here until the catalog follows.


@dataclasses.dataclass(frozen=True)
class ReflectedColumn:
    name: str
    type: pa.DataType
    convert: Any


def _as_json() -> tuple[pa.DataType, Any]:
    return pa.string(), lambda v: None if v is None else _to_json(v)


def _reflected_type(hint: Any) -> tuple[pa.DataType, Any]:
    """Arrow type and converter for a field annotation; anything unforeseen becomes JSON text.

    ``X | None`` maps like ``X`` (every column is nullable); str -> string, bool -> bool,
    int -> int64, float -> float64, datetime -> timestamp[us, UTC], date -> date32,
    ``tuple[X, ...]``/``list[X]`` -> list<X>, ``dict[str, str]`` -> map<string, string>,
    a dataclass -> struct of its fields; other dicts, unions and types -> JSON string.
    Plain values convert as the catalog converts them (storage.catalog._column_converter).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _reflected_type(rest[0]) if len(rest) == 1 else _as_json()
    plain = {str: pa.string(), bool: pa.bool_(), int: pa.int64(), float: pa.float64(),
             datetime: pa.timestamp("us", tz="UTC"), date: pa.date32()}
    if hint in plain:
        return plain[hint], _column_converter(plain[hint])
    if origin is dict and args == (str, str):
        arrow_type = pa.map_(pa.string(), pa.string())
        return arrow_type, _column_converter(arrow_type)
    if origin in (tuple, list, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return _as_json()  # a fixed-shape tuple: no natural column type
        item_type, item_convert = _reflected_type(args[0] if args else Any)
        return pa.list_(item_type), lambda v: None if v is None else [item_convert(x) for x in v]
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        children = reflected_columns(hint)

        def convert_struct(value: Any) -> dict[str, Any] | None:
            if value is None:
                return None
            get = value.get if isinstance(value, dict) else lambda n: getattr(value, n, None)
            return {c.name: c.convert(get(c.name)) for c in children}

        return pa.struct([pa.field(c.name, c.type) for c in children]), convert_struct
    return _as_json()


def reflected_columns(cls: type) -> list[ReflectedColumn]:
    """Columns of a dataclass's fields by annotation, in declaration order; for Record,
    ``extra`` left out and the offset column after each time that keeps one."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if cls is Record and f.name == "extra":
            continue
        arrow_type, convert = _reflected_type(hints[f.name])
        out.append(ReflectedColumn(f.name, arrow_type, convert))
        if cls is Record and f.name in OFFSET_FIELDS:
            out.append(ReflectedColumn(f"{f.name}_offset_minutes", pa.int16(), None))
    return out


def test_catalog_schema_follows_the_record():
    """The written-out schema names every record field with the Arrow type of its
    annotation, in the record's order, then ``text``, ``extra_json`` and ``date``: a field
    added to (or dropped from) Record, or a changed type, fails here until the catalog
    follows. (The same reflection built the schema before it was written out, so Parquet
    files written then have exactly these columns and stay readable.)"""
    expected = pa.schema([pa.field(c.name, c.type) for c in reflected_columns(Record)]
                         + [pa.field("text", pa.string()), pa.field("extra_json", pa.string()),
                            pa.field("date", pa.date32())])
    schema = catalog_schema()
    assert schema.names == expected.names, (
        f"not in the catalog: {set(expected.names) - set(schema.names)}, "
        f"not in the record: {set(schema.names) - set(expected.names)}")
    for field in expected:
        assert schema.field(field.name).type == field.type, field.name
    assert schema.equals(expected, check_metadata=True)
    assert all(f.nullable for f in schema)


def test_readme_documents_every_catalog_column():
    """The README's "Archive layout" (its catalog paragraph) and "Record fields" name every
    column of the catalog, and every field of a version."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = readme[readme.index("## Archive layout"):readme.index("## Extraction")]
    named = set(re.findall(r"`([a-z_0-9]+)`", documented))
    schema = catalog_schema()
    missing = [name for name in schema.names if name not in named]
    assert not missing, f"README does not document catalog column(s) {missing}"
    versions = schema.field("versions").type.value_type
    assert not [f.name for f in versions if f.name not in named]


@dataclasses.dataclass
class Inner:
    a: int
    b: str | None = None


@dataclasses.dataclass
class Future:
    """A record with fields of every kind a later schema might add."""

    s: str | None
    n: int
    f: float
    flag: bool
    when: datetime | None
    day: date
    names: tuple[str, ...]
    numbers: list[int]
    pair: tuple[str, int]
    labels: dict[str, str]
    blob: dict[str, Any]
    inner: Inner
    mixed: int | str
    anything: Any
    odd: complex


def test_field_types_are_mapped_by_annotation():
    """Fields the record gains later get a column of their annotation's type, and anything
    without a natural column type becomes JSON text rather than an error."""

    columns = {c.name: c for c in reflected_columns(Future)}
    types = {name: c.type for name, c in columns.items()}
    assert types == {
        "s": pa.string(), "n": pa.int64(), "f": pa.float64(), "flag": pa.bool_(),
        "when": pa.timestamp("us", tz="UTC"), "day": pa.date32(),
        "names": pa.list_(pa.string()), "numbers": pa.list_(pa.int64()),
        "pair": pa.string(), "labels": pa.map_(pa.string(), pa.string()),
        "blob": pa.string(), "inner": pa.struct([("a", pa.int64()), ("b", pa.string())]),
        "mixed": pa.string(), "anything": pa.string(), "odd": pa.string(),
    }
    value = Future(s=None, n=3, f=1.5, flag=True,
                   when=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))),
                   day=date(2024, 1, 2), names=("x",), numbers=[1], pair=("a", 1),
                   labels={"k": "v"}, blob={"z": [1, 2]}, inner=Inner(1), mixed="m",
                   anything={"d": datetime(2024, 1, 1, tzinfo=timezone.utc)}, odd=1j)
    row = {name: c.convert(getattr(value, name)) for name, c in columns.items()
           if name != "odd"}
    schema = pa.schema([(n, t) for n, t in types.items() if n != "odd"])
    back, = pa.Table.from_pylist([row], schema=schema).to_pylist()
    assert back["when"] == value.when and back["blob"] == '{"z": [1, 2]}'
    assert back["pair"] == '["a", 1]' and back["inner"] == {"a": 1, "b": None}
    assert back["anything"] == '{"d": "2024-01-01T00:00:00+00:00"}'


# -- crash recovery and concurrency ---------------------------------------------------------


def test_recover_pending_converts_dead_runs_only(backend, tmp_path):
    records = make_records(backend, 6)
    pending = tmp_path / "pending"
    dead = CatalogWriter(backend, pending, "dead-run")
    for record, text in records[:5]:
        dead.add(record, text)
    # The process was killed in the middle of writing its sixth line.
    line = json.dumps({**records[5][0].to_dict(), "text": records[5][1]}).encode()
    with open(pending / "catalog-dead-run.jsonl", "ab") as fh:
        fh.write(line[: len(line) // 2])
    live = CatalogWriter(backend, pending, "live-run")
    live.add(*records[5])
    live_bytes = (pending / "catalog-live-run.jsonl").read_bytes()
    # Files that cannot be converted: a bad run id, a directory in the way, pure garbage.
    (pending / "catalog-bad id!.jsonl").write_text("{}\n")
    (pending / "catalog-dir.jsonl").mkdir()
    (pending / "catalog-garbage.jsonl").write_bytes(b"\x00\xff not json\n{\"id\": 1}\n")
    asked = []

    def is_alive(run_id: str) -> bool:
        asked.append(run_id)
        return run_id == "live-run"

    keys = recover_pending(backend, pending, is_alive=is_alive)

    assert "live-run" in asked and "dead-run" in asked
    assert keys and all(k.endswith("/dead-run.parquet") for k in keys)
    assert not (pending / "catalog-dead-run.jsonl").exists()
    assert (pending / "catalog-live-run.jsonl").read_bytes() == live_bytes
    assert (pending / "catalog-bad id!.jsonl").exists()
    assert not (pending / "catalog-garbage.jsonl").exists()  # nothing to keep: no rows
    rows = rows_by_id(read_catalog(backend.url))
    assert set(rows) == {r.id for r, _ in records[:5]}
    for record, text in records[:5]:
        assert_row_matches(rows[record.id], record, text)

    # The live run finishes normally later; the dead one is not recovered twice.
    live.close()
    assert recover_pending(backend, pending, is_alive=lambda _: False) == []
    assert len(read_catalog(backend.url)) == 6


def test_add_from_many_threads(tmp_path):
    backend = LocalBackend(tmp_path / "archive")
    archive = Archive(backend)
    writer = CatalogWriter(backend, tmp_path / "pending", "threads")
    threads_n, per_thread = 8, 25
    barrier = threading.Barrier(threads_n)
    expected: dict[str, str] = {}
    errors = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                n = t * per_thread + i
                # Long lines (past any buffer size) make interleaved writes show.
                text = f"thread {t} line {i} " * 2000
                record = catalog_record(archive, n, site=SITES[n % 2], published=None,
                                        text=text)
                expected[record.id] = text
                writer.add(record, text)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    lines = (tmp_path / "pending" / "catalog-threads.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == threads_n * per_thread + 1
    assert all(json.loads(line)["text"] for line in lines[:-1])

    assert len(writer.close()) == 2  # two sites, one date
    table = read_catalog(str(backend.root), columns=["id", "text"])
    assert dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist())) == expected


# -- reading: edge cases and the documented query ------------------------------------------


def test_read_catalog_without_catalog_and_errors(tmp_path):
    empty = read_catalog(str(tmp_path / "nothing-here"))
    assert empty.num_rows == 0 and empty.schema == catalog_schema()
    assert read_catalog(str(tmp_path), columns=["id"]).column_names == ["id"]
    with pytest.raises(InvalidArchiveURL):
        read_catalog("ftp://example.com/archive")
    backend = LocalBackend(tmp_path / "archive")
    backend.put(f"{CATALOG_ROOT}/site=alpha/date=2024-05-18/broken.parquet", b"not parquet")
    with pytest.raises(ArchiveError, match="cannot read the catalog"):
        read_catalog(f"file://{backend.root}")


def test_documented_pyarrow_query_against_s3(s3_archive, tmp_path):
    """The query the README shows, run as written against the bucket (moto over HTTP)."""
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    assert read_catalog(s3_archive.url).num_rows == 0  # no catalog yet
    records = make_records(backend, 6)
    writer = CatalogWriter(backend, tmp_path / "pending", "run-1")
    for record, text in records:
        writer.add(record, text)
    writer.close()
    host_port = s3_archive.endpoint.removeprefix("http://")
    bucket, prefix = s3_archive.bucket, s3_archive.prefix

    # -- the README's snippet; keys come from the AWS_* variables (set by the fixture):
    import pyarrow.dataset as ds
    from pyarrow import fs

    s3 = fs.S3FileSystem(region="us-east-1", endpoint_override=host_port, scheme="http")
    table = ds.dataset(f"{bucket}/{prefix}/catalog", filesystem=s3, partitioning="hive").to_table(
        filter=ds.field("site") == "alpha", columns=["id", "title"])
    # --
    assert table.column_names == ["id", "title"]
    assert sorted(zip(table.column("id").to_pylist(), table.column("title").to_pylist())) == \
        sorted((r.id, r.title) for r, _ in records if r.site == "alpha")

    # Plain hive discovery sees one site column and the date as text, no clash with the files.
    dataset = ds.dataset(f"{bucket}/{prefix}/catalog", filesystem=s3, partitioning="hive")
    assert dataset.schema.names.count("site") == 1
    assert dataset.schema.field("date").type == pa.string()
    assert dataset.to_table().num_rows == 6


def test_the_readmes_duckdb_query_gives_each_articles_latest_row(tmp_path, monkeypatch):
    """The README's one-line DuckDB query, read out of the README and run as written from
    the directory holding ``archive/``: one row per article, the one read_catalog picks
    (more versions, a later fetch, a run file over the compacted one), before compaction
    and after it with a late run file beside a compacted day."""
    duckdb = pytest.importorskip("duckdb")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    catalog_paragraph = readme[readme.index("- **Catalog**"):readme.index("- **Run manifests**")]
    (query,) = re.findall(r"```sql\n\s*(.+?)\n\s*```", catalog_paragraph, re.S)
    assert "\n" not in query  # one line
    backend = LocalBackend(tmp_path / "archive")
    latest = write_history(backend, tmp_path)  # two and three versions of some articles
    monkeypatch.chdir(tmp_path)

    def run() -> pa.Table:
        return duckdb.connect().sql(query).to_arrow_table()

    table = run()
    assert set(table.column_names) == set(catalog_schema().names)
    assert_latest_rows(table, latest)
    compact_catalog(backend, before=CLOSED)
    record, _ = next(v for v in latest.values() if expected_date(v[0]) < CLOSED)
    latest[record.id] = newer_version(record, "a late version", 5)
    write_run(backend, tmp_path, "20240530T000000Z-late", [latest[record.id]])
    assert_latest_rows(run(), latest)
    assert sorted(run()["id"].to_pylist()) == sorted(read_catalog(backend.url)["id"].to_pylist())


# -- reading: what an archive URL means, and errors by kind ----------------------------------


def test_read_catalog_takes_the_archive_url_as_every_backend_does(monkeypatch):
    """read_catalog reads an archive URL by storage's one definition of one: credentials in
    it are refused without being repeated, as open_backend refuses them, and so is a prefix
    that could escape its place."""
    from storage import InvalidKey
    from tests.test_storage import closed_port

    # Were the URL used, pyarrow would find nobody there, at once.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(InvalidArchiveURL) as info:
        read_catalog("s3://AKIAEXAMPLE:very-secret@bucket/news")
    assert "very-secret" not in str(info.value)
    with pytest.raises(InvalidKey):
        read_catalog("s3://bucket/news/../other")
    with pytest.raises(InvalidArchiveURL):
        read_catalog("s3:///news")


class _RefusingS3:
    """An HTTP server on 127.0.0.1 that answers every request as S3 does when it refuses
    the credentials (403 AccessDenied)."""

    def __init__(self) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied'
                        b"</Code><Message>Access Denied</Message></Error>")
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", "0" if self.command == "HEAD"
                                 else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _refuse

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> typing.Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_read_catalog_errors_by_kind(monkeypatch, tmp_path):
    """S3 refusing the credentials is ArchiveAccessDenied (pyarrow says so only in its
    message, the one place read); a damaged file is an ArchiveError."""
    from storage import ArchiveAccessDenied

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with _RefusingS3() as s3:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
        with pytest.raises(ArchiveAccessDenied, match="cannot read the catalog"):
            read_catalog("s3://bucket/news")
    backend = LocalBackend(tmp_path / "archive")
    backend.put(f"{CATALOG_ROOT}/site=alpha/date=2024-05-18/broken.parquet", b"not parquet")
    with pytest.raises(ArchiveError) as info:
        read_catalog(str(backend.root))
    assert not isinstance(info.value, ArchiveAccessDenied)


# -- one row per article, and compaction ---------------------------------------------------

CLOSED = date(2024, 5, 20)
"""The compaction cut-off of these tests: DATES[0] and DATES[1] are closed, DATES[2] open."""


def write_run(backend, tmp_path, run_id: str, rows: list[tuple[Record, str]]) -> None:
    writer = CatalogWriter(backend, tmp_path / "pending", run_id)
    for record, text in rows:
        writer.add(record, text)
    writer.close()


def newer_version(record: Record, text: str, n: int) -> tuple[Record, str]:
    """A later version of ``record`` (one version more, fetched an hour later)."""
    fetched = record.fetched_at + timedelta(hours=n)
    later = replace(Version.of(record), fetched_at=fetched, content_sha256=sha256(text))
    return replace(record, fetched_at=fetched, content_sha256=sha256(text),
                   versions=(*record.versions, later)), text


def write_history(backend, tmp_path) -> dict[str, tuple[Record, str]]:
    """Three runs over the 12 records of :func:`make_records` (2 sites x 3 days), so that
    each rule of the latest row is needed; returns each article's latest (record, text)."""
    records = make_records(backend)
    latest = {r.id: (r, t) for r, t in records}
    write_run(backend, tmp_path, "20240521T080000Z-run1", records)
    # A later run: new versions of four articles, and a reprocessing of one (a version
    # more, an older fetch time): the most versions wins over the latest fetch.
    second = [newer_version(r, f"version two of {r.id}", 2) for r, _ in records[:4]]
    reprocessed, _ = records[6]  # published: its date does not follow the fetch time
    second.append((replace(reprocessed, versions=(*reprocessed.versions,
                                                  Version.of(reprocessed)),
                           fetched_at=reprocessed.fetched_at - timedelta(days=1)),
                   "reprocessed text"))
    write_run(backend, tmp_path, "20240522T080000Z-run2", second)
    latest |= {r.id: (r, t) for r, t in second}
    # A third run sees one of them again at a new URL: an alias, nothing else changes.
    record, text = latest[records[0][0].id]
    aliased = replace(record, aliases=("https://alpha.example/amp/story-0",))
    write_run(backend, tmp_path, "20240523T080000Z-run3", [(aliased, text)])
    latest[aliased.id] = (aliased, text)
    return latest


def catalog_files(backend) -> dict[tuple[str, str], list[str]]:
    """The catalog's file names per (site, date) (its sites' summaries and word filters
    aside)."""
    out: dict[tuple[str, str], list[str]] = {}
    for key in backend.iter_keys(CATALOG_ROOT + "/"):
        if key.count("/") == 2:  # a site's summary and word filters
            continue
        _, site, day, name = key.split("/")
        out.setdefault((site.removeprefix("site="), day.removeprefix("date=")), []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def assert_latest_rows(table: pa.Table, latest: dict[str, tuple[Record, str]]) -> None:
    rows = rows_by_id(table)
    assert set(rows) == set(latest)
    for record_id, (record, text) in latest.items():
        assert_row_matches(rows[record_id], record, text)


def test_read_catalog_gives_each_articles_latest_row(backend, tmp_path):
    latest = write_history(backend, tmp_path)
    assert len(read_catalog(backend.url, latest=False)) == 12 + 5 + 1
    assert_latest_rows(read_catalog(backend.url), latest)
    # Filters and column choices keep the rule: the hidden ranking columns never show.
    alpha = read_catalog(backend.url, filter=ds.field("site") == "alpha", columns=["id", "text"])
    assert alpha.column_names == ["id", "text"]
    assert dict(zip(alpha["id"].to_pylist(), alpha["text"].to_pylist())) == {
        i: t for i, (r, t) in latest.items() if r.site == "alpha"}


def test_records_come_back_from_their_catalog_rows(backend, tmp_path):
    """``ls`` prints records read from the catalog: each latest row gives back the record it
    was written from, its publisher's offsets and its unknown fields too."""
    from storage.catalog import record_columns, record_from_row

    latest = write_history(backend, tmp_path)
    record, text = next(iter(latest.values()))
    newer = replace(record, extra={"future_field": {"x": [1, 2]}}, paywalled=True,
                    published=record.published.replace(tzinfo=None))  # a naive time stays so
    write_run(backend, tmp_path, "20240530T000000Z-extra", [(newer, text)])
    latest[record.id] = (newer, text)
    rows = read_catalog(backend.url, columns=record_columns()).to_pylist()
    assert {row["id"]: record_from_row(row).to_dict() for row in rows} == {
        record_id: record.to_dict() for record_id, (record, _) in latest.items()}


def test_compaction_leaves_one_file_per_closed_day_with_each_articles_latest_row(
        backend, tmp_path):
    latest = write_history(backend, tmp_path)
    before = catalog_files(backend)
    # The runs' files: 6 (2 sites x 3 days), 4 and 1; alpha's 05-18 has three, 05-19 two.
    assert sum(map(len, before.values())) == 6 + 4 + 1

    results = compact_catalog(backend, before=CLOSED)

    after = catalog_files(backend)
    for (site, day), names in after.items():
        if date.fromisoformat(day) < CLOSED:
            assert len(names) == 1 and names[0].startswith("compacted-"), (site, day, names)
        else:  # an open day is left as the runs wrote it
            assert names == before[(site, day)]
    assert set(after) == set(before)
    # The compacted files hold one row per article, the latest.
    assert_latest_rows(read_catalog(backend.url, latest=False,
                                    filter=ds.field("date") < CLOSED),
                       {i: v for i, v in latest.items() if expected_date(v[0]) < CLOSED})
    assert_latest_rows(read_catalog(backend.url), latest)
    assert [(r.site, r.closed_days, r.days_compacted) for r in results] == [
        ("alpha", 2, 2), ("beta", 2, 2)]
    # Each site's summary names its closed days' compacted files, with their figures.
    for site in SITES:
        summary = json.loads(backend.get(f"{CATALOG_ROOT}/site={site}/{DAYS_SUMMARY}"))
        closed = {day: names for (s, day), names in after.items()
                  if s == site and date.fromisoformat(day) < CLOSED}
        assert {day: entry["file"] for day, entry in summary["days"].items()} == {
            day: names[0] for day, names in closed.items()}
        for day, entry in summary["days"].items():
            rows = [r for r, _ in latest.values()
                    if r.site == site and f"{expected_date(r):%Y-%m-%d}" == day]
            assert entry == {"file": closed[day][0], "articles": len(rows),
                             "with_published": sum(r.published is not None for r in rows),
                             "with_authors": sum(bool(r.authors) for r in rows),
                             "with_title": sum(bool(r.title) for r in rows)}
    for result in results:
        site_before = sum(len(v) for (s, _), v in before.items() if s == result.site)
        site_after = sum(len(v) for (s, _), v in after.items() if s == result.site)
        assert (result.files_before, result.files_after) == (site_before, site_after)


class _Counted:
    """Counts the calls to a backend's methods, by name (the real methods run)."""

    def __init__(self, backend, monkeypatch, names=("get", "put", "put_file", "delete")):
        self.calls: dict[str, int] = {}
        for name in names:
            method = getattr(backend, name)

            def counted(*args, _name=name, _method=method, **kwargs):
                self.calls[_name] = self.calls.get(_name, 0) + 1
                return _method(*args, **kwargs)

            monkeypatch.setattr(backend, name, counted)


def test_a_day_is_closed_three_hours_after_it_ends():
    """Compaction's default cut-off: yesterday is closed from 03:00 UTC (serve compacts at
    03:15), today never."""
    from storage.catalog import default_compaction_cutoff

    may_21 = date(2024, 5, 21)
    assert default_compaction_cutoff(datetime(2024, 5, 21, 2, 59, tzinfo=timezone.utc)) \
        == may_21 - timedelta(days=1)
    assert default_compaction_cutoff(datetime(2024, 5, 21, 3, 15, tzinfo=timezone.utc)) \
        == may_21
    # 03:15 in UTC+5 is 22:15 UTC the day before.
    assert default_compaction_cutoff(
        datetime(2024, 5, 21, 3, 15, tzinfo=timezone(timedelta(hours=5)))) == may_21 - timedelta(days=1)


def test_compaction_again_makes_no_request_beyond_the_listing(backend, tmp_path, monkeypatch):
    write_history(backend, tmp_path)
    compact_catalog(backend, before=CLOSED)
    files = catalog_files(backend)
    counted = _Counted(backend, monkeypatch)

    results = compact_catalog(backend, before=CLOSED)

    assert counted.calls == {"get": 2}  # each site's summary of its compacted days
    assert catalog_files(backend) == files
    assert [r.days_compacted for r in results] == [0, 0]
    assert [r.files_before - r.files_after for r in results] == [0, 0]


def test_a_run_file_written_after_the_listing_stays_and_is_read(backend, tmp_path, monkeypatch):
    """A crawl closes its run, writing to a closed day, after the compaction listed the
    files: its file is not deleted, readers merge it, the next compaction folds it in."""
    latest = write_history(backend, tmp_path)
    record, _ = next(v for v in latest.values()
                     if v[0].site == "alpha" and expected_date(v[0]) < CLOSED)
    late = newer_version(record, "written by a crawl during the compaction", 9)
    listing = backend.iter_keys

    def iter_keys_then_a_crawl_closes(prefix=""):
        yield from list(listing(prefix))
        write_run(backend, tmp_path, "20240524T080000Z-late", [late])

    monkeypatch.setattr(backend, "iter_keys", iter_keys_then_a_crawl_closes)
    compact_catalog(backend, before=CLOSED)
    monkeypatch.setattr(backend, "iter_keys", listing)

    day = (record.site, f"{expected_date(record):%Y-%m-%d}")
    names = catalog_files(backend)[day]
    assert len(names) == 2 and names[1].startswith("compacted-")
    assert names[0] == "20240524T080000Z-late.parquet"
    latest[record.id] = late
    assert_latest_rows(read_catalog(backend.url), latest)

    compact_catalog(backend, before=CLOSED)
    names = catalog_files(backend)[day]
    assert len(names) == 1 and names[0].startswith("compacted-")
    assert_latest_rows(read_catalog(backend.url), latest)


def test_compaction_under_concurrent_crawls_loses_no_row(backend, tmp_path):
    """Three writers close runs into the same closed days (two new articles a run, and a
    new version of one of their earlier ones) while two compactions run again and again
    and a reader reads the catalog: no compaction or read fails, and at the end every
    article's latest row is there, each closed day one file."""
    archive = Archive(backend)
    runs = 12 if isinstance(backend, LocalBackend) else 5
    latest: dict[str, tuple[Record, str]] = {}
    lock = threading.Lock()
    writing = threading.Event()
    writing.set()
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        mine: dict[str, tuple[Record, str]] = {}
        for run in range(runs):
            rows = []
            for k in range(2):
                n = 1000 * (number + 1) + 10 * run + k
                text = f"writer {number}, run {run}, article {k}"
                rows.append((catalog_record(archive, n, site=SITES[k], published=PUBLISHED[k],
                                            text=text), text))
            if mine:  # a new version of an article of this writer's first run
                record, _ = mine[sorted(mine)[run % len(mine)]]
                rows.append(newer_version(record, f"writer {number}, version {run}",
                                          len(record.versions)))
            write_run(backend, tmp_path / f"writer-{number}",
                      f"20240601T{number:02d}{run:04d}Z-writer", rows)
            mine |= {record.id: (record, text) for record, text in rows}
        with lock:
            latest.update(mine)

    def again_and_again(work) -> None:
        try:
            while writing.is_set():
                work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    others = [threading.Thread(target=again_and_again,
                               args=(lambda: compact_catalog(backend, before=CLOSED),))
              for _ in range(2)]
    others.append(threading.Thread(target=again_and_again,
                                   args=(lambda: read_catalog(backend.url),)))
    for thread in others + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=600)
    writing.clear()
    for thread in others:
        thread.join(timeout=600)

    assert not failures, failures
    assert len(latest) == 3 * runs * 2
    assert_latest_rows(read_catalog(backend.url), latest)
    compact_catalog(backend, before=CLOSED)
    for (_site, _day), names in catalog_files(backend).items():
        assert len(names) == 1 and names[0].startswith("compacted-"), names
    assert_latest_rows(read_catalog(backend.url), latest)


class DeleteHoldingProxy:
    """An HTTP proxy on 127.0.0.1 in front of moto that forwards every request but the
    DELETE number ``hold`` + 1, which it keeps waiting (never forwarded): a compaction
    running through it stops right after writing a compacted file and ``hold`` deletes,
    where the test kills its process."""

    def __init__(self, target: str, hold: int) -> None:
        import http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        host, port = urlsplit(target).netloc.split(":")
        proxy = self
        self.held = threading.Event()
        self.released = threading.Event()
        self._deletes = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "DELETE":
                    with proxy._lock:
                        proxy._deletes += 1
                        number = proxy._deletes
                    if number == hold + 1:
                        proxy.held.set()
                        proxy.released.wait(120)
                        self.close_connection = True
                        return
                upstream = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> DeleteHoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("deleted_before_the_kill", [0, 1])
def test_a_killed_compaction_leaves_a_catalog_that_reads_the_same(
        s3_archive, tmp_path, deleted_before_the_kill):
    """``newsarchive compact`` in a process of its own, killed (SIGKILL) once it has written
    the first day's compacted file and deleted none, or one, of the files it merged: the
    catalog reads the same rows, and the next compaction finishes the job."""
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    latest = write_history(backend, tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    with DeleteHoldingProxy(s3_archive.endpoint, hold=deleted_before_the_kill) as proxy:
        compaction = subprocess.Popen(
            [sys.executable, "-m", "flows", "compact", "--archive", s3_archive.url],
            cwd=tmp_path, env={**env, **s3_archive.env, "AWS_ENDPOINT_URL": proxy.url,
                               "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not proxy.held.wait(120):  # a hang guard
                raise AssertionError(compaction.stderr.read().decode()[-3000:])
            compaction.send_signal(signal.SIGKILL)
            assert compaction.wait(timeout=60) == -signal.SIGKILL
        finally:
            compaction.kill()
            compaction.stderr.close()

    # The first closed day has its compacted file beside the run files not yet deleted.
    first_day = catalog_files(backend)[("alpha", f"{DATES[0]:%Y-%m-%d}")]
    assert sum(n.startswith("compacted-") for n in first_day) == 1
    assert len(first_day) == 1 + 3 - deleted_before_the_kill
    assert_latest_rows(read_catalog(backend.url), latest)

    compact_catalog(backend, before=CLOSED)
    for (_site, day), names in catalog_files(backend).items():
        if date.fromisoformat(day) < CLOSED:
            assert len(names) == 1 and names[0].startswith("compacted-")
    assert_latest_rows(read_catalog(backend.url), latest)


def test_compaction_leaves_alone_a_day_with_columns_it_does_not_know(tmp_path):
    """A file written by a newer version has columns this one would drop: its day waits
    for a compaction that knows them."""
    backend = LocalBackend(tmp_path / "archive")
    write_history(backend, tmp_path)
    key = f"{CATALOG_ROOT}/site=alpha/date={DATES[0]:%Y-%m-%d}/20240601T000000Z-newer.parquet"
    newer = pq.read_table(io.BytesIO(backend.get(next(
        k for k in backend.iter_keys(f"{CATALOG_ROOT}/site=alpha/date={DATES[0]:%Y-%m-%d}/")))))
    sink = io.BytesIO()
    pq.write_table(newer.append_column("future", pa.array(["x"] * newer.num_rows)), sink)
    backend.put(key, sink.getvalue())
    before = catalog_files(backend)[("alpha", f"{DATES[0]:%Y-%m-%d}")]

    results = compact_catalog(backend, site="alpha", before=CLOSED)

    assert catalog_files(backend)[("alpha", f"{DATES[0]:%Y-%m-%d}")] == before
    assert [(r.site, r.days_compacted) for r in results] == [("alpha", 1)]


def test_compact_command(tmp_path, capsys, monkeypatch):
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("NEWSARCHIVE_")]:
        monkeypatch.delenv(var)
    backend = LocalBackend(tmp_path / "archive")
    latest = write_history(backend, tmp_path)  # dated May 2024: every day is closed

    code = main(["compact", "--archive", str(backend.root)])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert [line.split() for line in out.splitlines()] == [
        ["site", "closed", "days", "compacted", "files", "before", "files", "after"],
        ["alpha", "3", "3", "6", "3"], ["beta", "3", "3", "5", "3"]]
    assert "alpha: 3/3 days" in err
    assert all(len(names) == 1 for names in catalog_files(backend).values())
    assert_latest_rows(read_catalog(str(backend.root)), latest)

    assert main(["compact", "--archive", str(backend.root), "--site", "beta"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["beta", "3", "0", "3", "3"]
    assert main(["compact", "--archive", str(backend.root), "--site", "no such/site"]) == 2
    assert "bad argument" in capsys.readouterr().err


def test_a_file_gone_while_a_scan_opens_it_is_told_apart_from_other_errors():
    """On S3, a scan that opens a file compacted away since the listing fails with
    ArrowInvalid, not OSError (seen in a fresh-clone run of the concurrency test above):
    that read lists again; other errors are reported."""
    import pyarrow as pa

    from storage.catalog import _vanished

    gone = ("Could not open Parquet input source 'b/news/catalog/site=a/date=2024-05-18/x.parquet'"
            ": AWS Error RESOURCE_NOT_FOUND during GetObject operation: ")
    assert _vanished(pa.lib.ArrowInvalid(gone))
    assert _vanished(OSError(gone)) and _vanished(FileNotFoundError(2, "No such file"))
    assert not _vanished(pa.lib.ArrowInvalid("Parquet magic bytes not found in footer"))
    assert not _vanished(PermissionError(13, "Permission denied"))
