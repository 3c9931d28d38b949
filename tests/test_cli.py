"""The ``newsarchive`` command line: usage and config errors, and the read-only commands over a
small archive built here with ``storage``. Runs ``flows.cli.main`` in-process (no crawl, no
Prefect), plus a few real ``python -m flows`` subprocesses for exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flows.cli import main
from storage import Archive, Extractor, Record, StoreOutcome, article_id, canonicalize_url
from tests.conftest import REPO_ROOT, write_sites_file

# The record contract of ARCHITECTURE.md.
CONTRACT_FIELDS = (
    "schema_version", "id", "site", "url", "canonical_url", "aliases", "title", "authors",
    "published", "modified", "language", "fetched_at", "http_status", "content_sha256",
    "near_duplicate_of", "extractor", "raw_key", "text_key", "meta_key",
)
HEADER = ["id", "site", "date", "title", "url"]
UTC = timezone.utc
# A raw body that is not UTF-8 and holds NUL, CR and 0xFF: `cat --raw` must give it back as is.
THIRD_RAW = b"<html><meta charset=windows-1252><p>le caf\xe9 co\xfbte 3 \x80</p>\x00\r\n\xff</html>"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No sites.toml in the working directory and no NEWSARCHIVE_* overrides, unless a test
    sets them."""
    for var in list(os.environ):
        if var.startswith("NEWSARCHIVE_"):
            monkeypatch.delenv(var)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def store_article(archive: Archive, *, site: str, url: str, title: str | None,
                  published: datetime | None, fetched_at: datetime, text: str,
                  raw: bytes, charset: str = "utf-8") -> Record:
    """Archive one article the way a crawl does (spiders/page.py, spiders/archiving.py)."""
    canonical = canonicalize_url(url)
    aid = article_id(canonical)
    when = published or fetched_at
    keys = archive.keys_for(site, when.astimezone(UTC).date(), aid)
    record = Record(
        id=aid,
        site=site,
        url=url,
        canonical_url=canonical,
        aliases=tuple(sorted({url} - {canonical})),
        title=title,
        authors=("Ada Lovelace", "Grace Hopper"),
        published=published,
        modified=published + timedelta(hours=1) if published else None,
        language="en",
        fetched_at=fetched_at,
        http_status=200,
        content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        extractor=Extractor(name="newsarchive", version="test"),
        raw_key=archive.locate(keys.raw),
        text_key=archive.locate(keys.text),
        meta_key=archive.locate(keys.meta),
    )
    result = archive.store(record, raw_body=raw, charset=charset, text=text, run_id="test-run",
                           seen_urls={canonical})
    assert result.outcome is StoreOutcome.WRITTEN
    return result.record


class Fixture:
    """A local archive of three records for two sites on three different days."""

    def __init__(self, root: Path) -> None:
        self.root = root
        archive = Archive.open(str(root))
        # alpha, 2024-05-01 (UTC)
        self.first = store_article(
            archive, site="alpha", url="https://www.alpha.example/news/first-story?utm_source=rss",
            title="First story",
            published=datetime(2024, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=2))),
            fetched_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
            text="First paragraph of the first story.\nSecond paragraph.",
            raw=b"<html><body><p>First paragraph of the first story.</p></body></html>",
        )
        # alpha, published late on 3 May in New York: 4 May in UTC, which is its archive date.
        self.second = store_article(
            archive, site="alpha", url="https://www.alpha.example/news/second-story",
            title="Second story",
            published=datetime(2024, 5, 3, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
            fetched_at=datetime(2024, 5, 4, 6, 0, tzinfo=UTC),
            text="The second story, with ünïcödé and “quotes”.",
            raw="<html><body><p>The second story, with ünïcödé.</p></body></html>".encode(),
        )
        # beta, no publication date: dated by its fetch, 2024-05-02. Raw body not UTF-8.
        self.third = store_article(
            archive, site="beta", url="https://beta.example/a/third",
            title=None, published=None, fetched_at=datetime(2024, 5, 2, 12, 0, tzinfo=UTC),
            text="Third: le café coûte 3 €.",
            raw=THIRD_RAW,
            charset="windows-1252",
        )
        self.records = [self.first, self.second, self.third]


@pytest.fixture
def archive(tmp_path) -> Fixture:
    return Fixture(tmp_path / "archive")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> list[list[str]]:
    """The rows of a piped table, split on its tabs (``ls``: whole fields) or on its
    two-space column separator (the other tables)."""
    lines = out.rstrip("\n").split("\n")
    return [[cell.strip() for cell in line.split("\t" if "\t" in line else "  ")
             if cell.strip()] for line in lines]


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("newsarchive: "), err
    return lines[0]


# -- usage and config errors -----------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["nosuch"], ["ls", "--since", "2024-13-01"], ["ls", "--bogus"]])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_crawl_with_missing_config(tmp_path, capsys):
    code, out, err = run(capsys, "crawl", "--config", str(tmp_path / "missing.toml"))
    assert code == 2
    assert "missing.toml" in one_line_error(err)
    assert out == ""


def test_crawl_with_default_config_missing(capsys):
    code, _, err = run(capsys, "crawl")  # no sites.toml in the working directory
    assert code == 2
    assert "sites.toml" in one_line_error(err)


def test_crawl_with_config_from_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEWSARCHIVE_CONFIG", str(tmp_path / "from-env.toml"))
    code, _, err = run(capsys, "crawl")
    assert code == 2
    assert "from-env.toml" in one_line_error(err)


def _valid_config(tmp_path: Path, archive_url: str = "./archive") -> Path:
    sites = [
        {"name": "alpha", "allowed_domains": ["alpha.example"], "feeds": ["https://alpha.example/rss"]},
        {"name": "beta", "allowed_domains": ["beta.example"], "sitemaps": ["https://beta.example/s.xml"]},
    ]
    return write_sites_file(tmp_path / "sites.toml", archive_url, sites)


def test_crawl_with_bad_site_name(tmp_path, capsys):
    config = write_sites_file(tmp_path / "bad.toml", "./archive", [
        {"name": "../../etc", "allowed_domains": ["x.example"], "feeds": ["https://x.example/rss"]},
    ])
    code, _, err = run(capsys, "crawl", "--config", str(config))
    assert code == 2
    assert "sites.0.name" in one_line_error(err)


def test_crawl_unknown_site_names_the_configured_ones(tmp_path, capsys):
    code, out, err = run(capsys, "crawl", "--site", "nosuch", "--config", str(_valid_config(tmp_path)))
    assert code == 2
    line = one_line_error(err)
    assert "nosuch" in line and "alpha" in line and "beta" in line
    assert out == ""


def test_crawl_with_bad_archive_url(tmp_path, capsys):
    code, _, err = run(capsys, "crawl", "--config", str(_valid_config(tmp_path)), "--archive", "ftp://x")
    assert code == 2
    assert "ftp://x" in one_line_error(err)


def test_ls_with_bad_archive_url(capsys):
    code, out, err = run(capsys, "ls", "--archive", "ftp://x")
    assert code == 2
    assert "archive URL" in one_line_error(err)
    assert out == ""


def test_bad_archive_url_from_config(tmp_path, capsys):
    code, _, err = run(capsys, "ls", "--config", str(_valid_config(tmp_path, "gopher://x/y")))
    assert code == 2
    assert "gopher://x/y" in one_line_error(err)


def test_ls_with_bad_site_name(archive, capsys):
    code, out, err = run(capsys, "ls", "--archive", str(archive.root), "--site", "../alpha")
    assert code == 2
    line = one_line_error(err)
    assert "site name" in line and "archive URL" not in line
    assert out == ""


def test_bad_settings_in_environment(archive, capsys, monkeypatch):
    monkeypatch.setenv("NEWSARCHIVE_MAX_PARALLEL_SITES", "zero")
    code, _, err = run(capsys, "ls", "--archive", str(archive.root))
    assert code == 2
    assert "NEWSARCHIVE_MAX_PARALLEL_SITES" in one_line_error(err)


# -- ls ------------------------------------------------------------------------------------------


def test_ls_lists_every_record(archive, capsys):
    code, out, err = run(capsys, "ls", "--archive", str(archive.root))
    assert code == 0, err
    rows = table(out)
    assert rows[0] == HEADER
    assert len(rows) == 4
    by_id = {row[0]: row for row in rows[1:]}
    assert set(by_id) == {r.id for r in archive.records}
    assert by_id[archive.first.id] == [archive.first.id, "alpha", "2024-05-01", "First story",
                                       archive.first.url]
    # The date is the archive's: publication date in UTC, else the fetch date.
    assert by_id[archive.second.id][2] == "2024-05-04"
    assert by_id[archive.third.id] == [archive.third.id, "beta", "2024-05-02", archive.third.url]


def test_ls_filters_by_site(archive, capsys):
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), "--site", "alpha")
    assert code == 0
    rows = table(out)[1:]
    assert sorted(r[0] for r in rows) == sorted([archive.first.id, archive.second.id])
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), "--site", "beta")
    assert [r[0] for r in table(out)[1:]] == [archive.third.id]
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), "--site", "gamma")
    assert code == 0 and table(out) == [HEADER]


@pytest.mark.parametrize(("args", "expected"), [
    (["--since", "2024-05-02"], {"second", "third"}),
    (["--since", "2024-05-04"], {"second"}),
    (["--since", "2024-05-05"], set()),
    (["--until", "2024-05-01"], {"first"}),
    (["--until", "2024-05-03"], {"first", "third"}),
    (["--since", "2024-05-02", "--until", "2024-05-02"], {"third"}),
    (["--since", "2024-05-01", "--until", "2024-05-31"], {"first", "second", "third"}),
    (["--site", "alpha", "--since", "2024-05-02"], {"second"}),
])
def test_ls_filters_by_date(archive, capsys, args, expected):
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), *args)
    assert code == 0
    rows = table(out)[1:]
    names = {"first": archive.first.id, "second": archive.second.id, "third": archive.third.id}
    assert {r[0] for r in rows} == {names[n] for n in expected}
    since = args[args.index("--since") + 1] if "--since" in args else "0000-00-00"
    until = args[args.index("--until") + 1] if "--until" in args else "9999-99-99"
    assert all(since <= r[2] <= until for r in rows), rows  # shown dates agree with the filter


def test_ls_json(archive, capsys):
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), "--json")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    by_id = {r["id"]: r for r in records}
    for record in archive.records:
        got = by_id[record.id]
        assert set(CONTRACT_FIELDS) <= set(got)
        assert got == record.to_dict()
        assert Record.from_dict(got) == record
    assert by_id[archive.second.id]["published"] == "2024-05-03T23:30:00-05:00"
    assert by_id[archive.third.id]["published"] is None
    assert by_id[archive.second.id]["title"] == "Second story"
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root), "--json", "--site", "beta")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [archive.third.id]


def test_ls_empty_or_missing_archive(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (empty, tmp_path / "does-not-exist"):
        for argv in (["ls"], ["ls", "--json"]):
            code, out, err = run(capsys, *argv, "--archive", str(root))
            assert (code, out) == (1, "")  # not an empty table that looks like an answer
            assert f"no archive found at {root}" in one_line_error(err)
    assert not (tmp_path / "does-not-exist").exists()  # reading creates nothing


def test_ls_needs_only_the_archive_table(archive, tmp_path, capsys, monkeypatch):
    # No sites.toml at all: --archive is enough.
    assert not Path("sites.toml").exists()
    code, out, _ = run(capsys, "ls", "--archive", str(archive.root))
    assert code == 0 and len(table(out)) == 4
    # A sites file whose [[sites]] would not do for a crawl still serves for reading, and its
    # [archive] url is used.
    config = write_sites_file(tmp_path / "broken-sites.toml", str(archive.root),
                              [{"name": "../../etc", "colour": "red"}])
    code, out, err = run(capsys, "ls", "--config", str(config))
    assert code == 0, err
    assert len(table(out)) == 4
    # The environment names the archive too; --archive overrides both.
    monkeypatch.setenv("NEWSARCHIVE_ARCHIVE_URL", str(archive.root))
    code, out, _ = run(capsys, "ls")
    assert code == 0 and len(table(out)) == 4
    code, out, _ = run(capsys, "ls", "--archive", str(tmp_path / "elsewhere"))
    assert code == 1 and out == ""  # no archive there


def test_ls_sanitises_untrusted_titles(tmp_path, capsys):
    root = tmp_path / "archive"
    evil = store_article(
        Archive.open(str(root)), site="alpha", url="https://alpha.example/evil",
        title="Line one\nforged-id  alpha  2024-01-01\x1b[31m red\r\u2028end",
        published=datetime(2024, 1, 2, tzinfo=UTC), fetched_at=datetime(2024, 1, 2, tzinfo=UTC),
        text="x", raw=b"x",
    )
    code, out, _ = run(capsys, "ls", "--archive", str(root))
    assert code == 0
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 2
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    assert lines[1].startswith(evil.id)
    assert "Line one" in lines[1] and "red" in lines[1] and evil.url in lines[1]


# -- show and cat ------------------------------------------------------------------------------


def test_show_by_id(archive, capsys):
    for record in archive.records:
        code, out, err = run(capsys, "show", record.id, "--archive", str(archive.root))
        assert code == 0, err
        shown = json.loads(out)
        assert shown == record.to_dict()
        assert set(CONTRACT_FIELDS) <= set(shown)


def test_show_by_url(archive, capsys):
    for url in (archive.first.canonical_url, archive.first.url):
        code, out, err = run(capsys, "show", url, "--archive", str(archive.root))
        assert code == 0, (url, err)
        assert json.loads(out)["id"] == archive.first.id
    code, out, _ = run(capsys, "show", archive.third.url, "--archive", str(archive.root))
    assert code == 0 and json.loads(out)["id"] == archive.third.id


@pytest.mark.parametrize("ref", ["0" * 24, "https://alpha.example/never-archived", "not-an-id"])
def test_show_unknown(archive, capsys, ref):
    code, out, err = run(capsys, "show", ref, "--archive", str(archive.root))
    assert code == 1
    assert ref in one_line_error(err)
    assert out == ""


def test_cat_prints_the_text(archive, capsys):
    for record, text in ((archive.first, "First paragraph of the first story.\nSecond paragraph."),
                         (archive.second, "The second story, with ünïcödé and “quotes”.")):
        code, out, err = run(capsys, "cat", record.id, "--archive", str(archive.root))
        assert code == 0, err
        assert out == text + "\n"
    code, out, _ = run(capsys, "cat", archive.third.url, "--archive", str(archive.root))
    assert code == 0 and out == "Third: le café coûte 3 €.\n"


def test_cat_raw_writes_the_exact_bytes(archive, capsysbinary):
    for record, raw in (
        (archive.first, b"<html><body><p>First paragraph of the first story.</p></body></html>"),
        (archive.third, THIRD_RAW),
    ):
        code = main(["cat", record.id, "--raw", "--archive", str(archive.root)])
        out, _ = capsysbinary.readouterr()
        assert code == 0
        assert out == raw


def test_cat_unknown(archive, capsys):
    code, out, err = run(capsys, "cat", "f" * 24, "--archive", str(archive.root))
    assert code == 1 and out == ""
    assert "f" * 24 in one_line_error(err)


# -- as a user runs it: a real process ------------------------------------------------------------


def _python_m_flows(*args: str, cwd: Path, env: dict[str, str] | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    full_env.update({"PYTHONPATH": str(REPO_ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "flows", *args], cwd=cwd, env=full_env,
                          capture_output=True, timeout=120, check=False)


def test_exit_codes_of_a_real_process(archive, tmp_path):
    work = tmp_path / "proc"
    work.mkdir()

    usage = _python_m_flows(cwd=work)
    assert usage.returncode == 2 and b"usage:" in usage.stderr

    missing = _python_m_flows("crawl", "--config", "missing.toml", cwd=work)
    assert missing.returncode == 2
    assert missing.stdout == b""
    line = one_line_error(missing.stderr.decode())
    assert "missing.toml" in line

    listing = _python_m_flows("ls", "--json", cwd=work,
                              env={"NEWSARCHIVE_ARCHIVE_URL": str(archive.root)})
    assert listing.returncode == 0, listing.stderr.decode()[-2000:]
    assert {json.loads(line)["id"] for line in listing.stdout.splitlines()} == {
        r.id for r in archive.records}

    raw = _python_m_flows("cat", archive.third.id, "--raw", "--archive", str(archive.root), cwd=work)
    assert raw.returncode == 0
    assert raw.stdout == THIRD_RAW

    unknown = _python_m_flows("show", "0" * 24, "--archive", str(archive.root), cwd=work)
    assert unknown.returncode == 1
    one_line_error(unknown.stderr.decode())


def test_a_command_runs_as_if_pandas_were_not_installed(archive, tmp_path):
    """pyarrow imports pandas, when it is installed, at its first conversion of a Python
    value: 0.3-0.5 s of CPU for each command, which never uses pandas
    (``storage.catalog.keep_pandas_out``). Run as ``python -m flows`` runs."""
    pytest.importorskip("pandas")  # where pandas is absent, this could not fail
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: print('loaded:', *(m for m in ('pyarrow', 'pandas')\n"
             "                                             if m in sys.modules), file=sys.stderr))\n"
             "sys.argv[0] = 'newsarchive'\n"
             "runpy.run_module('flows', run_name='__main__', alter_sys=True)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    done = subprocess.run([sys.executable, "-c", probe, "stats", "--archive", str(archive.root)],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.splitlines()[-1] == "loaded: pyarrow", done.stderr[-2000:]
