"""Dedup and versions through real crawls: Scrapy subprocesses crawl local news sites into
moto S3 and the bucket is read back with boto3.

- one article reached by its plain URL (sitemap), a tracking URL (feed), an AMP copy and a
  redirect (a section front) is archived once, with every one of those URLs as an alias;
- a syndicated copy on a second site is archived flagged ``near_duplicate_of``;
- an article changed after its first capture, re-listed with a newer ``<lastmod>``, becomes
  a second version with the first kept;
- a re-run writes no object.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

import pytest

from storage import Archive, canonicalize_url
from storage.dedup import NEAR_DUPLICATE_JACCARD, jaccard, shingles
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import SITEMAP_NS, XML_TYPE, CorpusPage, NewsSite, load_corpus


def crawl(site_entry: dict, archive_url: str, env: dict, tmp_path, run_id: str) -> dict:
    report = crawl_site_subprocess(site_entry, archive_url, env, tmp_path / "data", run_id)
    assert report["finish_reason"] == "finished"
    assert not report["stats"].get("newsarchive/errors/storage"), report["errors"]
    return report


def sitemap(entries: list[tuple[str, datetime]]) -> bytes:
    lines = [f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="{SITEMAP_NS}">']
    lines += [f"<url><loc>{escape(url)}</loc><lastmod>{when.isoformat(timespec='seconds')}"
              "</lastmod></url>" for url, when in entries]
    return ("\n".join(lines) + "</urlset>").encode()


def story_paragraph(page: CorpusPage) -> str | None:
    """A body paragraph of the page that appears verbatim in its HTML, to edit copies by."""
    truth = json.loads(page.truth.read_text(encoding="utf-8"))
    html = page.html.decode("utf-8", errors="replace")
    for section in (truth.get("body") or {}).get("sections", []):
        for paragraph in section.get("paragraphs", []):
            # Once, and as the text of an element (not inside a script's JSON).
            if len(paragraph) > 80 and html.count(paragraph) == html.count(f">{paragraph}") == 1:
                return paragraph
    return None


@pytest.fixture(scope="module")
def english_pages() -> list[CorpusPage]:
    pages = [p for p in load_corpus() if p.original_url.startswith("https://apnews.com")
             or "/uk/" in str(p.file) or "/us/" in str(p.file)]
    pages = [p for p in pages if story_paragraph(p)]
    assert len(pages) >= 4
    return pages[:4]


@pytest.fixture
def env(s3_archive) -> dict:
    import os
    return {**os.environ, **s3_archive.env, "PYTHONPATH": str(REPO_ROOT)}


def records(s3_archive) -> list[dict]:
    return [json.loads(s3_archive.get(k)) for k in s3_archive.listing() if k.endswith("/meta.json")]


def test_one_article_under_four_urls_is_archived_once(english_pages, s3_archive, env, tmp_path):
    with NewsSite(english_pages[:3]) as site:
        story = english_pages[0]
        plain = site.url_for(story)
        amp = f"{site.base_url}/amp{story.path}"
        redirect = f"{site.base_url}/go/to-the-story-{story.path.strip('/').replace('/', '-')}"
        site.add_route(f"/amp{story.path}", story.html)  # served too, should it be fetched
        site.add_route(redirect.removeprefix(site.base_url), b"", status=301,
                       headers={"Location": plain, "Content-Type": "text/html"})
        front = "".join(f'<a href="{u}">x</a>' for u in (amp, redirect))
        site.add_route("/world", f"<html><body>{front}</body></html>".encode())
        # The front's links are all articles; say so rather than rely on their shape.
        entry = local_site_config(site, start_urls=[f"{site.base_url}/world"],
                                  article_pattern="/")

        report = crawl(entry, s3_archive.url, env, tmp_path, "run-1")
        archived = records(s3_archive)
        assert len(archived) == 3
        assert report["stats"]["newsarchive/archive/written"] == 3
        (record,) = [r for r in archived if r["canonical_url"] == canonicalize_url(plain)]
        assert {site.feed_link(story), amp, redirect} <= set(record["aliases"])
        assert plain not in record["aliases"]  # the canonical URL is not its own alias
        # Each of them now leads to the record, so no crawl fetches the article again.
        archive = Archive.open(s3_archive.url)
        for url in (site.feed_link(story), amp, redirect):
            assert archive.lookup(canonicalize_url(url)).id == record["id"]

        # The re-run: nothing fetched, nothing written.
        before = s3_archive.archive_listing()
        site.clear_requests()
        again = crawl(entry, s3_archive.url, env, tmp_path, "run-2")
        assert s3_archive.archive_listing() == before
        assert site.article_requests() == []
        assert not any(k.startswith("newsarchive/archive/") for k in again["stats"])


def _syndicated(page: CorpusPage) -> bytes:
    """The page as a second site runs it a day later: the wire's line added to one
    paragraph, every date of the page one day on."""
    paragraph = story_paragraph(page)
    html = page.html.decode("utf-8")
    day = page.published.date()
    html = html.replace(day.isoformat(), (day + timedelta(days=1)).isoformat())
    return html.replace(paragraph, paragraph + " This story was first published by a partner.",
                        1).encode("utf-8")


@pytest.mark.parametrize("order", ["original first", "copy first"])
def test_syndicated_copy_on_a_second_site_is_a_near_duplicate(english_pages, s3_archive, env,
                                                             tmp_path, order):
    """Whichever site is crawled first, each keeps its article, and the copy points to the
    original (published first)."""
    with NewsSite(english_pages[:2], feed_size=0) as site:
        original = english_pages[0]
        copy_path = "/partner/world/" + original.path.strip("/").replace("/", "-")
        site.add_route(copy_path, _syndicated(original))
        site.add_route("/partner/sitemap.xml", sitemap(
            [(site.base_url + copy_path, original.published)]), headers={"Content-Type": XML_TYPE})
        first = local_site_config(site, name="publisher", feeds=[])
        second = local_site_config(site, name="partner", feeds=[],
                                   sitemaps=[f"{site.base_url}/partner/sitemap.xml"])
        if order == "copy first":
            first, second = second, first
        crawl(first, s3_archive.url, env, tmp_path, "run-a")
        report = crawl(second, s3_archive.url, env, tmp_path, "run-b")
        source_url = canonicalize_url(site.url_for(original))

    by_site = {}
    for record in records(s3_archive):
        by_site.setdefault(record["site"], []).append(record)
    (copy,) = by_site["partner"]
    (source,) = [r for r in by_site["publisher"] if r["canonical_url"] == source_url]
    archive = Archive.open(s3_archive.url)
    texts = [archive.read_text(archive.find(r["id"])) for r in (source, copy)]
    assert texts[0] != texts[1]
    assert jaccard(shingles(texts[0]), shingles(texts[1])) >= NEAR_DUPLICATE_JACCARD
    assert copy["published"] > source["published"]
    assert copy["near_duplicate_of"] == source["id"]
    assert source["near_duplicate_of"] is None
    assert all(r["near_duplicate_of"] is None for r in by_site["publisher"])
    if order == "original first":
        assert report["stats"]["newsarchive/archive/near_duplicate"] == 1
    else:  # the copy was archived first: its record was corrected by the original's crawl
        assert "newsarchive/archive/near_duplicate" not in report["stats"]


def test_changed_article_becomes_a_second_version(english_pages, s3_archive, env, tmp_path):
    with NewsSite(english_pages[:2], feed_size=0) as site:
        story = english_pages[1]
        url = site.url_for(story)

        def serve_sitemap(lastmod: datetime) -> None:
            site.add_route("/news-sitemap.xml", sitemap(
                [(site.url_for(p), lastmod if p is story else p.published) for p in site.pages]),
                headers={"Content-Type": XML_TYPE})

        serve_sitemap(story.published)
        entry = local_site_config(site, feeds=[], sitemaps=[f"{site.base_url}/news-sitemap.xml"])
        crawl(entry, s3_archive.url, env, tmp_path, "run-1")
        (first,) = [r for r in records(s3_archive) if r["canonical_url"] == canonicalize_url(url)]
        assert len(first["versions"]) == 1

        # The publisher updates the story and its sitemap says so.
        site.add_route(story.path, _syndicated(story))
        # The sitemap's dates have whole seconds: the update is dated the first whole second
        # after the first crawl fetched the story (later than that capture), and the second
        # crawl starts once the clock has passed it (its capture is then no earlier than the
        # update, and the third crawl has nothing to fetch again).
        first_fetched = datetime.fromisoformat(first["fetched_at"])
        updated = first_fetched.replace(microsecond=0) + timedelta(seconds=1)
        serve_sitemap(updated)
        time.sleep(max(0.0, (updated - datetime.now(timezone.utc)).total_seconds()))
        site.clear_requests()
        report = crawl(entry, s3_archive.url, env, tmp_path, "run-2")
        assert site.article_requests() == [story.path]  # only the updated one is fetched
        assert report["stats"]["newsarchive/archive/version"] == 1

        metas = [k for k in s3_archive.listing() if k.endswith("/meta.json")]
        assert len(metas) == 2  # still one record per article
        (record,) = [r for r in records(s3_archive) if r["id"] == first["id"]]
        assert [v["content_sha256"] for v in record["versions"]] == [
            first["content_sha256"], record["content_sha256"]]
        assert record["content_sha256"] != first["content_sha256"]
        assert record["meta_key"] == first["meta_key"]
        # The first version stays where it was, next to the second.
        archive = Archive.open(s3_archive.url)
        old, new = record["versions"]
        assert old["raw_key"] == first["raw_key"] and old["text_key"] == first["text_key"]
        assert archive.read_text(archive.find(first["id"])).count("first published by a partner") == 1
        old_text = s3_archive.get(old["text_key"]).decode()
        assert "first published by a partner" not in old_text
        assert b"first published by a partner" in archive.read_raw(archive.find(first["id"]))

        # Nothing changed since: the next run writes nothing.
        before = s3_archive.archive_listing()
        site.clear_requests()
        crawl(entry, s3_archive.url, env, tmp_path, "run-3")
        assert site.article_requests() == []
        assert s3_archive.archive_listing() == before
