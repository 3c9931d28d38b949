"""The archive a crawl leaves in moto S3, and that it loses nothing: WARC files, the Parquet
catalog, run manifests, reprocessing without fetching, an S3 outage in the middle of a
crawl, and a crawl killed with SIGKILL."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from warcio.archiveiterator import ArchiveIterator

from storage import Archive, canonicalize_url
from storage.catalog import read_catalog
from storage.near_index import _parse_segment, _read_journal
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import HOLD_LIMIT_SECONDS, NewsSite
from tests.tcpproxy import TcpProxy


@pytest.fixture
def env(s3_archive) -> dict:
    return {**os.environ, **s3_archive.env, "PYTHONPATH": str(REPO_ROOT)}


def records(s3_archive) -> list[dict]:
    return [json.loads(s3_archive.get(k)) for k in s3_archive.listing() if k.endswith("/meta.json")]


def assert_archived_once_and_whole(s3_archive, site: NewsSite) -> list[dict]:
    """Every page of the site has exactly one complete record, and every article object
    sits in a folder whose record names it."""
    listing = s3_archive.listing()
    found = records(s3_archive)
    assert len(found) == len(site.pages)
    assert set(Counter(r["canonical_url"] for r in found).values()) == {1}
    # Each page is some record's (a page's rel=canonical may differ from where it is served).
    known = {canonicalize_url(u) for r in found for u in (r["url"], r["canonical_url"], *r["aliases"])}
    assert {canonicalize_url(site.url_for(p)) for p in site.pages} <= known
    for record in found:
        assert record["raw_key"] in listing and record["text_key"] in listing
    folders = {r["meta_key"].rsplit("/", 1)[0] for r in found}
    article_objects = [k for k in listing if "/articles/" in f"/{k}"]
    assert {k.rsplit("/", 1)[0] for k in article_objects} == folders
    assert len(article_objects) == 3 * len(found)
    return found


def test_a_crawl_leaves_warc_catalog_and_manifest(corpus, s3_archive, env, tmp_path):
    pages = corpus[:12]
    with NewsSite(pages, feed_size=0) as site:
        broken = f"{site.base_url}/news/this-story-was-removed"
        site.add_route("/extra-sitemap.xml", (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{broken}</loc></url></urlset>").encode(),
            headers={"Content-Type": "application/xml"})
        entry = local_site_config(site, feeds=[], sitemaps=[
            f"{site.base_url}/robots.txt", f"{site.base_url}/extra-sitemap.xml"])
        report = crawl_site_subprocess(entry, s3_archive.url, env, tmp_path / "data", "run-1")
        assert report["finish_reason"] == "finished"
        found = assert_archived_once_and_whole(s3_archive, site)
    listing = s3_archive.listing()

    # WARC: a response record for every archived article, where its record says.
    warc_keys = [k for k in listing if k.startswith("news/warc/localnews/")]
    assert warc_keys and all(k.endswith(".warc.gz") for k in warc_keys)
    responses = {}
    for key in warc_keys:
        for rec in ArchiveIterator(io.BytesIO(s3_archive.get(key))):
            if rec.rec_type == "response":
                responses[rec.rec_headers.get_header("WARC-Target-URI")] = rec
    for record in found:
        assert record["url"] in responses
        data = s3_archive.get(record["warc_key"])
        at_offset = next(iter(ArchiveIterator(io.BytesIO(data[record["warc_offset"]:]))))
        assert at_offset.rec_type == "response"
        assert at_offset.rec_headers.get_header("WARC-Target-URI") == record["url"]
        assert at_offset.content_stream().read() == Archive.open(s3_archive.url).read_raw(
            Archive.open(s3_archive.url).find(record["id"]))

    # The catalog: one row per record, text included, read in place with pyarrow.
    table = read_catalog(s3_archive.url)
    assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in found)
    archive = Archive.open(s3_archive.url)
    row = table.to_pylist()[0]
    assert row["text"] == archive.read_text(archive.find(row["id"]))

    # The run manifest: counts and the run's errors.
    (manifest_key,) = [k for k in listing if k.startswith("news/runs/localnews/")]
    assert manifest_key.endswith("/run-1.json")
    manifest = json.loads(s3_archive.get(manifest_key))
    assert manifest["run_id"] == "run-1" and manifest["site"] == "localnews"
    assert manifest["counts"]["archived"] == len(found) == len(pages)
    assert manifest["errors_by_kind"] == {"http_404": 1}
    assert manifest["errors"] == [{"url": broken, "kind": "http_404", "reason": "HTTP 404"}]
    assert manifest["started_at"] <= manifest["finished_at"]
    # Nothing waits locally once the run is over.
    assert not list((tmp_path / "data" / "pending").rglob("*.*"))


def test_reprocess_rewrites_records_without_fetching(corpus, s3_archive, env, tmp_path):
    with NewsSite(corpus[:6], feed_size=0) as site:
        entry = local_site_config(site, feeds=[])
        crawl_site_subprocess(entry, s3_archive.url, env, tmp_path / "data", "run-1")
        # The records as an older extractor left them: another version, a worse title.
        client = s3_archive.client
        for key in [k for k in s3_archive.listing() if k.endswith("/meta.json")]:
            record = json.loads(s3_archive.get(key))
            record["extractor"]["version"] = "0-old"
            record["title"] = "(untitled)"
            client.put_object(Bucket=s3_archive.bucket, Key=key, Body=json.dumps(record).encode())
        before = {r["id"]: r for r in records(s3_archive)}
        site.clear_requests()

        done = subprocess.run(
            [sys.executable, "-m", "flows", "reprocess", "--archive", s3_archive.url],
            cwd=tmp_path, env={**env, "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data")},
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert site.requests == []  # nothing fetched

    after = {r["id"]: r for r in records(s3_archive)}
    assert set(after) == set(before)
    for rid, record in after.items():
        assert record["extractor"]["version"] != "0-old"
        assert record["title"] != "(untitled)"
        assert [v["extractor"].split("/", 1)[1] for v in record["versions"]][-1] == record["extractor"]["version"]
        assert len(record["versions"]) == len(before[rid]["versions"]) + 1
        assert record["raw_key"] == before[rid]["raw_key"]  # the raw page is not copied
    assert "6" in done.stdout.split()  # six records rewritten
    # Running it again changes nothing.
    listing = s3_archive.listing()
    again = subprocess.run(
        [sys.executable, "-m", "flows", "reprocess", "--archive", s3_archive.url],
        cwd=tmp_path, env={**env, "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {k: v for k, v in s3_archive.listing().items() if "/catalog/" not in f"/{k}"} == {
        k: v for k, v in listing.items() if "/catalog/" not in f"/{k}"}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("archive_back", ["during-the-crawl", "after-the-crawl"])
def test_an_s3_outage_mid_crawl_loses_nothing(corpus, s3_archive, moto_endpoint, tmp_path,
                                              archive_back):
    """The archive goes away once the first pages are stored. Back while the crawl still
    runs, it takes what waited in the crawl's spool from the crawl itself; back only after
    the crawl ended, from the next crawl. Either way every page is archived once."""
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port)).start()
    env = {**os.environ, **s3_archive.env, "AWS_ENDPOINT_URL": proxy.url,
           "AWS_MAX_ATTEMPTS": "2", "PYTHONPATH": str(REPO_ROOT)}
    spool = tmp_path / "data" / "pending" / "localnews" / "run-1" / "spool"
    crawl_may_end = threading.Event()
    with NewsSite(corpus[:30], feed_size=0) as site:
        # The site answers five pages, then holds the rest until the archive is away; and the
        # crawl cannot end before the test lets it: a sitemap it reads (that lists nothing) is
        # answered only then.
        site.hold_pages(after=5)
        site.add_route("/last-sitemap.xml", (
            b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"</urlset>"), headers={"Content-Type": "application/xml"},
            wait_for=crawl_may_end)
        entry = local_site_config(site, feeds=[], concurrent_requests=2,
                                  sitemaps=[f"{site.base_url}/robots.txt",
                                            f"{site.base_url}/last-sitemap.xml"],
                                  download_timeout=HOLD_LIMIT_SECONDS)
        stats_file = tmp_path / "data" / "crawls" / "run-1.json"
        from spiders.config import SiteConfig
        crawl = subprocess.Popen(
            [sys.executable, "-m", "spiders.run", "--site-json",
             SiteConfig.model_validate(entry).model_dump_json(), "--archive", s3_archive.url,
             "--run-id", "run-1", "--stats-file", str(stats_file),
             "--data-dir", str(tmp_path / "data"), "--user-agent", "t", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=env)
        try:
            _wait_for(lambda: len(records(s3_archive)) == 5, 120, "the first articles")
            proxy.cut()
            site.release_pages()  # the other 25 are fetched while the archive is away
            if archive_back == "during-the-crawl":
                _wait_for(lambda: any(spool.glob("*.json")), 120, "a page kept in the spool")
                proxy.restore()
            crawl_may_end.set()
            assert crawl.wait(timeout=300) == 0
        finally:
            site.release_pages()
            crawl_may_end.set()
            crawl.kill()
            proxy.stop()
        report = json.loads(stats_file.read_text())
        stats = report["stats"]
        assert stats.get("newsarchive/archive/spooled", 0) > 0  # the outage was felt
        if archive_back == "during-the-crawl":
            assert stats.get("newsarchive/spool/left", 0) == 0  # the crawl stored them
            assert stats.get("newsarchive/spool/flushed", 0) > 0
        else:
            assert stats["newsarchive/spool/left"] > 0  # the crawl ended with them waiting
            again = crawl_site_subprocess(entry, s3_archive.url,
                                          {**env, "AWS_ENDPOINT_URL": moto_endpoint},
                                          tmp_path / "data", "run-2")
            assert again["stats"]["newsarchive/recovered_runs"] == 1
        assert_archived_once_and_whole(s3_archive, site)
    assert not list((tmp_path / "data" / "pending").rglob("*.json"))


def _indexed(s3_archive) -> set[str]:
    """The ids of the articles in the bucket's near-duplicate index segments."""
    found = set()
    for key in s3_archive.listing():
        if key.startswith(f"{s3_archive.prefix}/_index/near/"):
            rows, _ = _parse_segment(s3_archive.get(key))
            found.update(bytes(row).ljust(12, b"\0").hex() for row in rows["id"])
    return found


def _journalled(directory) -> set[str]:
    """The ids of the articles a crawl's near-duplicate journal holds."""
    return {entry.id for path in sorted(directory.glob("*.journal"))
            for entry, _ in _read_journal(path)}


def test_a_crawl_killed_half_way_is_completed_by_the_next(corpus, s3_archive, tmp_path):
    env = {**os.environ, **s3_archive.env, "PYTHONPATH": str(REPO_ROOT)}
    with NewsSite(corpus[:40], feed_size=0) as site:
        # Ten pages, then the site holds the rest: the crawl is killed half way, however fast.
        site.hold_pages(after=10)
        entry = local_site_config(site, feeds=[], concurrent_requests=2,
                                  download_timeout=HOLD_LIMIT_SECONDS)
        from spiders.config import SiteConfig
        crawl = subprocess.Popen(
            [sys.executable, "-m", "spiders.run", "--site-json",
             SiteConfig.model_validate(entry).model_dump_json(), "--archive", s3_archive.url,
             "--run-id", "run-killed", "--stats-file", str(tmp_path / "killed.json"),
             "--data-dir", str(tmp_path / "data"), "--user-agent", "t", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=env)
        try:
            _wait_for(lambda: len(records(s3_archive)) == 10, 120, "ten articles")
            # ... and their near-duplicate index entries, which follow each record by a few
            # statements: journalled in the workspace, or written by a flush.
            _wait_for(lambda: len(_indexed(s3_archive) | _journalled(
                tmp_path / "data" / "pending" / "localnews" / "run-killed" / "near")) >= 10,
                120, "ten index entries")
        finally:
            crawl.send_signal(signal.SIGKILL)
            crawl.wait(timeout=30)
            site.release_pages()
        # No torn record: every record that exists has its raw page and text.
        listing = s3_archive.listing()
        partial = records(s3_archive)
        assert len(partial) == 10
        for record in partial:
            assert record["raw_key"] in listing and record["text_key"] in listing

        assert (tmp_path / "data" / "pending" / "localnews" / "run-killed").is_dir()
        report = crawl_site_subprocess(entry, s3_archive.url, env, tmp_path / "data", "run-next")
        assert report["finish_reason"] == "finished"
        assert report["stats"]["newsarchive/recovered_runs"] == 1  # the killed run's leftovers
        found = assert_archived_once_and_whole(s3_archive, site)
        # The killed run's WARC file was finished and stored by the next crawl: every
        # record's response can be found where the record says.
        for record in found:
            data = s3_archive.get(record["warc_key"])
            rec = next(iter(ArchiveIterator(io.BytesIO(data[record["warc_offset"]:]))))
            assert rec.rec_headers.get_header("WARC-Target-URI") == record["url"]
        # So were its near-duplicate index entries, which it held for its next write when it
        # was killed: each of its articles is in the index, where near copies find it.
        assert {record["id"] for record in partial} <= _indexed(s3_archive)
    assert not list((tmp_path / "data" / "pending").rglob("*.json"))
