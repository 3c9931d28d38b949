"""Incremental crawling through real crawls: a scheduled crawl asks the site and the archive
for what is new, not for what the site ever published (README, "How a crawl decides what to
fetch").

The local news site answers conditional requests for its sitemaps and feed (ETag), and
``publish`` adds articles as a publisher does; the crawls talk to moto's S3 server through a
proxy that counts their requests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from spiders.discovery_state import STATE_NAME
from spiders.stats import crawl_counts
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite, month_key
from tests.s3counter import S3Counter


@pytest.fixture
def pages(corpus):
    """Pages of three months or more, oldest first: the site's history, then what it
    publishes later."""
    chosen = sorted(corpus[:40], key=lambda p: p.published)
    assert len({month_key(p) for p in chosen}) >= 3
    return chosen


@pytest.fixture
def counted(s3_archive):
    """The test bucket behind a proxy that counts requests; env for the crawl subprocess."""
    host, port = urlsplit(s3_archive.endpoint).netloc.split(":")
    counter = S3Counter((host, int(port)), s3_archive.bucket, s3_archive.prefix).start()
    env = {**os.environ, **s3_archive.env, "AWS_ENDPOINT_URL": counter.url,
           "PYTHONPATH": str(REPO_ROOT)}
    yield counter, env
    counter.stop()


def _crawl(site: NewsSite, s3_archive, env, tmp_path, run_id: str, *extra: str, **overrides):
    report = crawl_site_subprocess(local_site_config(site, **overrides), s3_archive.url, env,
                                   tmp_path / "data", run_id, *extra)
    assert report["finish_reason"] == "finished"
    return report


def _site_requests(site: NewsSite) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for target in site.requests:
        path = urlsplit(target).path
        kind = ("robots" if path == "/robots.txt" else "index" if path == "/sitemap.xml"
                else "sitemap" if path.startswith("/sitemaps/") else "feed"
                if path == "/rss.xml" else "article" if site.page_for_path(path) else "other")
        kinds.setdefault(kind, []).append(path)
    return kinds


def _records(s3_archive) -> list[dict]:
    return [json.loads(s3_archive.get(k)) for k in s3_archive.listing() if k.endswith("/meta.json")]


def test_a_second_crawl_asks_site_and_archive_only_for_what_is_new(pages, s3_archive, counted,
                                                                    tmp_path):
    counter, env = counted
    history, new = pages[:-3], pages[-3:]
    site = NewsSite(history, feed_size=10).start()
    try:
        first = _crawl(site, s3_archive, env, tmp_path, "run-1")
        assert first["stats"]["newsarchive/archive/written"] == len(history)
        # A site with neither summary nor article: each listed article is new, and
        # fetched without a look-up.
        assert first["stats"]["newsarchive/discovery/new_by_summary"] == len(history)
        archive = Archive.open(s3_archive.url)
        state = archive.read_site_state("localnews", STATE_NAME)
        assert set(state["documents"]) == {f"{site.base_url}/sitemaps/{m}.xml"
                                           for m in {month_key(p) for p in history}} \
            | {f"{site.base_url}/rss.xml"}
        assert len(archive.url_summary("localnews")) >= len(history)

        site.publish(new)
        site.clear_requests()
        counter.reset()
        second = _crawl(site, s3_archive, env, tmp_path, "run-2")
    finally:
        site.stop()

    # The site: robots.txt, the index, the sitemaps of the months with new articles, the
    # feed (changed: new articles are at its top), and the new articles; no other sitemap.
    asked = _site_requests(site)
    changed_months = {month_key(p) for p in new}
    assert sorted(asked["sitemap"]) == sorted(f"/sitemaps/{m}.xml" for m in changed_months)
    assert asked["robots"] == ["/robots.txt"]  # once, for robots rules and sitemaps alike
    assert asked["index"] == ["/sitemap.xml"] and asked["feed"] == ["/rss.xml"]
    assert sorted(asked["article"]) == sorted(p.path for p in new)
    assert second["stats"]["newsarchive/discovery/sitemaps_unchanged"] == \
        len({month_key(p) for p in history} - changed_months)
    assert second["stats"]["newsarchive/archive/written"] == len(new)
    # What the run reports as discovered: the listings it read, and nothing else.
    assert crawl_counts(second["stats"])["discovered"] == \
        sum(1 for p in site.pages if month_key(p) in changed_months) + len(site.feed_pages)

    # The archive: no look-up for the archived articles the changed sitemaps and the feed
    # list (the summary settles them), a few requests for the state, and what storing each
    # new article costs (its look-up before fetching, its claims and objects): what the new
    # articles cost, not what the site ever published.
    listed = {p.path for p in site.pages if month_key(p) in changed_months} \
        | {p.path for p in site.feed_pages}
    assert second["stats"]["newsarchive/skipped/settled_by_summary"] == len(listed) - len(new)
    # A new article: no look-up before fetching (the summary, complete, knows it under none
    # of its URLs); its URL and its text claimed (2 PUTs, create-if-absent), its page and
    # text written, its record last (3 PUTs): 5 requests. Nothing else is asked per
    # article: the near-duplicate index is written once per run, whatever the number of
    # articles.
    assert second["stats"]["newsarchive/discovery/new_by_summary"] == len(new)
    # An article listed under one more URL after it was stored (the feed read after the
    # sitemap, with its own URL) then learns that URL: its record, which the crawl kept as
    # it stored it (no look-up), read and written again (a compare-and-swap). Whether that
    # happens depends on which listing the crawl reads first.
    late = [key for method, key in counter.keys
            if method == "PUT" and key.endswith("/meta.json")][len(new):]
    writes = [(m, k.split("/")[-1] if k.startswith("articles/") else k.split("/")[1])
              for m, k in counter.keys if k.startswith(("articles/", "_index/urls/",
                                                        "_index/content/"))]
    assert Counter(writes) == Counter({("PUT", "urls"): len(new), ("PUT", "content"): len(new),
                               ("PUT", "raw.html.gz"): len(new), ("PUT", "text.txt"): len(new),
                               ("PUT", "meta.json"): len(new) + len(late),
                               ("GET", "meta.json"): len(late)}), counter.keys
    near = {m: n for (m, p), n in counter.counts.items() if p == "_index/near/"}
    # A segment per month the new articles are dated in (more if storing them took longer
    # than the index waits to write what it holds); listings and reads of the months
    # their windows cover (not of the site's history).
    assert len(changed_months) <= near["PUT"] <= len(new)
    assert set(near) <= {"PUT", "LIST", "GET"}
    # (At most four months here, listed when first needed and at each flush before the last.)
    assert near["LIST"] <= 4 * near["PUT"] and near["GET"] <= near["LIST"]
    assert counter.count("LIST", "_index/sites/") == 1
    records = _records(s3_archive)
    assert len(records) == len(pages) == len({r["canonical_url"] for r in records})


def test_an_unchanged_site_costs_a_304_per_document(pages, s3_archive, counted, tmp_path):
    counter, env = counted
    site = NewsSite(pages, feed_size=10).start()
    try:
        first = _crawl(site, s3_archive, env, tmp_path, "run-1")
        listing = s3_archive.archive_listing()
        site.clear_requests()
        counter.reset()
        # Without lastmod in the index, each sitemap is asked for conditionally.
        site.add_route("/sitemap.xml", site.sitemap_index().replace("<lastmod>", "<x>")
                       .replace("</lastmod>", "</x>").encode(),
                       headers={"Content-Type": "application/xml"})
        second = _crawl(site, s3_archive, env, tmp_path, "run-2")
        conditional = [r for r in site.request_log if r.target.startswith(("/sitemaps/", "/rss"))]
    finally:
        site.stop()
    assert conditional and all(r.headers.get("If-None-Match") for r in conditional)
    assert second["stats"]["newsarchive/discovery/not_modified"] == len(conditional)
    assert not _site_requests(site).get("article")
    # A crawl that found nothing new writes nothing but its run manifest, and starts no
    # extraction worker (nor their forkserver: 40% of such a crawl's CPU).
    assert s3_archive.archive_listing() == listing
    assert counter.count("PUT") == 1 and counter.count("PUT", "runs/") == 1
    assert first["stats"]["newsarchive/extract/workers_started"] >= 1
    assert second["stats"]["newsarchive/extract/workers_started"] == 0


def test_full_reads_every_document_again(pages, s3_archive, counted, tmp_path):
    counter, env = counted
    site = NewsSite(pages, feed_size=10).start()
    try:
        _crawl(site, s3_archive, env, tmp_path, "run-1")
        site.clear_requests()
        full = _crawl(site, s3_archive, env, tmp_path, "run-2", "--full")
        full_requests = site.request_log
        site.clear_requests()
        # full_read_every_days = 0: every crawl is a full one.
        always = _crawl(site, s3_archive, env, tmp_path, "run-3", full_read_every_days=0)
        always_requests = site.request_log
    finally:
        site.stop()
    months = {f"/sitemaps/{m}.xml" for m in {month_key(p) for p in pages}}
    for report, log in ((full, full_requests), (always, always_requests)):
        documents = [r for r in log if r.target in months or r.target == "/rss.xml"]
        assert {r.target for r in documents} == months | {"/rss.xml"}
        assert not any("If-None-Match" in r.headers for r in documents)
        assert report["stats"]["newsarchive/discovery/full_read"] is True
        assert "newsarchive/discovery/sitemaps_unchanged" not in report["stats"]
        assert report["stats"].get("newsarchive/archive/written", 0) == 0


def test_an_article_that_failed_is_tried_again_though_its_sitemap_did_not_change(
        pages, s3_archive, counted, tmp_path):
    counter, env = counted
    history, new = pages[:-2], pages[-2:]
    site = NewsSite(history, feed_size=0).start()
    try:
        _crawl(site, s3_archive, env, tmp_path, "run-1", feeds=[])
        site.publish(new)
        # The first new article fails for a reason that may pass (503), then is served.
        # (Scrapy retries a 503 twice: RETRY_TIMES.)
        site.add_responses(new[0].path, [(503, b"busy", None)] * 3
                           + [(200, site._html(new[0]), None)])
        second = _crawl(site, s3_archive, env, tmp_path, "run-2", feeds=[])
        assert second["stats"]["newsarchive/archive/written"] == 1
        assert any(e["kind"] == "http_503" for e in second["errors"])
        site.clear_requests()
        third = _crawl(site, s3_archive, env, tmp_path, "run-3", feeds=[])
        asked = _site_requests(site)
    finally:
        site.stop()
    # The sitemap that listed it is read again, and only it; the article is fetched.
    assert asked["sitemap"] == [f"/sitemaps/{month_key(new[0])}.xml"]
    assert asked["article"] == [new[0].path]
    assert third["stats"]["newsarchive/archive/written"] == 1
    assert len(_records(s3_archive)) == len(pages)


def test_a_crawl_killed_during_discovery_is_followed_by_one_that_fetches_all_it_missed(
        pages, s3_archive, counted, tmp_path):
    counter, env = counted
    history, new = pages[:-6], pages[-6:]
    site = NewsSite(history, feed_size=0).start()
    try:
        _crawl(site, s3_archive, env, tmp_path, "run-1", feeds=[])
        site.publish(new)
        # The second crawl reads a changed sitemap and fetches two of its articles, then is
        # killed while another changed sitemap is still being read.
        months = sorted({month_key(p) for p in new})
        held = threading.Event()
        site.add_route(f"/sitemaps/{months[0]}.xml", site.month_sitemap(months[0]).encode(),
                       headers={"Content-Type": "application/xml"}, wait_for=held)
        site.hold_pages(after=2)
        from spiders.config import SiteConfig

        config = SiteConfig.model_validate(local_site_config(site, feeds=[]))
        data = tmp_path / "data"
        killed = subprocess.Popen(
            [sys.executable, "-m", "spiders.run", "--site-json", config.model_dump_json(),
             "--archive", s3_archive.url, "--run-id", "run-2", "--stats-file",
             str(data / "crawls" / "run-2.json"), "--data-dir", str(data),
             "--user-agent", "newsarchive-test", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (any(r.target == f"/sitemaps/{months[0]}.xml" for r in site.request_log)
                   and len(site.article_requests()) >= 3):
            assert time.monotonic() < deadline and killed.poll() is None, "crawl never got there"
            time.sleep(0.1)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        held.set()
        site.remove_route(f"/sitemaps/{months[0]}.xml")
        site.release_pages()
        fetched_before = {urlsplit(t).path for t in site.article_requests()}
        site.clear_requests()
        third = _crawl(site, s3_archive, env, tmp_path, "run-3", feeds=[])
    finally:
        site.stop()
    records = _records(s3_archive)
    # Every article archived once: what the killed crawl did not store is fetched now.
    assert len(records) == len(pages) == len({r["canonical_url"] for r in records})
    fetched_now = {urlsplit(t).path for t in site.article_requests()}
    assert fetched_now <= {p.path for p in new}
    assert fetched_now | fetched_before >= {p.path for p in new}
    assert third["stats"].get("newsarchive/archive/written", 0) == len(fetched_now) - \
        third["stats"].get("newsarchive/archive/duplicate", 0)


def test_the_summary_settles_only_what_it_knows(tmp_path):
    """A summary behind the index (a crawl died before writing its part) costs look-ups,
    never a skipped article; merging keeps each URL's latest capture."""
    from storage.summary import COMPACT_OVER, UrlSummary, summary_prefix, write_segment

    archive = Archive.open(str(tmp_path / "archive"))
    when = [datetime(2026, 1, d, tzinfo=timezone.utc) for d in range(1, 4)]
    for number in range(COMPACT_OVER + 1):
        write_segment(archive.backend, "site", f"run-{number}",
                      {f"https://x.test/{number}": when[0], "https://x.test/shared": when[number % 3]})
    # A segment that is not one is skipped, with a warning.
    archive.backend.put(summary_prefix("site") + "junk.bin", b"not a summary")
    summary = archive.url_summary("site")
    assert summary.captured_at(["https://x.test/0", "https://x.test/shared",
                                "https://x.test/new"]) == [when[0], when[2], None]
    # More than COMPACT_OVER segments were merged into one: the next crawl reads two.
    assert len(list(archive.backend.iter_keys(summary_prefix("site")))) == 2
    again = UrlSummary.load(archive.backend, "site")
    assert len(again) == len(summary) == COMPACT_OVER + 2


def test_the_summary_is_complete_only_when_every_segment_was_read(tmp_path):
    """Only a summary made of every segment, each read, may call a URL it does not know new,
    or a site with neither segment nor article (its first crawl): a site with articles but
    no segment (archived before summaries were kept) and a segment that cannot be read leave
    the crawl to look URLs up."""
    from storage.summary import summary_prefix, write_segment

    archive = Archive.open(str(tmp_path / "archive"))
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert archive.url_summary("site").complete
    archive.backend.put("articles/site/2025/12/31/an-article/meta.json", b"{}")
    assert not archive.url_summary("site").complete
    assert archive.url_summary("other").complete
    write_segment(archive.backend, "site", "run-1", {"https://x.test/1": when})
    assert archive.url_summary("site").complete
    archive.backend.put(summary_prefix("site") + "junk.bin", b"not a summary")
    assert not archive.url_summary("site").complete


def test_a_runs_notes_are_written_as_it_goes(tmp_path):
    """A run writes its URLs as a segment every ``every`` of them, and the rest when told:
    a run killed on the way leaves at most ``every`` URLs out of the summary."""
    from storage.summary import UrlSummary, summary_prefix

    archive = Archive.open(str(tmp_path / "archive"))
    notes = archive.summary_notes("site", "run-1")
    notes.every = 3
    early, late = (datetime(2026, 1, d, tzinfo=timezone.utc) for d in (1, 2))
    urls = [f"https://x.test/{n}" for n in range(7)]
    for url in urls:
        notes.note([url], early)
    notes.note([urls[0]], late)  # noted again, captured later: the later time is kept
    segments = sorted(archive.backend.iter_keys(summary_prefix("site")))
    assert [key.rsplit("/", 1)[-1] for key in segments] == ["run-1-0.bin", "run-1-1.bin"]
    assert len(notes) == 2  # urls[6], and urls[0] again
    assert all(UrlSummary.load(archive.backend, "site").captured_at(urls[:6]))
    notes.write()
    assert len(notes) == 0 and notes.write() is None
    summary = UrlSummary.load(archive.backend, "site")
    assert summary.captured_at(urls) == [late] + [early] * 6


def test_a_url_the_summary_missed_is_fetched_and_found_archived(pages, s3_archive, counted,
                                                              tmp_path):
    """A complete summary that lacks an archived URL (its run was killed between two
    writes) costs a fetch of that page, which then turns out archived: nothing is written
    twice, and the summary learns the URL."""
    from storage.summary import UrlSummary, summary_prefix, write_segment

    counter, env = counted
    site = NewsSite(pages, feed_size=0).start()
    try:
        _crawl(site, s3_archive, env, tmp_path, "run-1", feeds=[])
        archive = Archive.open(s3_archive.url)
        records = _records(s3_archive)
        missed = next(r for r in records if r["url"] == site.base_url + pages[0].path)
        # The summary as a run killed before noting that article leaves it.
        kept = {url: datetime.fromisoformat(r["fetched_at"]) for r in records
                if r is not missed for url in (r["canonical_url"], *r["aliases"])}
        for key in list(archive.backend.iter_keys(summary_prefix("localnews"))):
            archive.backend.delete(key)
        write_segment(archive.backend, "localnews", "run-1-0", kept)
        listing = {k for k in s3_archive.listing() if k.startswith("articles/")}
        site.clear_requests()
        second = _crawl(site, s3_archive, env, tmp_path, "run-2", "--full", feeds=[])
    finally:
        site.stop()
    assert [urlsplit(t).path for t in site.article_requests()] == [pages[0].path]
    assert second["stats"]["newsarchive/discovery/new_by_summary"] == 1
    assert second["stats"]["newsarchive/archive/duplicate"] == 1
    assert "newsarchive/archive/written" not in second["stats"]
    assert {k for k in s3_archive.listing() if k.startswith("articles/")} == listing
    assert UrlSummary.load(archive.backend, "localnews").captured_at(
        [missed["canonical_url"]]) != [None]


def test_two_merges_at_once_lose_no_url(tmp_path):
    """Two crawls merging the same segments at once: each deletes only what it read, so
    every URL stays in some segment."""
    from storage.summary import UrlSummary, summary_prefix, write_segment

    archive = Archive.open(str(tmp_path / "archive"))
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for number in range(5):
        write_segment(archive.backend, "site", f"run-{number}", {f"https://x.test/{number}": when})
    # The second merge starts before the first, and reads a segment written after it listed.
    UrlSummary.load(archive.backend, "site", compact_over=2)
    write_segment(archive.backend, "site", "run-late", {"https://x.test/late": when})
    UrlSummary.load(archive.backend, "site", compact_over=1)
    summary = UrlSummary.load(archive.backend, "site")
    urls = [f"https://x.test/{n}" for n in (*range(5), "late")]
    assert all(summary.captured_at(urls))
    assert len(list(archive.backend.iter_keys(summary_prefix("site")))) == 1


def test_two_crawls_at_once_on_two_data_dirs_archive_each_new_article_once(
        pages, s3_archive, counted, tmp_path):
    counter, env = counted
    history, new = pages[:-8], pages[-8:]
    site = NewsSite(history, feed_size=5).start()
    try:
        _crawl(site, s3_archive, env, tmp_path, "run-1")
        site.publish(new)
        from spiders.config import SiteConfig

        config = SiteConfig.model_validate(local_site_config(site))
        crawls = []
        for number in (2, 3):
            data = tmp_path / f"data-{number}"
            crawls.append((data / "crawls" / f"run-{number}.json", subprocess.Popen(
                [sys.executable, "-m", "spiders.run", "--site-json", config.model_dump_json(),
                 "--archive", s3_archive.url, "--run-id", f"run-{number}", "--stats-file",
                 str(data / "crawls" / f"run-{number}.json"), "--data-dir", str(data),
                 "--user-agent", "newsarchive-test", "--log-level", "WARNING"],
                cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)))
        for _, process in crawls:
            assert process.wait(300) == 0, process.stderr.read()[-3000:]
    finally:
        site.stop()
    reports = [json.loads(Path(stats).read_text()) for stats, _ in crawls]
    records = _records(s3_archive)
    assert len(records) == len(pages) == len({r["canonical_url"] for r in records})
    assert sum(r["stats"].get("newsarchive/archive/written", 0) for r in reports) == len(new)


def test_the_discovery_state_records_only_complete_reads():
    from spiders.discovery_state import DiscoveryLog, DiscoveryState, DocumentRead

    now = datetime.now(timezone.utc)
    old = DocumentRead('"a"', None, datetime(2026, 1, 1, tzinfo=timezone.utc), now)
    state = DiscoveryState({"https://x.test/s1.xml": old, "https://x.test/s2.xml": old,
                            "https://x.test/gone.xml": old}, full_read_at=now)
    assert not state.full_read_due(7, now) and state.full_read_due(0, now)
    assert DiscoveryState().full_read_due(7, now)
    assert state.unchanged("https://x.test/s1.xml", old.lastmod)
    assert not state.unchanged("https://x.test/s1.xml", None)  # no lastmod: ask
    assert not state.unchanged("https://x.test/new.xml", old.lastmod)

    log = DiscoveryLog(state, full=False)
    assert log.conditional_headers("https://x.test/s1.xml") == {"If-None-Match": '"a"'}
    assert log.skip_unchanged("https://x.test/s2.xml", old.lastmod)
    newer = datetime(2026, 2, 1, tzinfo=timezone.utc)
    log.read("https://x.test/s1.xml", '"b"', None, newer)
    log.read("https://x.test/s3.xml", '"c"', None, newer)
    after = log.next_state(unfinished={"https://x.test/s3.xml"})
    # s1 read anew; s2 unchanged; s3 had a failed article: not recorded; gone.xml no longer
    # listed: forgotten.
    assert after.documents["https://x.test/s1.xml"].lastmod == newer
    assert after.documents["https://x.test/s2.xml"] == old
    assert set(after.documents) == {"https://x.test/s1.xml", "https://x.test/s2.xml"}
    assert DiscoveryState.from_json(after.to_json()) == after
    # A full read asks unconditionally and skips nothing.
    full = DiscoveryLog(state, full=True)
    assert full.conditional_headers("https://x.test/s1.xml") == {}
    assert not full.skip_unchanged("https://x.test/s1.xml", old.lastmod)
