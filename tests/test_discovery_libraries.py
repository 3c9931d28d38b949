"""Discovery and fetching through the libraries that do it: feeds read by feedparser (from a
tree lxml parsed safely), links by Scrapy's LinkExtractor, one allowed-domain check, and
download errors judged by the types Scrapy and Twisted raise."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest
from scrapy import Request
from scrapy.downloadermiddlewares.httpcompression import HttpCompressionMiddleware
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.exceptions import DownloadCancelledError, ResponseDataLossError
from scrapy.http import HtmlResponse, Response
from scrapy.utils._download_handlers import get_maxsize_msg, wrap_twisted_exceptions
from scrapy.utils.test import get_crawler
from scrapy.utils.url import url_is_from_any_domain
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionLost, DNSLookupError
from twisted.internet.error import ConnectionRefusedError as TxConnectionRefusedError
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.http import _DataLoss

from normalize.metadata import parse_datetime
from spiders.config import SiteConfig
from spiders.discovery import parse_feed, parse_sitemap
from spiders.download import HeadersTooLarge
from spiders.hosts import host_allowed
from spiders.middlewares import redirect_refusal
from spiders.news import MAX_FRONT_LINKS, NewsSpider, _read_front, fetch_error_kind

BASE = "https://news.example/feeds/"

# -- feeds ------------------------------------------------------------------------------------


def test_an_atom_feed_resolves_its_links_against_xml_base():
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://news.example/world/">
      <entry><title>One</title><link href="first-story-here"/></entry>
      <entry xml:base="/politics/"><link href="second-story-here"/></entry>
      <entry><link href="https://other.example/third-story-here"/></entry>
    </feed>"""
    assert [e.url for e in parse_feed(atom, BASE)] == [
        "https://news.example/world/first-story-here",
        "https://news.example/politics/second-story-here",
        "https://other.example/third-story-here"]


def test_an_rss_item_without_a_link_is_listed_by_its_permalink_guid():
    rss = b"""<rss version="2.0"><channel><title>x</title>
      <item><title>Guid only</title><guid>https://news.example/guid-only-story</guid></item>
      <item><title>Not a link</title><guid isPermaLink="false">tag:news.example,2024:17</guid></item>
      <item><guid>https://news.example/the-guid</guid><link>https://news.example/the-link</link></item>
    </channel></rss>"""
    assert [(e.url, e.title) for e in parse_feed(rss, BASE)] == [
        ("https://news.example/guid-only-story", "Guid only"),
        ("https://news.example/the-link", None)]


def test_feed_dates_in_the_forms_feeds_write_them():
    rss = b"""<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
      <item><link>/a</link><pubDate>Fri, 03 May 2024 16:19:08 +0200</pubDate></item>
      <item><link>/b</link><pubDate>Fri, 03 May 2024 09:19:08 PDT</pubDate></item>
      <item><link>/c</link><pubDate>03 May 2024</pubDate></item>
      <item><link>/d</link><dc:date>2024-05-03T14:19:08Z</dc:date></item>
      <item><link>/e</link><pubDate>not a date</pubDate></item>
    </channel></rss>"""
    a, b, c, d, e = parse_feed(rss, BASE)
    when = datetime(2024, 5, 3, 14, 19, 8, tzinfo=UTC)
    assert a.published == a.date_hint == when
    assert b.published == when + timedelta(hours=2)
    assert c.published == datetime(2024, 5, 3, tzinfo=UTC)
    assert d.date_hint == when  # Dublin Core's date: when the item last changed
    assert e.published is None and e.date_hint is None


def test_a_feed_of_another_encoding_is_read_as_declared():
    rss = ('<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
           "<item><title>Über uns</title><link>/ueber-uns-heute-hier</link></item>"
           "</channel></rss>").encode("iso-8859-1")
    (entry,) = parse_feed(rss, BASE)
    assert (entry.url, entry.title) == ("https://news.example/ueber-uns-heute-hier", "Über uns")


@pytest.mark.parametrize("hostile", [
    # feedparser looks for an e-mail address in an author with a quadratic regex: a
    # megabyte took hours before the authors were pruned from what it is given.
    b"<author>" + b"a" * 1_000_000 + b"</author>",
    b"<dc:creator>" + b"a." * 500_000 + b"</dc:creator>",
])
def test_a_hostile_feed_is_read_in_time_linear_in_its_size(hostile):
    """Bounded by work, not by a clock: the function must return at all."""
    rss = (b'<?xml version="1.0"?>' + b"\n" * 1_000_000  # a prolog feedparser reads quadratically
           + b'<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><item>'
           + b"<title>Story</title><link>https://news.example/one-story-here</link>" + hostile
           + b"</item></channel></rss>")
    assert [e.url for e in parse_feed(rss, BASE)] == ["https://news.example/one-story-here"]


def test_an_html_page_given_as_a_feed_lists_nothing():
    assert parse_feed(b"<html><body><a href='/x'>x</a></body></html>", BASE) == []


# -- dates --------------------------------------------------------------------------------------


def test_sitemap_dates_go_through_the_one_date_parser():
    """W3C datetimes (date only, with and without an offset) and RFC 822, as
    ``normalize.metadata.parse_datetime`` reads them for article metadata."""
    body = b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <url><loc>/a</loc><lastmod>2024-05-03</lastmod></url>
      <url><loc>/b</loc><lastmod>2024-05-03T18:19+02:00</lastmod></url>
      <url><loc>/c</loc><lastmod>2024-05-03T16:19:08.5Z</lastmod></url>
      <url><loc>/d</loc><lastmod>2024-05-03T16:19:08</lastmod></url>
      <url><loc>/e</loc><lastmod>Fri, 03 May 2024 16:19:08 GMT</lastmod></url>
    </urlset>"""
    _, entries = parse_sitemap(body, BASE)
    assert [e.date_hint for e in entries] == [
        parse_datetime(v) for v in ("2024-05-03", "2024-05-03T18:19+02:00",
                                    "2024-05-03T16:19:08.5Z", "2024-05-03T16:19:08",
                                    "Fri, 03 May 2024 16:19:08 GMT")]
    assert entries[0].date_hint == datetime(2024, 5, 3, tzinfo=UTC)
    assert entries[1].date_hint.utcoffset() == timedelta(hours=2)
    assert entries[3].date_hint == entries[4].date_hint == datetime(2024, 5, 3, 16, 19, 8, tzinfo=UTC)


# -- links ---------------------------------------------------------------------------------------


def _front(body: str, url: str = "https://news.example/front") -> HtmlResponse:
    return HtmlResponse(url, body=f"<html><head>{body}</body></html>".encode(), encoding="utf-8")


def test_a_front_resolves_relative_links_against_its_base_href():
    front = _front('<base href="https://news.example/section/"></head><body>'
                   '<a href="first-story-here">1</a><a href="../other/second-story-here">2</a>'
                   '<a href="/third-story-here">3</a>')
    is_article, links, capped = _read_front(front, reached_by_link=False)
    assert not is_article and not capped
    assert [url for url, _ in links] == ["https://news.example/section/first-story-here",
                                         "https://news.example/other/second-story-here",
                                         "https://news.example/third-story-here"]


def test_a_front_gives_its_http_links_once_in_page_order_without_fragments():
    front = _front("</head><body>"
                   '<a href="/b-story#comments">b</a><a href="#top">top</a><a href="">self</a>'
                   '<a href=" /a-story ">a</a><a href="/b-story">b again</a>'
                   '<a href="mailto:desk@news.example">m</a><a href="javascript:void(0)">j</a>'
                   '<a href="ftp://news.example/file">f</a><a href="tel:123">t</a>'
                   '<a href="http://other.example/x.pdf">pdf</a><a>no href</a>')
    _, links, capped = _read_front(front, reached_by_link=False)
    assert [url for url, _ in links] == ["https://news.example/b-story",
                                         "https://news.example/a-story",
                                         "http://other.example/x.pdf"]
    assert not capped


def test_a_page_of_more_anchors_than_a_front_has_is_read_in_part():
    """Repeated links count once, but a page of four anchors for each link a front may give
    is read no further."""
    repeated = '<a href="/same-story-here">x</a>' * (4 * MAX_FRONT_LINKS)
    _, links, capped = _read_front(_front("</head><body>" + repeated), reached_by_link=False)
    assert [url for url, _ in links] == ["https://news.example/same-story-here"] and not capped
    _, links, capped = _read_front(_front("</head><body>" + repeated + '<a href="/late">y</a>'),
                                   reached_by_link=False)
    assert [url for url, _ in links] == ["https://news.example/same-story-here"] and capped


# -- the allowed-domain check ------------------------------------------------------------------


@pytest.mark.parametrize("url, allowed", [
    ("https://news.example/a-b-c", True),
    ("https://www.News.Example/a-b-c", True),
    ("https://news.example./a-b-c", True),  # the same host, written fully qualified
    ("http://news.example:8080/a-b-c", True),
    ("https://user@news.example/a-b-c", True),
    ("https://badnews.example/a-b-c", False),
    ("https://news.example.evil.example/a-b-c", False),
    ("ftp://news.example/a-b-c", False),
])
def test_discovery_and_the_redirect_guard_agree_on_the_allowed_domains(tmp_path, url, allowed):
    site = SiteConfig(name="x", allowed_domains=["news.example"], feeds=["https://news.example/f"])
    spider = NewsSpider(site, archive_url=str(tmp_path / "archive"))
    assert spider._wanted(url) is allowed
    assert (redirect_refusal(url, site.allowed_domains) is None) is allowed


def test_the_allowed_domain_check_compares_hosts_not_network_locations():
    """Why it is ours and not Scrapy's url_is_from_any_domain (which compares the port too)."""
    assert host_allowed("127.0.0.1", ["127.0.0.1"])
    assert not url_is_from_any_domain("http://127.0.0.1:8080/", ["127.0.0.1"])


# -- download errors -----------------------------------------------------------------------------


def _as_scrapy_raises(error: BaseException) -> BaseException:
    """``error`` as Scrapy's download handlers hand it on (they wrap Twisted's since 2.19)."""
    try:
        with wrap_twisted_exceptions():
            raise error
    except Exception as wrapped:  # noqa: BLE001 (whatever Scrapy made of it)
        return wrapped
    raise AssertionError("not raised")


def _raised_by(call) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def _data_loss() -> ResponseDataLossError:
    # As scrapy.core.downloader.handlers.http11 raises it for a body cut short.
    error = ResponseDataLossError()
    error.__cause__ = ResponseFailed([Failure(_DataLoss())])
    return error


def _decompression_bomb() -> BaseException:
    crawler = get_crawler(settings_dict={"DOWNLOAD_MAXSIZE": 10_000})
    request = Request("https://news.example/bomb")
    response = Response(request.url, body=gzip.compress(b"\0" * 1_000_000),
                        headers={"Content-Encoding": "gzip"}, request=request)
    return _raised_by(lambda: HttpCompressionMiddleware.from_crawler(crawler)
                      .process_response(request, response))


def _redirect_loop() -> BaseException:
    crawler = get_crawler(settings_dict={"REDIRECT_MAX_TIMES": 1})
    request = Request("https://news.example/a", meta={"redirect_times": 1})
    response = Response(request.url, status=302, headers={"Location": "/b"}, request=request)
    return _raised_by(lambda: RedirectMiddleware.from_crawler(crawler)
                      .process_response(request, response))


def _maxsize_error() -> DownloadCancelledError:
    request = Request("https://news.example/huge")
    return DownloadCancelledError(get_maxsize_msg(30_000_000, 20_000_000, request, expected=True))


@pytest.mark.parametrize("make, kind, says", [
    (lambda: _as_scrapy_raises(TxTimeoutError("connect")), "timeout", "download timeout"),
    (lambda: _as_scrapy_raises(DNSLookupError("news.invalid")), "dns", "host not found"),
    (lambda: _as_scrapy_raises(TxConnectionRefusedError("refused")), "connection", "refused"),
    # A connection lost mid-response: was recorded as "fetch", with the error's repr.
    (lambda: _as_scrapy_raises(ResponseFailed([Failure(ConnectionLost("reset by peer"))])),
     "connection", "reset by peer"),
    (_data_loss, "connection", "data loss"),
    # A body over the size limit with no Content-Length: cancelled as it arrives; was "fetch".
    (lambda: _as_scrapy_raises(CancelledError()), "too_large", "over the size limit"),
    (_maxsize_error, "too_large", "larger than download max size"),
    (_decompression_bomb, "too_large", "DOWNLOAD_MAXSIZE"),
    (lambda: _as_scrapy_raises(ResponseFailed([Failure(HeadersTooLarge("headers over 256 KiB"))])),
     "too_large", "headers over 256 KiB"),
    (_redirect_loop, "too_many_redirects", "max redirections"),
])
def test_download_errors_are_classified_by_type(make, kind, says):
    got, reason = fetch_error_kind(make())
    assert (got, says in reason) == (kind, True), reason
