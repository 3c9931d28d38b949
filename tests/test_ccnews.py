"""``newsarchive backfill --source ccnews``: a site's history read from a local Common
Crawl News (WARC files under CC-NEWS's key layout, served over HTTP or from moto), never
from the site."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastwarc.warc import ArchiveIterator

from tests.ccnews_local import Capture, LocalCCNews, build, file_path
from tests.conftest import REPO_ROOT, write_sites_file

SITE_HOSTS = ("www.morgenpost.de", "www.braunschweiger-zeitung.de")
SINCE, UNTIL = date(2025, 9, 1), date(2025, 11, 30)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ccnews(corpus, tmp_path_factory):
    """Six CC-NEWS files over five months. The site (two hosts of one publisher) has four
    articles published in the range, captured in two files, one of them captured twice; two
    older articles of the site are captured again inside the range's files (dated out of
    range); every file holds other publishers' pages. Returns the root, the files by name,
    and what the site's in-range captures are (url -> (file, offset, capture time))."""
    ours = {}
    others = []
    for page in corpus:
        host = urlsplit(page.original_url).hostname
        if host in SITE_HOSTS:
            ours[(host, page.published.date().isoformat())] = page
        else:
            others.append(page)
    mp, bz = SITE_HOSTS

    def cap(page, when):
        return Capture(page.original_url, _at(when), page.html)

    def other(n, when):
        return [cap(others[(n * 3 + k) % len(others)], when) for k in range(3)]

    layout = {
        "before": ("2025-07-15T00:00:00", other(0, "2025-07-15T01:00:00")),
        "edge": ("2025-08-20T00:00:00", other(1, "2025-08-20T01:00:00")),
        "sept": ("2025-09-09T23:00:00", [
            cap(ours[(mp, "2025-09-09")], "2025-09-09T23:10:00"),
            *other(2, "2025-09-09T23:20:00"),
            cap(ours[(bz, "2025-09-09")], "2025-09-09T23:30:00"),
            cap(ours[(mp, "2024-05-03")], "2025-09-09T23:40:00"),
        ]),
        "nov": ("2025-11-06T21:00:00", [
            cap(ours[(mp, "2025-11-06")], "2025-11-06T21:05:00"),
            cap(ours[(bz, "2025-11-06")], "2025-11-06T21:06:00"),
            cap(ours[(mp, "2025-09-09")], "2025-11-06T21:07:00"),  # captured again
            *other(3, "2025-11-06T21:08:00"),
        ]),
        "slack": ("2025-12-02T00:00:00", [
            cap(ours[(bz, "2024-05-16")], "2025-12-02T00:10:00"),
            *other(4, "2025-12-02T00:20:00"),
        ]),
        "after": ("2025-12-10T00:00:00", other(5, "2025-12-10T01:00:00")),
    }
    files, paths = {}, {}
    for number, (name, (starts, captures)) in enumerate(layout.items(), start=1):
        paths[name] = file_path(_at(starts), number)
        files[paths[name]] = captures
    root = tmp_path_factory.mktemp("ccnews")
    offsets = build(root, files)
    in_range = {}
    for path, captures in files.items():
        for capture, offset in zip(captures, offsets[path]):
            host = urlsplit(capture.url).hostname
            published = next(p.published for p in corpus if p.original_url == capture.url)
            if host in SITE_HOSTS and SINCE <= published.date() <= UNTIL \
                    and capture.url not in in_range:
                in_range[capture.url] = (path, offset, capture.when)
    assert len(in_range) == 4
    return root, paths, in_range


def _sites_file(tmp_path: Path, archive_url: str, feed: str) -> Path:
    # A site needs a sitemap or feed to be configured; a CC-NEWS backfill never reads it.
    return write_sites_file(tmp_path / "sites.toml", archive_url, [{
        "name": "funke", "allowed_domains": ["morgenpost.de", "braunschweiger-zeitung.de"],
        "feeds": [feed]}])


def _records(archive_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in archive_dir.rglob("meta.json")]


def _listing(archive_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(archive_dir)): p.stat().st_mtime_ns
            for p in archive_dir.rglob("*") if p.is_file() and "/runs/" not in f"/{p.relative_to(archive_dir)}"}


def _backfill(run_cli, config: Path, source_url: str, *extra: str):
    return run_cli("backfill", "--config", str(config), "--site", "funke", "--since",
                   SINCE.isoformat(), "--until", UNTIL.isoformat(), "--source", "ccnews", *extra,
                   env={"NEWSARCHIVE_CCNEWS_URL": source_url})


def test_the_files_listed_are_those_whose_captures_can_hold_the_range(ccnews):
    from spiders.ccnews import Source, files_for

    root, paths, _ = ccnews
    chosen = [f.path for f in files_for(Source(str(root)), SINCE, UNTIL, timedelta(days=3))]
    # "edge" starts before the range but holds captures until "sept" starts, inside it;
    # "slack" starts within 3 days after the range's end; "before" and "after" cannot hold
    # a capture of an article published in the range.
    assert chosen == [paths[n] for n in ("edge", "sept", "nov", "slack")]
    assert [f.path for f in files_for(Source(str(root)), SINCE, UNTIL, timedelta(0))] == \
        [paths[n] for n in ("edge", "sept", "nov")]


def test_a_backfill_archives_exactly_the_sites_in_range_articles_and_a_rerun_writes_nothing(
        ccnews, run_cli, tmp_path):
    root, paths, in_range = ccnews
    archive_dir = tmp_path / "archive"
    with LocalCCNews(root) as server:
        config = _sites_file(tmp_path, str(archive_dir), f"{server.url}site-feed.xml")
        dry = _backfill(run_cli, config, server.url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "4 CC-NEWS files" in dry.stdout and "4 to scan" in dry.stdout, dry.stdout
        assert "scanning" in dry.stdout and "Dry run" in dry.stdout
        assert not archive_dir.exists() or not _records(archive_dir)
        # The dry run asks for the files' sizes, never their contents.
        assert not [r for r in server.requests if r.startswith("GET") and r.endswith(".warc.gz")]
        assert len([r for r in server.requests if r.startswith("HEAD")]) == 4

        done = _backfill(run_cli, config, server.url)
        assert done.returncode == 0, done.stdout + done.stderr
        records = _records(archive_dir)
        # Exactly the site's four in-range articles: not the other publishers' pages, not
        # the site's older articles captured in the same files, the twice-captured one once.
        assert sorted(r["url"] for r in records) == sorted(in_range)
        for record in records:
            path, offset, when = in_range[record["url"]]
            assert record["site"] == "funke"
            assert record["source"] == "ccnews"
            assert record["source_file"] == path
            assert record["source_offset"] == offset
            assert datetime.fromisoformat(record["fetched_at"]) == when
            assert SINCE <= datetime.fromisoformat(record["published"]).date() <= UNTIL
            # The offset leads to that very capture in the CC-NEWS file.
            with open(root / path, "rb") as stream:
                stream.seek(offset)
                first = next(iter(ArchiveIterator(stream)))
                assert first.headers["WARC-Target-URI"] == record["url"]
            # And it is in the archive's own WARC files, like a fetched page.
            assert record["warc_key"] and (archive_dir / record["warc_key"]).is_file()
        assert "4 articles archived" in done.stdout, done.stdout
        # The site itself was never asked for anything (its feed is on this server too).
        assert not [r for r in server.requests if "site-feed.xml" in r]
        # The catalog has one row per article.
        import pyarrow.dataset as ds
        table = ds.dataset(archive_dir / "catalog", format="parquet",
                           partitioning="hive").to_table(columns=["id", "source"])
        assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in records)
        assert set(table.column("source").to_pylist()) == {"ccnews"}
        # The site's URL summary knows them: a crawl that lists them skips them unfetched
        # (and takes what it does not know for new).
        from storage import Archive, canonicalize_url
        summary = Archive.open(str(archive_dir)).url_summary("funke")
        assert summary.complete
        assert all(summary.captured_at([canonicalize_url(url) for url in in_range]))

        before = _listing(archive_dir)
        requests_before = len(server.requests)
        again = _backfill(run_cli, config, server.url)
        assert again.returncode == 0, again.stderr
        assert _listing(archive_dir) == before
        # Only the month listings were read again: no file was scanned.
        assert not any(r.endswith(".warc.gz") for r in server.requests[requests_before:])
        for name in ("edge", "sept", "nov", "slack"):
            line = next(line for line in again.stdout.splitlines()
                        if paths[name].rsplit("/", 1)[-1] in line)
            assert "done" in line, again.stdout


def test_a_backfill_killed_after_one_file_resumes_with_the_rest(ccnews, run_cli, tmp_path,
                                                                 prefect_api_url):
    root, paths, in_range = ccnews
    archive_dir = tmp_path / "archive"
    state_dir = archive_dir / "_index" / "sites" / "funke"
    with LocalCCNews(root) as server:
        config = _sites_file(tmp_path, str(archive_dir), f"{server.url}site-feed.xml")
        # The second file is held back: the run is killed while it waits for it.
        server.hold(paths["sept"])
        env = {**os.environ, "PREFECT_API_URL": prefect_api_url,
               "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO_ROOT),
               "NEWSARCHIVE_CCNEWS_URL": server.url}
        process = subprocess.Popen(
            [sys.executable, "-m", "flows", "backfill", "--config", str(config), "--site",
             "funke", "--since", SINCE.isoformat(), "--until", UNTIL.isoformat(), "--source",
             "ccnews"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while f"GET {paths['sept']}" not in server.requests:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the backfill never asked for the second file"
                time.sleep(0.2)
            done_first = [p.name for p in state_dir.glob("ccnews-*.json") if "claim" not in p.name]
            assert done_first == ["ccnews-20250820000000-00002.json"]
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        server.release()
        scanned_before = list(server.requests)

        resumed = _backfill(run_cli, config, server.url)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        asked = [r for r in server.requests[len(scanned_before):] if r.endswith(".warc.gz")]
        assert asked == [f"GET {paths[n]}" for n in ("sept", "nov", "slack")]
        records = _records(archive_dir)
        assert sorted(r["url"] for r in records) == sorted(in_range)
        assert not list(state_dir.glob("*-claim.json"))


def test_a_month_is_read_from_s3_under_the_real_key_layout(ccnews, s3_archive):
    from collections import Counter

    from spiders.ccnews import SiteFilter, Source, files_for, iter_captures

    root, paths, in_range = ccnews
    for path in root.rglob("*"):
        if path.is_file():
            s3_archive.client.put_object(Bucket=s3_archive.bucket,
                                         Key=f"mirror/{path.relative_to(root)}",
                                         Body=path.read_bytes())
    source = Source(f"s3://{s3_archive.bucket}/mirror")
    chosen = files_for(source, SINCE, UNTIL, timedelta(days=3))
    assert [f.path for f in chosen] == [paths[n] for n in ("edge", "sept", "nov", "slack")]
    wanted = SiteFilter(("morgenpost.de", "braunschweiger-zeitung.de")).matcher()
    counts: Counter = Counter()
    kept = [c.url for f in chosen for c in iter_captures(source.open(f.path), wanted, counts)]
    # The site's captures in those files: the four in range (one twice) and two older ones.
    assert len(kept) == 7 and set(in_range) <= set(kept)
    # Every response record of the four files was judged (3 + 6 + 6 + 4), on its headers.
    assert counts["records"] == 19


@pytest.mark.parametrize("url, expected", [
    ("https://www.morgenpost.de/politik/article1.html", True),
    ("https://morgenpost.de/x", True),
    ("https://WWW.MORGENPOST.DE:443/x", True),
    ("https://user@www.morgenpost.de/x", True),
    ("https://notmorgenpost.de/x", False),
    ("https://www.morgenpost.de.evil.example/x", False),
    ("https://evil.example/www.morgenpost.de/x", False),
    ("https://evil.example/?u=https://www.morgenpost.de/", False),
])
def test_the_filter_judges_the_target_uri_host_like_the_crawl(url, expected):
    from spiders.ccnews import SiteFilter
    from spiders.hosts import host_allowed

    matches = SiteFilter(("morgenpost.de",)).matcher()
    assert matches(url) is expected
    assert host_allowed(urlsplit(url).hostname, ("morgenpost.de",)) is expected


def test_the_article_pattern_narrows_the_filter():
    from spiders.ccnews import SiteFilter

    matches = SiteFilter(("morgenpost.de",), r"/article\d+").matcher()
    assert matches("https://www.morgenpost.de/politik/article123/x.html")
    assert not matches("https://www.morgenpost.de/politik/")


def test_the_backfill_deployment_takes_the_source_and_slack_as_parameters():
    from prefect.utilities.callables import parameter_schema

    from flows.backfill import backfill

    schema = parameter_schema(backfill.fn).model_dump()
    source = schema["properties"]["source"]
    assert source["default"] == "site" and set(source["enum"]) == {"site", "ccnews"}
    assert schema["properties"]["slack_days"]["default"] == 3


def test_a_claimed_file_is_left_to_its_live_holder_and_taken_from_a_dead_one(tmp_path):
    from flows.ccnews import claim_file, release_file
    from spiders.ccnews import WarcFile
    from storage import Archive

    archive = Archive.open(str(tmp_path / "archive"))
    warc_file = WarcFile("crawl-data/CC-NEWS/2025/09/CC-NEWS-20250909230000-00003.warc.gz",
                         _at("2025-09-09T23:00:00"))
    assert claim_file(archive, "funke", warc_file, "run-a")
    # This process holds it (alive, claim not expired): another run leaves it.
    assert not claim_file(archive, "funke", warc_file, "run-b")
    # A claim whose process is gone from this machine lapses at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = next((tmp_path / "archive").rglob("*-claim.json"))
    held = json.loads(key.read_text())
    key.write_text(json.dumps({**held, "pid": dead.pid}))
    assert claim_file(archive, "funke", warc_file, "run-b")
    assert json.loads(key.read_text())["run_id"] == "run-b"
    release_file(archive, "funke", warc_file)
    assert not key.exists()


def test_every_warc_layout_gives_the_same_captures(corpus, tmp_path):
    """A member per record is read by member (bodies of left-out records skipped); a plain
    WARC, or one gzip member for the whole file, is read by FastWARC as it comes: the same
    pages come out, with offsets that lead to them."""
    import gzip
    import io
    from collections import Counter

    from warcio.archiveiterator import ArchiveIterator as WarcioIterator
    from warcio.warcwriter import WARCWriter

    from spiders.ccnews import SiteFilter, iter_captures
    from tests.ccnews_local import write_warc

    captures = [Capture(page.original_url, _at("2025-09-10T00:00:00") + timedelta(minutes=n),
                        page.html) for n, page in enumerate(corpus[:40])]
    wanted_hosts = {urlsplit(c.url).hostname for c in captures[::7]}
    wanted = SiteFilter(tuple(wanted_hosts)).matcher()
    expected = [c.url for c in captures if urlsplit(c.url).hostname in wanted_hosts]

    per_record = io.BytesIO()
    offsets = dict(zip((c.url for c in captures), write_warc(per_record, captures)))
    plain = io.BytesIO()  # the same records, uncompressed
    writer = WARCWriter(plain, gzip=False)
    for record in WarcioIterator(io.BytesIO(per_record.getvalue())):
        writer.write_record(record)
    one_member = gzip.compress(plain.getvalue())

    by_member_counts: Counter = Counter()
    by_member = list(iter_captures(io.BytesIO(per_record.getvalue()), wanted, by_member_counts))
    assert [c.url for c in by_member] == expected
    assert [c.offset for c in by_member] == [offsets[u] for u in expected]
    assert by_member_counts["records"] == len(captures)
    for data in (plain.getvalue(), one_member):
        counts: Counter = Counter()
        found = list(iter_captures(io.BytesIO(data), wanted, counts))
        assert [c.url for c in found] == expected
        assert [c.body for c in found] == [c.body for c in by_member]
        assert counts["records"] == len(captures)
    # In the plain file the offsets lead to the records too.
    for capture in iter_captures(io.BytesIO(plain.getvalue()), wanted):
        assert plain.getvalue()[capture.offset:capture.offset + 5] == b"WARC/"


def test_the_gzip_magic_at_the_very_end_of_a_file_starts_no_member():
    """The magic's three bytes can end a file by chance (a last member's size field): that is
    no member's start, not an IndexError that fails the whole file."""
    from spiders.ccnews import _member_head

    assert _member_head(bytearray(b"\x1f\x8b\x08"), 0) is None
    assert _member_head(b"..." + b"\x1f\x8b\x08\x00\x00", 3) is None


def test_a_capture_over_the_sites_max_page_bytes_is_left_out(corpus, tmp_path):
    """A crawl downloads no page over the site's max_page_bytes; a CC-NEWS capture over it
    is left out too (counted), not extracted or archived."""
    from spiders.ccnews import Scanner, ScanTarget, SiteFilter, Source, WarcFile
    from storage import Archive
    from tests.ccnews_local import write_warc

    page = next(p for p in corpus if urlsplit(p.original_url).hostname == SITE_HOSTS[0]
                and SINCE <= p.published.date() <= UNTIL)
    small = Capture(page.original_url, _at("2025-11-07T00:00:00"), page.html)
    big = Capture(page.original_url.replace(".html", "-big.html"), _at("2025-11-07T00:01:00"),
                  page.html + b"<!--" + b"x" * len(page.html) + b"-->")
    path = "crawl-data/CC-NEWS/2025/11/CC-NEWS-20251107000000-00001.warc.gz"
    (tmp_path / path).parent.mkdir(parents=True)
    with open(tmp_path / path, "wb") as stream:
        write_warc(stream, [small, big])
    target = ScanTarget("funke", SiteFilter(("morgenpost.de",)), SINCE, UNTIL,
                        max_page_bytes=len(page.html) + 100)
    archive = Archive.open(str(tmp_path / "archive"), run_id="scan")
    scanner = Scanner(archive, target, run_id="scan", work_dir=tmp_path / "work",
                      extraction_workers=1)
    try:
        scan = scanner.scan(Source(str(tmp_path)), WarcFile(path, _at("2025-11-07T00:00:00")))
    finally:
        scanner.close()
    assert scan.counts["kept"] == 2 and scan.counts["too_large"] == 1
    assert scan.counts["archived"] == 1 and scan.ok
    assert [json.loads(p.read_text())["url"] for p in (tmp_path / "archive").rglob("meta.json")] \
        == [small.url]
