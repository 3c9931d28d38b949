"""Tests for the local news site, over real HTTP against a started server."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.newssite import CorpusPage, NewsSite, load_corpus

SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
FEED_SIZE = 7


@pytest.fixture(scope="module")
def corpus() -> list[CorpusPage]:
    pages = load_corpus()
    if not pages:
        pytest.skip("corpus is empty")
    return pages


@pytest.fixture(scope="module")
def site(corpus: list[CorpusPage]) -> Iterator[NewsSite]:
    with NewsSite(corpus, feed_size=FEED_SIZE) as running:
        yield running


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a request; HTTP errors are answers, not failures."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_corpus_loads_with_aware_dates_and_distinct_paths(corpus: list[CorpusPage]) -> None:
    assert len({page.path for page in corpus}) == len(corpus)
    for page in corpus:
        assert page.published.tzinfo is not None
        assert page.path.startswith("/")
        assert page.file.name.endswith(".html.gz")


def test_every_page_served_byte_identical(site: NewsSite) -> None:
    for page in site.pages:
        status, headers, body = fetch(site.url_for(page))
        assert status == 200, page.original_url
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert body == gzip.decompress(page.file.read_bytes()), page.original_url
        assert int(headers["Content-Length"]) == len(body)
        assert parsedate_to_datetime(headers["Last-Modified"]) == page.published.replace(
            microsecond=0
        )


def test_page_matched_without_its_query(site: NewsSite) -> None:
    page = next(p for p in site.pages if p.query)
    status, _, body = fetch(f"{site.base_url}{page.path}?other=1")
    assert status == 200
    assert body == page.html


def test_head_sends_headers_without_body(site: NewsSite) -> None:
    page = site.pages[0]
    status, headers, body = fetch(site.url_for(page), method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) == len(page.html)


def test_robots_points_at_sitemap_index(site: NewsSite) -> None:
    status, _, body = fetch(f"{site.base_url}/robots.txt")
    assert status == 200
    lines = body.decode().splitlines()
    assert "User-agent: *" in lines
    assert "Allow: /" in lines
    assert f"Sitemap: {site.base_url}/sitemap.xml" in lines


def test_sitemaps_cover_exactly_all_pages(site: NewsSite) -> None:
    status, _, body = fetch(f"{site.base_url}/sitemap.xml")
    assert status == 200
    index = ET.fromstring(body)
    assert index.tag == f"{SM}sitemapindex"
    entries = index.findall(f"{SM}sitemap")
    assert entries

    locs: list[str] = []
    for entry in entries:
        sitemap_url = entry.findtext(f"{SM}loc")
        assert sitemap_url is not None
        assert sitemap_url.startswith(f"{site.base_url}/sitemaps/")
        index_lastmod = datetime.fromisoformat(entry.findtext(f"{SM}lastmod") or "")
        assert index_lastmod.tzinfo is not None

        status, _, month_body = fetch(sitemap_url)
        assert status == 200
        urlset = ET.fromstring(month_body)
        assert urlset.tag == f"{SM}urlset"
        lastmods = []
        for url in urlset.findall(f"{SM}url"):
            locs.append(url.findtext(f"{SM}loc") or "")
            lastmods.append(datetime.fromisoformat(url.findtext(f"{SM}lastmod") or ""))
        assert lastmods
        assert max(lastmods) == index_lastmod

    assert len(locs) == len(set(locs))
    assert set(locs) == {site.url_for(page) for page in site.pages}


def test_unknown_month_sitemap_is_404(site: NewsSite) -> None:
    assert fetch(f"{site.base_url}/sitemaps/1900-01.xml")[0] == 404


def test_rss_lists_newest_first_with_tracking(site: NewsSite) -> None:
    status, headers, body = fetch(f"{site.base_url}/rss.xml")
    assert status == 200
    assert headers["Content-Type"].startswith("application/rss+xml")
    rss = ET.fromstring(body)
    assert rss.tag == "rss" and rss.get("version") == "2.0"
    channel = rss.find("channel")
    assert channel is not None and channel.findtext("title")
    items = channel.findall("item")
    assert len(items) == FEED_SIZE

    dates = [parsedate_to_datetime(item.findtext("pubDate") or "") for item in items]
    assert dates == sorted(dates, reverse=True)
    newest = max(page.published for page in site.pages).replace(microsecond=0)
    assert dates[0] == newest

    clean_urls = {site.url_for(page) for page in site.pages}
    for item in items:
        assert item.findtext("title")
        assert item.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]
        link = item.findtext("link") or ""
        params = parse_qs(urlsplit(link).query)
        assert "rss" in params["utm_source"]
        assert "feed" in params["utm_medium"]
        clean = link.removesuffix("utm_source=rss&utm_medium=feed")[:-1]
        assert clean in clean_urls
        assert fetch(link)[0] == 200


def test_rss_without_tracking_links_clean_urls(corpus: list[CorpusPage]) -> None:
    with NewsSite(corpus, feed_size=3, feed_tracking=False) as plain:
        rss = ET.fromstring(fetch(f"{plain.base_url}/rss.xml")[2])
        links = [item.findtext("link") for item in rss.iter("item")]
        assert links == [plain.url_for(page) for page in plain.feed_pages]


def test_unknown_path_is_404(site: NewsSite) -> None:
    status, headers, body = fetch(f"{site.base_url}/no/such/article")
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert body


def test_add_route_serves_and_overrides(site: NewsSite) -> None:
    site.add_route("/extra/hostile", b"\x00\xffjunk", headers={"X-Test": "1"})
    status, headers, body = fetch(f"{site.base_url}/extra/hostile?x=1")
    assert (status, body, headers["X-Test"]) == (200, b"\x00\xffjunk", "1")

    site.add_route(
        "/robots.txt", b"User-agent: *\nDisallow: /\n", headers={"Content-Type": "text/plain"}
    )
    try:
        status, headers, body = fetch(f"{site.base_url}/robots.txt")
        assert body == b"User-agent: *\nDisallow: /\n"
        assert headers["Content-Type"] == "text/plain"
    finally:
        site.remove_route("/robots.txt")

    site.add_route("/gone", b"gone", status=410)
    assert fetch(f"{site.base_url}/gone")[:3:2] == (410, b"gone")


def test_request_log_records_targets(site: NewsSite) -> None:
    page = next(p for p in site.pages if p.query)
    site.clear_requests()
    fetch(f"{site.base_url}/robots.txt")
    fetch(site.url_for(page))
    fetch(f"{site.base_url}/missing")
    target = site.url_for(page).removeprefix(site.base_url)
    assert site.requests == ["/robots.txt", target, "/missing"]
    assert site.article_requests() == [target]
    assert site.page_for_path(target) == page
    site.clear_requests()
    assert site.requests == []
