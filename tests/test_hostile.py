"""Hostile input in one crawl of the local news site: every case ends in a recorded error
(named in the run manifest), the real articles beside them are archived, and the crawl
stays within bounded memory and time.

The cases of the discovery issue: binary bodies labelled text/html, a 60 MB page, a gzip
bomb, an XML entity bomb in a sitemap, a sitemap index that includes itself, a redirect
loop, a page in windows-1252 (decoded correctly, so archived), an empty 200, NUL bytes,
20,000 nested divs, and a page that never comes (a crawl of its own, with a short download
timeout). And those of the security issue: a sitemap over the size limit, a gzipped sitemap
that inflates past it, sitemap indexes nested without end, and a redirect to a local file.
(Private addresses and redirects off the site: tests/test_security.py and
tests/test_politeness.py.)

No outcome depends on the machine's speed: the hostile crawl's timeouts are reached only by a
hang, so each case ends in its own kind of error however slowly bytes flow or pages parse; the
page that never comes is answered only once its crawl has ended.
"""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
import threading
import time

from spiders.config import SiteConfig
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import SITEMAP_NS, XML_TYPE, NewsSite

HTML = {"Content-Type": "text/html"}
# max_sitemap_bytes of the hostile crawl: far above its real sitemaps, far below the bombs.
SITEMAP_LIMIT = 256 * 1024
HANG_GUARD_SECONDS = 300
"""download_timeout and extract_timeout of the hostile crawl: far above what any of its
pages takes on a loaded machine, so that a size limit, not a timeout, stops the big bodies,
and every page is judged by what it holds, not by how long it took to parse."""
SHORT_TIMEOUT_SECONDS = 10
"""download_timeout of the crawl with a page that never comes: what that page must run out
of; long enough that the site's other pages (tiny, and retried twice) never do."""

WINDOWS_1252_STORY = (
    "<html><head><meta charset=\"windows-1252\"><title>Caf\u00e9 prices rise</title></head><body>"
    "<article><h1>Caf\u00e9 prices rise again</h1>"
    + "".join(f"<p>Paragraph {i}: the caf\u00e9 on the corner now charges \u20ac{i}.50 for a "
              "coffee \u2013 na\u00efve customers \u201cshrug\u201d, the owner says, and the "
              "queue outside keeps growing every morning.</p>" for i in range(12))
    + "</article></body></html>"
)


def _sitemap(urls: list[str]) -> bytes:
    return (f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">'
            + "".join(f"<url><loc>{u}</loc></url>" for u in urls) + "</urlset>").encode()


def test_hostile_input_is_recorded_and_the_crawl_goes_on(corpus, tmp_path):
    rng = random.Random(7)
    with NewsSite(corpus[:4], feed_size=0) as site:
        base = site.base_url
        cases = {
            "/h/binary-labelled-html": (bytes(rng.getrandbits(8) for _ in range(200_000)), HTML),
            "/h/sixty-megabyte-page": (b"<html><body>" + b"<p>word word word</p>" * 3_000_000, HTML),
            "/h/gzip-bomb": (gzip.compress(b"\0" * 100 * 1024 * 1024, 6),
                             {"Content-Type": "text/html", "Content-Encoding": "gzip"}),
            "/h/empty-page": (b"", HTML),
            "/h/nul-bytes": (b"\0" * 50_000 + b"<html><body>\0\0<p>\0</p></body></html>", HTML),
            "/h/nested-divs": (b"<html><body>" + b"<div>" * 20_000 + b"x" + b"</div>" * 20_000
                               + b"</body></html>", HTML),
            "/h/windows-1252-story": (WINDOWS_1252_STORY.encode("cp1252"), HTML),
        }
        for path, (body, headers) in cases.items():
            site.add_route(path, body, headers=headers)
        site.add_route("/h/loop-a", b"", status=302, headers={"Location": f"{base}/h/loop-b"})
        site.add_route("/h/loop-b", b"", status=302, headers={"Location": f"{base}/h/loop-a"})
        lol = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, 10))
        site.add_route("/h/entity-bomb.xml", (
            f'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY l0 "lol">{lol}]>'
            f'<urlset xmlns="{SITEMAP_NS}"><url><loc>{base}/h/&l9;</loc></url></urlset>').encode(),
            headers={"Content-Type": XML_TYPE})
        site.add_route("/h/self-index.xml", (
            f'<?xml version="1.0"?><sitemapindex xmlns="{SITEMAP_NS}">'
            f"<sitemap><loc>{base}/h/self-index.xml</loc></sitemap></sitemapindex>").encode(),
            headers={"Content-Type": XML_TYPE})
        huge = _sitemap([f"{base}/h/listed-by-huge-sitemap-{i}" for i in range(6000)])
        assert len(huge) > SITEMAP_LIMIT
        site.add_route("/h/huge-sitemap.xml", huge, headers={"Content-Type": XML_TYPE})
        site.add_route("/h/sitemap-bomb.xml.gz", gzip.compress(b" " * 50 * 1024 * 1024, 9),
                       headers={"Content-Type": "application/x-gzip"})
        # Each index lists the next, fresh one, as a hostile site can do for ever.
        for level in range(8):
            site.add_route(f"/h/deep-{level}.xml", (
                f'<?xml version="1.0"?><sitemapindex xmlns="{SITEMAP_NS}">'
                f"<sitemap><loc>{base}/h/deep-{level + 1}.xml</loc></sitemap></sitemapindex>"
            ).encode(), headers={"Content-Type": XML_TYPE})
        site.add_route("/h/to-local-file", b"", status=302,
                       headers={"Location": "file:///etc/passwd"})
        article_urls = [base + p for p in cases] + [f"{base}/h/loop-a", f"{base}/h/to-local-file"]
        site.add_route("/h/sitemap.xml", _sitemap(article_urls), headers={"Content-Type": XML_TYPE})

        archive_dir = tmp_path / "archive"
        entry = local_site_config(
            site, feeds=[], download_timeout=HANG_GUARD_SECONDS,
            extract_timeout=HANG_GUARD_SECONDS, sitemaps=[
            f"{base}/robots.txt", f"{base}/h/sitemap.xml", f"{base}/h/entity-bomb.xml",
            f"{base}/h/self-index.xml", f"{base}/h/huge-sitemap.xml",
            f"{base}/h/sitemap-bomb.xml.gz", f"{base}/h/deep-0.xml"],
            max_sitemap_bytes=SITEMAP_LIMIT, max_sitemap_depth=3)
        stats_file = tmp_path / "stats.json"
        # A wrapper process, so that the peak memory measured is the crawl's alone.
        wrapper = (
            "import resource, subprocess, sys; "
            "subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", wrapper, sys.executable, "-m", "spiders.run",
             "--site-json", SiteConfig.model_validate(entry).model_dump_json(),
             "--archive", str(archive_dir), "--run-id", "hostile", "--stats-file", str(stats_file),
             "--data-dir", str(tmp_path / "data"), "--user-agent", "t", "--log-level", "ERROR"],
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-3000:]
        peak_rss_mb = int(done.stdout.split()[-1]) / 1024
        print(f"hostile crawl: {elapsed:.1f} s, peak RSS {peak_rss_mb:.0f} MB")
        assert peak_rss_mb < 1536

        archive = Archive.open(str(archive_dir))
        (manifest,) = archive.iter_run_manifests("localnews")
        errors: dict[str, set[str]] = {}
        for error in manifest["errors"]:
            errors.setdefault(error["url"], set()).add(error["kind"])

        # Every hostile case is named, with a kind that says what happened.
        assert "not_html" in errors[f"{base}/h/binary-labelled-html"]
        assert "too_large" in errors[f"{base}/h/sixty-megabyte-page"]
        assert "too_large" in errors[f"{base}/h/gzip-bomb"]
        assert "bad_sitemap" in errors[f"{base}/h/entity-bomb.xml"]
        assert "sitemap_loop" in errors[f"{base}/h/self-index.xml"]
        assert "too_many_redirects" in errors[f"{base}/h/loop-a"]
        assert "no_article_text" in errors[f"{base}/h/empty-page"]
        records = {r.url: r for r in archive.iter_records()}
        assert errors[f"{base}/h/nul-bytes"] & {"not_html", "no_article_text"}
        assert "no_article_text" in errors[f"{base}/h/nested-divs"]
        assert "too_large" in errors[f"{base}/h/huge-sitemap.xml"]
        assert "too_large" in errors[f"{base}/h/sitemap-bomb.xml.gz"]
        assert not any("listed-by-huge-sitemap" in t for t in site.requests)
        # deep-0 is configured (level 0); deep-4 would be a fourth level of indexes.
        assert errors[f"{base}/h/deep-4.xml"] == {"sitemap_too_deep"}
        assert {f"/h/deep-{n}.xml" for n in range(4)} <= set(site.requests)
        assert not {f"/h/deep-{n}.xml" for n in range(4, 9)} & set(site.requests)
        assert errors[f"{base}/h/to-local-file"] == {"offsite_redirect"}
        # The windows-1252 page is decoded right and archived.
        story = records[f"{base}/h/windows-1252-story"]
        text = archive.read_text(story)
        assert "caf\u00e9 on the corner now charges \u20ac3.50" in text
        assert "na\u00efve customers \u201cshrug\u201d" in text
        # The real articles beside them are all archived.
        served = {base + p.path for p in site.pages}
        assert len([u for u in records if u.split("?")[0] in served]) == len(site.pages)
        assert manifest["counts"]["archived"] == len(site.pages) + 1
        # Nothing timed out: each case was stopped by what it is.
        assert not any("timeout" in kinds for kinds in errors.values()), errors


def test_a_page_that_never_comes_is_a_timeout_and_the_crawl_goes_on(corpus, tmp_path):
    """The site takes the request for a page and sends nothing back (until the test lets
    it, once the crawl has ended): the page is recorded as a ``timeout``, the site's other
    pages are archived."""
    answer = threading.Event()
    with NewsSite(corpus[:2], feed_size=0) as site:
        base = site.base_url
        never = f"{base}/t/never-answered"
        site.add_route("/t/never-answered", b"<html><body><p>too late</p></body></html>",
                       headers=HTML, wait_for=answer)
        site.add_route("/t/sitemap.xml", _sitemap([never]), headers={"Content-Type": XML_TYPE})
        entry = local_site_config(site, feeds=[], download_timeout=SHORT_TIMEOUT_SECONDS,
                                  sitemaps=[f"{base}/robots.txt", f"{base}/t/sitemap.xml"])
        try:
            crawl_site_subprocess(entry, str(tmp_path / "archive"),
                                  {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                                  tmp_path / "data", "never")
        finally:
            answer.set()  # the held requests end; their client is long gone
        assert "/t/never-answered" in site.requests
        served = {base + p.path for p in site.pages}
    archive = Archive.open(str(tmp_path / "archive"))
    (manifest,) = archive.iter_run_manifests("localnews")
    errors = [(e["url"], e["kind"]) for e in manifest["errors"]]
    assert errors == [(never, "timeout")], errors
    assert {r.url.split("?")[0] for r in archive.iter_records()} == served


def test_soft_blocks_are_recorded_and_teasers_flagged(corpus, tmp_path):
    """A CAPTCHA page and a consent wall are recorded as blocked, never archived as
    articles; a paywall teaser is archived flagged ``paywalled``."""
    from tests.test_softblock import CLOUDFLARE_CHALLENGE, GOOGLE_CONSENT, PAYWALL_TEASER

    with NewsSite(corpus[:2], feed_size=0) as site:
        base = site.base_url
        site.add_route("/b/challenge-page-one", CLOUDFLARE_CHALLENGE.encode(), status=403, headers=HTML)
        site.add_route("/b/consent-wall-two", GOOGLE_CONSENT.encode(), headers=HTML)
        site.add_route("/b/subscriber-story-three", PAYWALL_TEASER.encode(), headers=HTML)
        urls = [f"{base}/b/challenge-page-one", f"{base}/b/consent-wall-two",
                f"{base}/b/subscriber-story-three"]
        site.add_route("/b/sitemap.xml", _sitemap(urls), headers={"Content-Type": XML_TYPE})
        entry = local_site_config(site, feeds=[], sitemaps=[f"{base}/robots.txt", f"{base}/b/sitemap.xml"])
        crawl_site_subprocess(entry, str(tmp_path / "archive"),
                              {**os.environ, "PYTHONPATH": str(REPO_ROOT)}, tmp_path / "data", "soft")
    archive = Archive.open(str(tmp_path / "archive"))
    (manifest,) = archive.iter_run_manifests("localnews")
    kinds = {e["url"]: e["kind"] for e in manifest["errors"]}
    # The 403 of the challenge is what the crawler sees first: an HTTP error, said so.
    assert kinds[urls[0]] in ("http_403", "blocked_captcha")
    assert kinds[urls[1]] == "blocked_consent"
    records = {r.url: r for r in archive.iter_records()}
    assert urls[0] not in records and urls[1] not in records
    assert records[urls[2]].paywalled is True
    assert not any(r.paywalled for u, r in records.items() if u != urls[2])
    assert len(records) == 3
