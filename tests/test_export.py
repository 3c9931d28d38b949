"""``newsarchive export`` run as a user runs it (the venv's ``newsarchive``, in a
subprocess), over a local archive and a bucket of moto's S3 server; and the README's
pandas line for the catalog's "latest" view, run as written."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from storage import Archive, LocalBackend, S3Backend
from storage.catalog import (
    TEXT_COLUMN,
    catalog_file_table,
    catalog_key,
    catalog_schema,
    compact_catalog,
    read_catalog,
)
from tests.conftest import REPO_ROOT
from tests.test_catalog import (
    CLOSED,
    catalog_record,
    expected_date,
    newer_version,
    write_history,
    write_run,
)

NEWSARCHIVE = Path(sys.executable).with_name("newsarchive")
"""The venv's ``newsarchive`` command."""


def newsarchive(*argv: str, cwd: Path, env: dict[str, str] | None = None,
                before: str | None = None) -> subprocess.CompletedProcess:
    """Run ``newsarchive ARGV`` in ``cwd``, without any NEWSARCHIVE_* setting of ours; with
    ``before``, Python run first in the same process (to set a module's constant)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    full_env.update({"PYTHONPATH": str(REPO_ROOT), **(env or {})})
    if before is None:
        command = [str(NEWSARCHIVE) if NEWSARCHIVE.exists() else sys.executable, *argv]
        if not NEWSARCHIVE.exists():
            command[1:1] = ["-m", "flows"]
    else:
        command = [sys.executable, "-c",
                   f"{before}\nimport sys\nfrom flows.cli import main\nsys.exit(main(sys.argv[1:]))",
                   *argv]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=600, check=False)


def our_lines(stderr: str) -> list[str]:
    """What the command itself said on stderr (not the libraries' logging)."""
    return [line for line in stderr.splitlines() if line.startswith("newsarchive:")]


def latest_by_id(archive_url: str, **options) -> dict[str, dict]:
    """Each article's latest row, by :func:`storage.catalog.read_catalog` (the one
    definition), by id."""
    return {row["id"]: row for row in read_catalog(archive_url, **options).to_pylist()}


@pytest.fixture
def history(tmp_path) -> tuple[LocalBackend, dict]:
    """A local archive whose catalog holds several rows of some articles (new versions, a
    reprocessing, an alias added), a compacted day and a run file written after it: the
    catalog of :func:`tests.test_catalog.write_history`, compacted, plus a late version."""
    backend = LocalBackend(tmp_path / "archive")
    latest = write_history(backend, tmp_path)
    compact_catalog(backend, before=CLOSED)
    record, _ = next(v for v in latest.values() if expected_date(v[0]) < CLOSED)
    latest[record.id] = newer_version(record, "a late version", 5)
    write_run(backend, tmp_path, "20240530T000000Z-late", [latest[record.id]])
    return backend, latest


def read_export(path_or_text: Path | str, format_: str) -> list[dict]:
    """The rows of an export, as dicts (Parquet: typed; JSON Lines and CSV: as written)."""
    if format_ == "parquet":
        return pq.read_table(path_or_text).to_pylist()
    text = path_or_text.read_text(encoding="utf-8") if isinstance(path_or_text, Path) \
        else path_or_text
    if format_ == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(text, newline="")))


def as_written(value, format_: str):
    """A typed value of the catalog as an export of ``format_`` writes it."""
    if format_ == "parquet" or value is None and format_ == "jsonl":
        return value
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if format_ == "csv" and isinstance(value, list):
        return json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in value],
                          ensure_ascii=False)
    return value


def test_export_writes_each_articles_latest_row_once_in_every_format(history, tmp_path):
    backend, latest = history
    root = backend.root
    expected = latest_by_id(str(root))
    assert len(expected) == len(latest) == 12
    assert len(read_catalog(str(root), latest=False)) > 12  # several rows of some articles
    runs = [("jsonl", None), ("jsonl", "out.jsonl"), ("csv", "out.csv"),
            ("parquet", "out.parquet")]
    for format_, output in runs:
        argv = ["export", "--archive", str(root)] + (["--output", output] if output else [])
        done = newsarchive(*argv, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows = read_export(tmp_path / output if output else done.stdout, format_)
        ids = [row["id"] for row in rows]
        assert sorted(ids) == sorted(expected), format_  # one row per article, each once
        assert our_lines(done.stderr) == [
            f"newsarchive: exported 12 articles to {output or 'standard output'}"]
        names = [f.name for f in catalog_schema() if f.name != TEXT_COLUMN]
        assert list(rows[0]) == names, format_  # the catalog's columns, no text
        for row in rows:
            want = expected[row["id"]]
            for name in ("fetched_at", "checked_at", "title", "date", "site", "aliases"):
                assert row[name] == as_written(want[name], format_), (format_, name)
            versions = row["versions"] if format_ != "csv" else json.loads(row["versions"])
            assert len(versions) == len(want["versions"]), format_
        # In the order of the catalog's partitions: by site, then date.
        keys = [(row["site"], str(row["date"])) for row in rows]
        assert keys == sorted(keys)
    # Typed as the catalog: the same queries run on it.
    assert pq.read_schema(tmp_path / "out.parquet").remove_metadata() == \
        catalog_schema().remove(catalog_schema().get_field_index(TEXT_COLUMN))

    # --text: the latest text of each.
    for output in ("text.parquet", "text.csv", "text.jsonl"):
        done = newsarchive("export", "--archive", str(root), "--text", "-o", output, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        rows = read_export(tmp_path / output, output.rsplit(".", 1)[1])
        assert {row["id"]: row["text"] for row in rows} == {
            record_id: text for record_id, (_record, text) in latest.items()}
    assert pq.read_schema(tmp_path / "text.parquet").remove_metadata() == catalog_schema()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_export_filters_by_site_date_and_language_of_the_latest_row(history, tmp_path):
    backend, latest = history
    root = str(backend.root)
    # An article whose latest version is in French, its earlier ones in English.
    record, _ = next(v for v in latest.values() if v[0].site == "beta")
    french, text = newer_version(record, "Une nouvelle version.", 7)
    write_run(backend, tmp_path, "20240531T000000Z-fr", [(replace(french, language="fr"), text)])
    latest[record.id] = (replace(french, language="fr"), text)

    def exported(*args: str) -> list[str]:
        done = newsarchive("export", "--archive", root, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["id"] for line in done.stdout.splitlines()]

    def ids(keep) -> list[str]:
        return sorted(i for i, (r, _) in latest.items() if keep(r))

    assert sorted(exported("--site", "alpha")) == ids(lambda r: r.site == "alpha")
    assert sorted(exported("--site", "beta", "--site", "alpha", "--site", "beta")) == ids(
        lambda r: True)
    # Publication date (UTC), else fetch date: the archive's date; both ends included.
    days = sorted({expected_date(r) for r, _ in latest.values()})
    assert len(days) == 3
    assert sorted(exported("--since", str(days[1]))) == ids(lambda r: expected_date(r) >= days[1])
    assert sorted(exported("--until", str(days[1]))) == ids(lambda r: expected_date(r) <= days[1])
    assert sorted(exported("--since", str(days[1]), "--until", str(days[1]), "--site", "beta")) \
        == ids(lambda r: expected_date(r) == days[1] and r.site == "beta")
    # The language of each article's latest row, whatever its case.
    assert exported("--language", "FR") == [record.id]
    assert sorted(exported("--lang", "en")) == ids(lambda r: r.id != record.id)
    assert exported("--language", "de") == []


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["--site", "alpha", "--site", "gamma"], 2,
     "newsarchive: export: no article of site 'gamma' in {root} (its catalog has: alpha, beta)"),
    (["--format", "parquet"], 2,
     "newsarchive: export: Parquet is written to a file only: give --output FILE.parquet"),
    (["--output", "articles.txt"], 2,
     "newsarchive: export: cannot tell the format of articles.txt from its suffix (.jsonl, "
     ".ndjson, .csv, .parquet): give --format jsonl|csv|parquet"),
    (["--since", "2024-05-21", "--until", "2024-05-18"], 2,
     "newsarchive: export: --since 2024-05-21 is after --until 2024-05-18"),
    (["--output", "no/such/folder/out.csv"], 1,
     "newsarchive: export: cannot write no/such/folder/out.csv: No such file or directory"),
])
def test_export_refuses_in_one_line(history, tmp_path, argv, code, says):
    backend, _ = history
    done = newsarchive("export", "--archive", str(backend.root), *argv, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (code, "")
    assert done.stderr.splitlines() == [says.format(root=backend.root)]
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "archive" not in p.parts
                and "pending" not in p.parts]  # nothing written


def test_export_refuses_a_date_that_is_no_date(tmp_path):
    done = newsarchive("export", "--archive", str(tmp_path), "--since", "2024-02-30",
                       cwd=tmp_path)
    assert done.returncode == 2 and "not a date (YYYY-MM-DD): '2024-02-30'" in done.stderr


def test_export_an_archive_in_s3(s3_archive, tmp_path):
    """The same through moto's S3 server over HTTP: the catalog read in place."""
    backend = S3Backend(s3_archive.bucket, s3_archive.prefix)
    latest = write_history(backend, tmp_path)
    done = newsarchive("export", "--archive", s3_archive.url, "--site", "beta", "--text",
                       "-o", "beta.parquet", cwd=tmp_path, env=s3_archive.env)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "beta.parquet").to_pylist()
    assert {row["id"]: row["text"] for row in rows} == {
        i: text for i, (r, text) in latest.items() if r.site == "beta"}
    expected = latest_by_id(s3_archive.url, filter=ds.field("site") == "beta")
    assert {row["id"]: row["fetched_at"] for row in rows} == {
        i: row["fetched_at"] for i, row in expected.items()}
    assert our_lines(done.stderr) == ["newsarchive: exported 6 articles to beta.parquet"]


def test_an_archive_without_catalog_is_exported_from_its_records(tmp_path):
    """As ``ls`` does: the records' meta.json (one request each), saying so in one line."""
    from tests.test_cli import store_article

    root = tmp_path / "archive"
    archive = Archive.open(str(root))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    stored = {}
    for n in range(5):
        text = f"Story {n} of the harbour town."
        record = store_article(archive, site=("alpha", "beta")[n % 2],
                               url=f"https://example.org/news/story-{n}", title=f"Story {n}",
                               published=when + timedelta(days=n), fetched_at=when, text=text,
                               raw=b"<p>x</p>")
        stored[record.id] = (record, text)
    assert not (root / "catalog").exists()
    done = newsarchive("export", "--archive", str(root), "--text", "-o", "all.parquet",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert our_lines(done.stderr) == [
        f"newsarchive: export: {root} has no catalog: reading each article's meta.json "
        "instead (a request each)",
        "newsarchive: exported 5 articles to all.parquet"]
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.schema.remove_metadata() == catalog_schema()  # the same columns
    rows = {row["id"]: row for row in table.to_pylist()}
    assert {i: row["text"] for i, row in rows.items()} == {i: t for i, (_, t) in stored.items()}
    for record_id, (record, _) in stored.items():
        assert rows[record_id]["title"] == record.title
        assert rows[record_id]["date"] == record.published.date()
        assert rows[record_id]["site"] == record.site
    done = newsarchive("export", "--archive", str(root), "--site", "beta", "--since",
                       "2024-05-02", "--until", "2024-05-02", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert our_lines(done.stderr)[0].startswith(f"newsarchive: export: no catalog of beta in {root}: ")
    assert [json.loads(line)["title"] for line in done.stdout.splitlines()] == ["Story 1"]
    done = newsarchive("export", "--archive", str(root), "--site", "gamma", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"newsarchive: export: no article of site 'gamma' in {root}"]


def big_catalog(root: Path, *, partitions: int, rows: int, text_bytes: int) -> int:
    """A catalog of ``partitions`` days of one site with ``rows`` articles each, whose texts
    are ``text_bytes`` long (repetitive: small on disk, full size once read); returns the
    bytes of text in all."""
    backend = LocalBackend(root)
    archive = Archive(backend)
    text = ("All work and no play makes a long article. " * (text_bytes // 44 + 1))[:text_bytes]
    start = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    for day in range(partitions):
        records = [(catalog_record(archive, day * rows + n, site="alpha",
                                   published=start + timedelta(days=day), text=text), text)
                   for n in range(rows)]
        path = root / catalog_key("alpha", (start + timedelta(days=day)).date(), "run-1")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(catalog_file_table(records), path, compression="zstd")
    return partitions * rows * text_bytes


def test_export_holds_a_few_partitions_in_memory_not_the_archive(tmp_path):
    """400 MB of text (once read) go out a few partitions at a time: the most memory Arrow
    ever held during the export (its pool's peak, in the exporting process) stays far
    below it."""
    total = big_catalog(tmp_path / "archive", partitions=100, rows=8, text_bytes=512 * 1024)
    peak_file = tmp_path / "peak"
    done = newsarchive(
        "export", "--archive", str(tmp_path / "archive"), "--text", "-o", "big.parquet",
        cwd=tmp_path,
        before=("import atexit, pathlib, pyarrow\n"
                f"atexit.register(lambda: pathlib.Path({str(peak_file)!r}).write_text("
                "str(pyarrow.default_memory_pool().max_memory())))"))
    assert done.returncode == 0, done.stderr
    peak = int(peak_file.read_text())
    assert peak < total / 4, (peak, total)
    exported = pq.ParquetFile(tmp_path / "big.parquet")
    assert exported.metadata.num_rows == 800
    assert exported.metadata.num_row_groups > 4  # written as it was read


def test_a_long_export_reports_its_progress(history, tmp_path):
    """A line every PROGRESS_SECONDS (0 here: after each read), then the summary."""
    backend, _ = history
    done = newsarchive(
        "export", "--archive", str(backend.root), "-o", "out.jsonl", cwd=tmp_path,
        before="import browse.export as e; e.PROGRESS_SECONDS = 0; e.READ_TARGET_BYTES = 1")
    assert done.returncode == 0, done.stderr
    lines = our_lines(done.stderr)
    progress = [line for line in lines if "so far" in line]
    # One read per (site, date) partition: 2 sites x 3 days.
    assert len(progress) == 6, lines
    assert progress[0].startswith("newsarchive: export: 2 articles so far (at alpha 2024-05-18)")
    assert progress[-1] == "newsarchive: export: 12 articles so far (at beta 2024-05-21)"
    assert lines[-1] == "newsarchive: exported 12 articles to out.jsonl"


# -- the README's "latest" views -------------------------------------------------------------


def readme_catalog_paragraph() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("- **Catalog**"):readme.index("- **Run manifests**")]


def test_the_readmes_pandas_line_gives_each_articles_latest_row(tmp_path, monkeypatch):
    """The README's pandas line, read out of the README and run as written from the
    directory holding ``archive/``: the rows read_catalog picks (more versions, a later
    fetch, a later check, a run file over the compacted one, then the greater file name),
    before compaction and after it, with a late run file beside a compacted day; and the
    same articles as ``newsarchive export``. (The DuckDB line beside it runs in
    ``tests/test_catalog.py``.)"""
    pytest.importorskip("pandas")
    blocks = re.findall(r"```python\n(.+?)```", readme_catalog_paragraph(), re.S)
    (code,) = [textwrap.dedent(block) for block in blocks if "pd.read_parquet" in block]
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[1].startswith("df = ")  # one line, after its import
    backend = LocalBackend(tmp_path / "archive")
    latest = write_history(backend, tmp_path)
    monkeypatch.chdir(tmp_path)

    def run() -> dict[str, dict]:
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - the README's own line
        frame = scope["df"]
        assert frame["id"].is_unique
        return {row["id"]: row for row in frame.to_dict("records")}

    def assert_latest(rows: dict[str, dict]) -> None:
        expected = latest_by_id(str(backend.root))
        assert set(rows) == set(expected) == set(latest)
        for record_id, row in rows.items():
            want = expected[record_id]
            assert row["fetched_at"] == want["fetched_at"]
            assert list(row["aliases"]) == want["aliases"]  # the alias-only tie
            assert len(row["versions"]) == len(want["versions"])
            assert row["title"] == want["title"]

    assert_latest(run())
    compact_catalog(backend, before=CLOSED)
    record, _ = next(v for v in latest.values() if expected_date(v[0]) < CLOSED)
    latest[record.id] = newer_version(record, "a late version", 5)
    write_run(backend, tmp_path, "20240530T000000Z-late", [latest[record.id]])
    assert_latest(run())
    done = newsarchive("export", "--archive", "archive", "-o", "latest.parquet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    exported = pa.Table.to_pylist(pq.read_table(tmp_path / "latest.parquet"))
    assert {row["id"]: row["fetched_at"] for row in exported} == {
        i: row["fetched_at"] for i, row in run().items()}
