"""Reading sitemaps (with Google News extensions) and feeds (RSS 2.0, Atom, JSON Feed)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from normalize import is_article_page
from normalize.metadata import parse_datetime as parse_date  # discovery reads dates with it
from spiders.discovery import parse_feed, parse_sitemap

BASE = "https://news.example/"


def test_news_sitemap_gives_publication_date_title_and_lastmod():
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url><loc>https://news.example/world/a-big-story</loc>
    <news:news><news:publication><news:name>Example</news:name><news:language>en</news:language></news:publication>
      <news:publication_date>2024-05-03T18:19:08+02:00</news:publication_date>
      <news:title>A big story</news:title></news:news></url>
  <url><loc>/relative/second-story-here</loc><lastmod>2024-05-04</lastmod></url>
  <url><loc>https://news.example/third</loc>
    <lastmod>2024-05-06T10:00:00Z</lastmod>
    <news:news><news:publication_date>2024-05-05</news:publication_date></news:news></url>
</urlset>"""
    kind, entries = parse_sitemap(body, BASE + "sitemap.xml")
    assert kind == "urlset"
    first, second, third = entries
    cest = timezone(timedelta(hours=2))
    assert first.url == "https://news.example/world/a-big-story"
    assert first.published == datetime(2024, 5, 3, 18, 19, 8, tzinfo=cest)
    assert first.date_hint == first.published  # no lastmod: the publication date
    assert first.title == "A big story"
    assert second.url == "https://news.example/relative/second-story-here"
    assert second.date_hint == datetime(2024, 5, 4, tzinfo=timezone.utc)
    assert second.published is None
    assert third.date_hint == datetime(2024, 5, 6, 10, tzinfo=timezone.utc)  # lastmod wins
    assert third.published == datetime(2024, 5, 5, tzinfo=timezone.utc)


def test_sitemap_index():
    body = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc>https://news.example/s1.xml.gz</loc><lastmod>2024-01-01</lastmod></sitemap>
      <sitemap><loc>s2.xml</loc></sitemap></sitemapindex>"""
    kind, entries = parse_sitemap(body, BASE)
    assert kind == "sitemapindex"
    assert [e.url for e in entries] == ["https://news.example/s1.xml.gz", "https://news.example/s2.xml"]


@pytest.mark.parametrize("body", [
    b"<html><body>not a sitemap</body></html>",
    b"",
    b"\x00\x01\x02 binary",
])
def test_not_a_sitemap_is_refused(body):
    with pytest.raises(Exception) as info:
        parse_sitemap(body, BASE)
    assert isinstance(info.value, ValueError) or info.type.__name__ == "XMLSyntaxError"


def test_an_entity_bomb_is_refused_not_expanded():
    lol = "".join(f'<!ENTITY lol{i} "{"&lol%d;" % (i - 1) * 10}">' for i in range(1, 10))
    body = (f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY lol0 "lol">{lol}]>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<url><loc>https://news.example/&lol9;</loc></url></urlset>").encode()
    with pytest.raises(ValueError, match="entities"):
        parse_sitemap(body, BASE)
    with pytest.raises(ValueError, match="entities"):
        parse_feed(body.replace(b"urlset", b"rss"), BASE)


def test_rss_and_atom_feeds():
    rss = b"""<rss version="2.0"><channel><title>x</title>
      <item><title>One</title><link>https://news.example/one-story-here?utm_source=rss</link>
        <pubDate>Fri, 03 May 2024 16:19:08 GMT</pubDate></item>
      <item><title>No link</title></item></channel></rss>"""
    (one,) = parse_feed(rss, BASE)
    assert one.url == "https://news.example/one-story-here?utm_source=rss"
    assert one.published == one.date_hint == datetime(2024, 5, 3, 16, 19, 8, tzinfo=timezone.utc)
    assert one.title == "One"

    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom">
      <entry><title>Two</title><link rel="alternate" href="/two-story-here"/>
        <link rel="enclosure" href="/two.mp3"/>
        <published>2024-05-03T10:00:00Z</published><updated>2024-05-04T10:00:00Z</updated></entry>
    </feed>"""
    (two,) = parse_feed(atom, BASE)
    assert two.url == "https://news.example/two-story-here"
    assert two.published == datetime(2024, 5, 3, 10, tzinfo=timezone.utc)
    assert two.date_hint == datetime(2024, 5, 4, 10, tzinfo=timezone.utc)


def test_json_feed():
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": [
        {"id": "1", "url": "https://news.example/json-story-one", "title": "J1",
         "date_published": "2024-05-03T10:00:00-04:00"},
        {"id": "2", "external_url": "/json-story-two", "date_modified": "2024-05-05T00:00:00Z"},
        {"id": "3", "title": "no url"}, "junk",
    ]}
    entries = parse_feed(json.dumps(feed).encode(), BASE, "application/feed+json")
    assert [e.url for e in entries] == ["https://news.example/json-story-one",
                                        "https://news.example/json-story-two"]
    assert entries[0].published == datetime(2024, 5, 3, 14, tzinfo=timezone.utc)
    assert entries[1].date_hint == datetime(2024, 5, 5, tzinfo=timezone.utc)
    with pytest.raises(ValueError):
        parse_feed(b'{"no": "items"}', BASE, "application/json")
    with pytest.raises(ValueError):
        parse_feed(b"{" * 100_000, BASE, "application/json")


def test_parse_date():
    assert parse_date("2024-05-03") == datetime(2024, 5, 3, tzinfo=timezone.utc)
    assert parse_date("Fri, 03 May 2024 16:19:08 +0200").utcoffset() == timedelta(hours=2)
    assert parse_date("yesterday") is None
    assert parse_date("") is None and parse_date(None) is None


def test_is_article_page():
    assert is_article_page('<meta property="og:type" content="article">')
    assert is_article_page("<meta content='article' property='og:type'/>")
    assert is_article_page('<script type="application/ld+json">{"@type": "NewsArticle"}</script>')
    assert is_article_page('<script type="application/ld+json">'
                           '{"@type": ["WebPage", "ReportageNewsArticle"]}</script>')
    assert is_article_page('<script type="application/ld+json">'
                           '{"@graph": [{"@type": "WebSite"}, {"@type": "BlogPosting"}]}</script>')
    assert not is_article_page('<meta property="og:type" content="website">')
    assert not is_article_page('<script type="application/ld+json">{"@type": "CollectionPage"}'
                               '</script>')
    assert not is_article_page('<p>{"@type": "NewsArticle"} is how a page says it</p>')


@pytest.mark.parametrize("hostile", [
    "<html><head>" + "<meta property='og:type' " * 8000,
    "<html><head><script type='application/ld+json'>" + '{"@type": [' * 20000,
    "<html><head>" + "<meta " * 50000 + "content='article'",
])
def test_is_article_page_is_linear_on_hostile_heads(hostile):
    """The heads that made the old regular expressions cubic (8,000 unclosed og:type tags
    took hours): parsed once, they are answered at once. Bounded by work, not by a clock:
    the function must return at all."""
    assert is_article_page(hostile) is False


def _slug_shaped(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1].count("-") >= 2


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_link_following_to_a_bounded_depth(corpus, tmp_path, depth):
    """Fronts lead to sections, sections to articles: articles are found by URL shape at
    any depth, and by og:type / JSON-LD when their URL says nothing; nothing beyond the
    configured depth is fetched."""
    from storage import Archive
    from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
    from tests.newssite import NewsSite

    shaped = [p for p in corpus if _slug_shaped(p.path) and not p.query][:2]
    plain = [p for p in corpus if not _slug_shaped(p.path) and not p.query
             and is_article_page(p.html.decode("utf-8", "replace")[:200_000])][:1]
    assert len(shaped) == 2 and len(plain) == 1
    with NewsSite(shaped + plain, feed_size=0) as site:
        def page(*links: str) -> bytes:
            return ("<html><body>" + "".join(f'<a href="{u}">x</a>' for u in links)
                    + "</body></html>").encode()
        site.add_route("/front", page(shaped[0].path, "/section/world", "https://elsewhere.example/a-b-c"))
        site.add_route("/section/world", page(shaped[1].path, plain[0].path, "/section/deeper"))
        site.add_route("/section/deeper", page("/nothing-here"))
        entry = local_site_config(site, feeds=[], sitemaps=[], start_urls=[f"{site.base_url}/front"],
                                  follow_depth=depth)
        report = crawl_site_subprocess(entry, str(tmp_path / "archive"),
                                       {**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
                                       tmp_path / "data", f"depth-{depth}")
        fetched = {r.split("?")[0] for r in site.requests}
        base = site.base_url
    archived = {r.url.removeprefix(base) for r in Archive.open(str(tmp_path / "archive")).iter_records()}
    if depth == 1:
        assert archived == {shaped[0].path}
        assert "/section/world" not in fetched
    elif depth == 2:
        assert archived == {shaped[0].path, shaped[1].path}
        assert "/section/world" in fetched and "/section/deeper" not in fetched
        assert plain[0].path not in fetched
    else:
        # The plain-URL page is followed as a front and kept as the article it says it is.
        assert archived == {shaped[0].path, shaped[1].path, plain[0].path}
        assert "/section/deeper" in fetched and "/nothing-here" not in fetched
    assert report["finish_reason"] == "finished"


def test_a_news_sitemap_and_a_json_feed_lead_to_articles(corpus, tmp_path):
    """Each discovery document a crawl can be given, against the local site: a Google News
    sitemap and a JSON Feed (RSS and robots.txt sitemap indexes run in the end-to-end test)."""
    from storage import Archive
    from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
    from tests.newssite import NewsSite

    pages = corpus[:4]
    with NewsSite(pages, feed_size=0) as site:
        news = ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
                'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
                + "".join(f"<url><loc>{site.url_for(p)}</loc><news:news><news:publication_date>"
                          f"{p.published.isoformat()}</news:publication_date><news:title>t</news:title>"
                          "</news:news></url>" for p in pages[:2]) + "</urlset>")
        site.add_route("/news-sitemap.xml", news.encode(), headers={"Content-Type": "application/xml"})
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [
            {"id": str(i), "url": site.url_for(p), "date_published": p.published.isoformat()}
            for i, p in enumerate(pages[2:])]}
        site.add_route("/feed.json", json.dumps(feed).encode(),
                       headers={"Content-Type": "application/feed+json"})
        entry = local_site_config(site, sitemaps=[f"{site.base_url}/news-sitemap.xml"],
                                  feeds=[f"{site.base_url}/feed.json"])
        report = crawl_site_subprocess(entry, str(tmp_path / "archive"),
                                       {**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
                                       tmp_path / "data", "news-and-json")
        served = {site.url_for(p) for p in pages}
    records = list(Archive.open(str(tmp_path / "archive")).iter_records())
    assert {r.url for r in records} == served
    assert report["stats"]["newsarchive/discovered/sitemap"] == 2
    assert report["stats"]["newsarchive/discovered/feed"] == 2
