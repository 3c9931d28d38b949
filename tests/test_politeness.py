"""Politeness, against the real local news site: robots.txt, per-site throttling, the
User-Agent, Retry-After and redirects off the site. Each crawl is a real crawl subprocess
into a local archive directory; the site's request log says what reached it, and when."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from flows.settings import DEFAULT_USER_AGENT, Settings
from spiders.config import SiteConfig
from spiders.middlewares import parse_retry_after
from spiders.settings import crawl_settings
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite, _split_target

CONTACT_URL = re.compile(r"\+?https?://[^\s;)]+")


@pytest.fixture
def make_site(corpus):
    """Start small news sites (``NewsSite(pages, feed_size=0)``); stopped after the test."""
    started: list[NewsSite] = []

    def make(pages) -> NewsSite:
        site = NewsSite(list(pages), feed_size=0).start()
        started.append(site)
        return site

    yield make
    for site in started:
        site.stop()


def crawl(site: NewsSite, tmp_path: Path, run_id: str = "run1", **overrides) -> dict:
    """Crawl ``site`` (sitemaps only) into ``tmp_path/archive``; the stats report."""
    entry = local_site_config(site, feeds=[], **overrides)
    return crawl_site_subprocess(entry, str(tmp_path / "archive"), dict(os.environ),
                                 tmp_path / "data", run_id, timeout=120)


def archived_urls(tmp_path: Path) -> set[str]:
    """The ``url`` of every record in the local archive."""
    return {json.loads(p.read_text())["url"]
            for p in (tmp_path / "archive" / "articles").rglob("meta.json")}


def path_of(target: str) -> str:
    return _split_target(target)[0]


def hits(site: NewsSite, path: str):
    """The site's logged requests for ``path`` (query ignored)."""
    return [r for r in site.request_log if path_of(r.target) == path]


def errors_of(report: dict, kind: str) -> list[dict]:
    return [e for e in report["errors"] if e["kind"] == kind]


# -- robots.txt --------------------------------------------------------------------------


def test_robots_disallowed_article_is_never_requested(make_site, corpus, tmp_path):
    site = make_site(corpus[:3])
    banned, *allowed = [p for p in site.pages]
    site.add_route("/robots.txt", (
        f"User-agent: *\nDisallow: {banned.path}\n\nSitemap: {site.base_url}/sitemap.xml\n"
    ).encode(), headers={"Content-Type": "text/plain"})

    report = crawl(site, tmp_path)

    # The sitemap lists it, robots.txt forbids it: it never reaches the site.
    assert site.url_for(banned) in site.month_sitemap(banned.published.strftime("%Y-%m"))
    assert banned.path not in {path_of(t) for t in site.requests}
    assert report["stats"].get("robotstxt/forbidden", 0) >= 1
    assert archived_urls(tmp_path) == {site.url_for(p) for p in allowed}


# -- throttling ------------------------------------------------------------------------


def test_crawl_settings_map_site_politeness_onto_scrapy():
    site = SiteConfig(name="x", allowed_domains=["example.com"], feeds=["https://example.com/f"],
                      download_delay=0.5, concurrent_requests=3, autothrottle=False)
    settings = crawl_settings(site, archive_url="/tmp/a", run_id="r", user_agent="ua/1 (+https://x)")
    assert settings.getfloat("DOWNLOAD_DELAY") == 0.5
    assert settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == 3
    assert settings.getint("CONCURRENT_REQUESTS") >= 3
    assert settings.getbool("AUTOTHROTTLE_ENABLED") is False
    assert settings.getfloat("DOWNLOAD_DELAY_JITTER") == 0  # the delay is a floor, not a mean
    assert settings["USER_AGENT"] == "ua/1 (+https://x)"

    defaults = crawl_settings(SiteConfig(name="x", allowed_domains=["example.com"],
                                         feeds=["https://example.com/f"]),
                              archive_url="/tmp/a", run_id="r", user_agent=DEFAULT_USER_AGENT)
    assert defaults.getbool("AUTOTHROTTLE_ENABLED") is True
    assert defaults.getfloat("DOWNLOAD_DELAY") == 1.0
    assert defaults.getbool("ROBOTSTXT_OBEY") is True
    assert 0 < defaults.getfloat("DOWNLOAD_TIMEOUT") <= 60
    assert 0 < defaults.getint("DOWNLOAD_MAXSIZE") <= 100 * 1024 * 1024
    assert defaults.getfloat("NEWSARCHIVE_MAX_RETRY_AFTER") == 60

    # The middlewares sit where they see what they must see first: process_request runs
    # from the lowest number up, process_response from the highest down.
    mws = defaults.getdict("DOWNLOADER_MIDDLEWARES")
    base = defaults.getdict("DOWNLOADER_MIDDLEWARES_BASE")
    redirect = base["scrapy.downloadermiddlewares.redirect.RedirectMiddleware"]
    retry = base["scrapy.downloadermiddlewares.retry.RetryMiddleware"]
    robots = base["scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware"]
    assert mws["spiders.middlewares.OffsiteRedirectMiddleware"] > redirect
    assert retry < mws["spiders.middlewares.RetryAfterMiddleware"] < redirect
    assert mws["spiders.middlewares.OffsiteRedirectGuardMiddleware"] < robots


def test_download_delay_spaces_requests(make_site, corpus, tmp_path):
    site = make_site(corpus[:4])

    report = crawl(site, tmp_path, download_delay=0.5, concurrent_requests=1, autothrottle=False)

    assert report["finish_reason"] == "finished"
    assert archived_urls(tmp_path) == {site.url_for(p) for p in site.pages}
    log = site.request_log
    # robots.txt (twice: Scrapy's and the spider's), the sitemap index, a monthly sitemap
    # or more, and the four articles, one at a time and download_delay apart.
    assert len(log) >= 8
    # The site sees when a request arrives, not when it was sent: a busy machine holds one
    # request back longer than the next, so arrival gaps can be shorter than the gaps Scrapy
    # kept. What is certain, on any machine: one at a time, Scrapy sends request n+1 after
    # it has the whole answer to request n, so after the site began answering it...
    shown = [(r.target, round(r.at, 3), round(r.answered_at, 3)) for r in log]
    assert all(b.at >= a.answered_at for a, b in zip(log, log[1:])), shown
    # ...and at least download_delay after it sent request n, which it sent after the site
    # began answering request n-1: so request n+1 arrives download_delay or more after that.
    assert all(c.at - a.answered_at >= 0.5 for a, c in zip(log, log[2:])), shown


# -- User-Agent -------------------------------------------------------------------------


def test_user_agent_names_the_bot_and_a_contact_url(make_site, corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSARCHIVE_USER_AGENT", raising=False)
    user_agent = Settings().user_agent
    assert user_agent == DEFAULT_USER_AGENT
    assert user_agent.lower().startswith("newsarchive/")
    assert CONTACT_URL.search(user_agent)

    site = make_site(corpus[:2])
    # robots.txt rules for our bot by name apply to it.
    banned, allowed = site.pages
    site.add_route("/robots.txt", (
        f"User-agent: *\nAllow: /\n\nUser-agent: newsarchive\nDisallow: {banned.path}\n\n"
        f"Sitemap: {site.base_url}/sitemap.xml\n"
    ).encode(), headers={"Content-Type": "text/plain"})
    # As the crawl flow starts a crawl (flows/crawl.py), with the configured User-Agent.
    stats_file = tmp_path / "data" / "crawls" / "ua.json"
    entry = SiteConfig.model_validate(local_site_config(site, feeds=[]))
    subprocess.run(
        [sys.executable, "-m", "spiders.run", "--site-json", entry.model_dump_json(),
         "--archive", str(tmp_path / "archive"), "--run-id", "ua",
         "--stats-file", str(stats_file), "--data-dir", str(tmp_path / "data"),
         "--user-agent", user_agent, "--log-level", "WARNING"],
        cwd=REPO_ROOT, env=dict(os.environ), check=True, timeout=120,
    )

    received = {r.headers.get("User-Agent") for r in site.request_log}
    assert received == {user_agent}
    assert banned.path not in {path_of(t) for t in site.requests}
    assert archived_urls(tmp_path) == {site.url_for(allowed)}


# -- 429 and Retry-After ----------------------------------------------------------------


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after(b"2") == 2
    assert parse_retry_after(" 120 ") == 120
    assert parse_retry_after("1.5") == 1.5
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later.encode(), now=now) == 30
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0
    for bad in (None, b"", "soon", "-5", "nan", "inf"):
        assert parse_retry_after(bad) is None, bad


def test_429_with_retry_after_is_retried_after_the_wait(make_site, corpus, tmp_path):
    site = make_site(corpus[:2])
    slow, other = site.pages
    site.add_responses(slow.path, [
        (429, b"too many requests", {"Retry-After": "2", "Content-Type": "text/plain"}),
        (200, slow.html, None),
    ])

    report = crawl(site, tmp_path)

    first, retry = hits(site, slow.path)
    assert retry.at - first.at >= 2.0
    assert archived_urls(tmp_path) == {site.url_for(slow), site.url_for(other)}
    assert report["errors"] == []
    assert report["stats"]["newsarchive/retry_after/count"] == 1


def test_429_forever_is_an_error_and_the_crawl_goes_on(make_site, corpus, tmp_path):
    site = make_site(corpus[:3])
    stuck, *others = site.pages
    site.add_route(stuck.path, b"too many requests", status=429,
                   headers={"Retry-After": "1", "Content-Type": "text/plain"})

    report = crawl(site, tmp_path)

    # The first try and RETRY_TIMES (2) retries, each a Retry-After after the last.
    tries = hits(site, stuck.path)
    assert len(tries) == 3
    assert all(b.at - a.at >= 1.0 for a, b in zip(tries, tries[1:]))
    assert [e["url"] for e in errors_of(report, "http_429")] == [site.url_for(stuck)]
    assert archived_urls(tmp_path) == {site.url_for(p) for p in others}


# -- meta refresh -------------------------------------------------------------------------


def test_a_meta_refresh_on_the_site_is_followed_whatever_the_encoding(make_site, corpus,
                                                                      tmp_path):
    """The refresh middleware looks for "refresh" in a page's bytes before decoding it; a
    page in UTF-16, whose bytes do not spell it, is decoded and looked at as Scrapy does."""
    site = make_site(corpus[:1])
    targets = {"/hidden/utf-8": corpus[1], "/hidden/utf-16": corpus[2]}
    for path, page in targets.items():
        site.add_route(path, page.html, headers={"Content-Type": "text/html; charset=utf-8"})
    for encoding in ("utf-8", "utf-16"):
        padding = "<!-- " + "x" * 3000 + " -->"  # the refresh is not in the first bytes
        site.add_route(f"/moved/{encoding}", (
            f'<html><head>{padding}<META HTTP-EQUIV="Refresh" content="0; '
            f'url={site.base_url}/hidden/{encoding}"></head><body>moved</body></html>'
        ).encode(encoding), headers={"Content-Type": f"text/html; charset={encoding}"})
    site.add_route("/moved-sitemap.xml", (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(f"<url><loc>{site.base_url}/moved/{e}</loc></url>" for e in ("utf-8", "utf-16"))
        + "</urlset>").encode(), headers={"Content-Type": "application/xml"})

    report = crawl(site, tmp_path, sitemaps=[f"{site.base_url}/moved-sitemap.xml"])

    assert {path_of(u.removeprefix(site.base_url)) for u in archived_urls(tmp_path)} == set(targets)
    assert all(len(hits(site, path)) == 1 for path in targets)
    assert report["stats"].get("newsarchive/archive/written") == 2


def test_a_page_without_a_meta_refresh_is_not_decoded_to_look_for_one():
    """Scrapy's own middleware decodes every page whole (and keeps the copy with the
    response); ours answers from the bytes."""
    from scrapy.http import HtmlResponse, Request
    from scrapy.utils.test import get_crawler

    from spiders.middlewares import HeadMetaRefreshMiddleware

    middleware = HeadMetaRefreshMiddleware.from_crawler(get_crawler())
    request = Request("http://127.0.0.1/a")
    plain = HtmlResponse(request.url, body="<html><p>caf\u00e9</p></html>".encode() * 1000,
                         encoding="utf-8", request=request)
    assert middleware.process_response(request, plain) is plain
    assert plain._cached_ubody is None  # never decoded
    moved = HtmlResponse(request.url, request=request, encoding="utf-8", body=(
        b'<html><head><meta http-equiv="REFRESH" content="0; url=/b"></head></html>'))
    redirected = middleware.process_response(request, moved)
    assert isinstance(redirected, Request) and redirected.url == "http://127.0.0.1/b"


# -- redirects off the site --------------------------------------------------------------


def test_redirects_off_the_site_are_refused(make_site, corpus, tmp_path):
    site = make_site(corpus[:4])
    elsewhere = make_site(corpus[4:5])  # another host: localhost is not 127.0.0.1
    away_url = f"http://localhost:{elsewhere.port}{elsewhere.pages[0].path}"
    to_host, to_ftp, refresh, kept = site.pages
    site.add_route(to_host.path, b"", status=301, headers={"Location": away_url})
    site.add_route(to_ftp.path, b"", status=302, headers={"Location": "ftp://127.0.0.1/x"})
    site.add_route(refresh.path, (
        f'<html><head><meta http-equiv="refresh" content="0; url={away_url}"></head>'
        f"<body>moved</body></html>"
    ).encode())

    report = crawl(site, tmp_path)

    assert elsewhere.requests == []
    refused = {e["url"]: e["reason"] for e in errors_of(report, "offsite_redirect")}
    assert refused == {
        site.url_for(to_host): f"redirect to {away_url} refused",
        site.url_for(to_ftp): "redirect to ftp://127.0.0.1/x refused",
        site.url_for(refresh): f"redirect to {away_url} refused",
    }
    # Not handed on as a 3xx either (Scrapy passes a redirect to ftp:// through).
    assert not [e for e in report["errors"] if e["kind"].startswith("http_3")]
    assert archived_urls(tmp_path) == {site.url_for(kept)}
