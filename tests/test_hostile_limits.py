"""Bounds that hold on every path, against a hostile site (issue 17, point 4): a page built to
make a regular expression cubic, a response whose headers never end, a proxy that would
resolve names to private addresses, and a configuration that would never finish.

Each runs a real crawl subprocess against real servers on 127.0.0.x; none asserts a time.
"""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spiders.config import SiteConfig
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config, write_sites_file
from tests.newssite import SITEMAP_NS, XML_TYPE, NewsSite

HTML = {"Content-Type": "text/html; charset=utf-8"}


def archived_urls(archive: Path, site: str = "localnews") -> set[str]:
    return {r.url for r in Archive.open(str(archive)).iter_records(site=site)}


def errors_of(report: dict, kind: str) -> list[dict]:
    return [e for e in report["errors"] if e["kind"] == kind]


def _sitemap(urls: list[str]) -> bytes:
    return (f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">'
            + "".join(f"<url><loc>{u}</loc></url>" for u in urls) + "</urlset>").encode()


# -- 1. a head that made looks_like_article's regular expression cubic --------------------

def test_a_hostile_head_behind_a_followed_link_does_not_hang_the_crawl(corpus, tmp_path):
    """A front followed with follow_depth=2 links to a page whose head holds `<meta
    property='og:type' ` 8,000 times: the old regular expression took hours over it, on the
    reactor, and the crawl never ended. Now the crawl ends and archives the real article."""
    article = next(p for p in corpus if p.path.rstrip("/").rsplit("/", 1)[-1].count("-") >= 2
                   and not p.query)
    with NewsSite([article], feed_size=0) as site:
        hostile = "<html><head>" + "<meta property='og:type' " * 8000
        site.add_route("/deep/section", hostile.encode(), headers=HTML)
        site.add_route("/front", (f'<html><body><a href="/deep/section">more</a>'
                                  f'<a href="{article.path}">story</a></body></html>').encode(),
                       headers=HTML)
        entry = local_site_config(site, sitemaps=[], feeds=[],
                                  start_urls=[f"{site.base_url}/front"], follow_depth=2)
        # Hours before the fix: the crawl's own timeout of 300 s is the hang guard.
        report = crawl_site_subprocess(entry, str(tmp_path / "archive"), _env(),
                                       tmp_path / "data", "run-hostile-head")
        assert "/deep/section" in site.requests
        assert report["finish_reason"] == "finished"
        assert archived_urls(tmp_path / "archive") == {site.url_for(article)}


# -- 2. response headers that never end ---------------------------------------------------

class _HeaderFlood(socketserver.ThreadingTCPServer):
    """Answers every request with a status line and then 8 KB header lines, up to
    ``limit`` bytes, without ever ending the header section; records whether the client
    dropped the connection before that."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, limit: int = 64 * 1024 * 1024) -> None:
        self.limit = limit
        self.sent: list[int] = []
        self.dropped: list[bool] = []
        flood = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.recv(65536)
                line = b"X-Flood: " + b"f" * 8192 + b"\r\n"
                sent, dropped = 0, False
                try:
                    self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")
                    while sent < flood.limit:
                        self.request.sendall(line)
                        sent += len(line)
                except OSError:
                    dropped = True
                flood.sent.append(sent)
                flood.dropped.append(dropped)

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_response_whose_headers_never_end_is_cut_off_as_too_large(corpus, tmp_path):
    flood = _HeaderFlood()
    threading.Thread(target=flood.serve_forever, daemon=True).start()
    try:
        flood_url = f"http://127.0.0.1:{flood.server_address[1]}/h/flood-article"
        with NewsSite(corpus[:2], feed_size=0) as site:
            site.add_route("/h/sitemap.xml", _sitemap(
                [flood_url, *(site.url_for(p) for p in corpus[:2])]),
                headers={"Content-Type": XML_TYPE})
            entry = local_site_config(site, feeds=[], sitemaps=[f"{site.base_url}/h/sitemap.xml"])
            expected = {site.url_for(p) for p in corpus[:2]}
            report = crawl_site_subprocess(entry, str(tmp_path / "archive"), _env(),
                                           tmp_path / "data", "run-flood")
        # The crawl dropped the connection long before the 64 MB the server would send;
        # before the bound, it read all of it (and a 25 s flood took it to 1.9 GB).
        assert flood.dropped and all(flood.dropped), (flood.sent, flood.dropped)
        assert max(flood.sent) < flood.limit
        too_large = errors_of(report, "too_large")
        assert [e["url"] for e in too_large] == [flood_url], report["errors"]
        assert "response headers over 256 KiB" in too_large[0]["reason"]
        assert archived_urls(tmp_path / "archive") == expected
    finally:
        flood.shutdown()
        flood.server_close()


# -- 3. a proxy must not reach what the crawler may not -----------------------------------

class _Canary(socketserver.ThreadingTCPServer):
    """A listener that only counts the connections it gets."""

    daemon_threads = True

    def __init__(self, host: str) -> None:
        self.connections = 0
        canary = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                canary.connections += 1
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                     b"Content-Length: 36\r\n\r\n<html><body>secret</body></html>\r\n")

        super().__init__((host, 0), Handler)


class _ForwardProxy(socketserver.ThreadingTCPServer):
    """A forward HTTP proxy with DNS of its own: the names in ``names`` resolve, for it,
    to the addresses given (as an intranet's proxy resolves intranet names). It logs each
    request's target, forwards plain-HTTP requests (one per connection) and refuses
    CONNECT."""

    daemon_threads = True

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.targets: list[tuple[str, str]] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request_line = self.rfile.readline().decode("latin-1").strip()
                headers = []
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    headers.append(line)
                method, target, _ = request_line.split(" ", 2)
                if method == "CONNECT":
                    proxy.targets.append((method, target.rsplit(":", 1)[0]))
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                from urllib.parse import urlsplit

                parts = urlsplit(target)
                proxy.targets.append((method, parts.hostname))
                address = proxy.names.get(parts.hostname, parts.hostname)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                with socket.create_connection((address, parts.port or 80), timeout=30) as up:
                    up.sendall(f"{method} {path} HTTP/1.1\r\n".encode("latin-1")
                               + b"".join(h for h in headers
                                          if not h.lower().startswith((b"connection", b"proxy-")))
                               + b"Connection: close\r\n\r\n")
                    while chunk := up.recv(65536):
                        self.wfile.write(chunk)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def canary():
    server = _Canary("127.0.0.9")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_name_only_the_proxy_resolves_is_refused(corpus, canary, tmp_path):
    """Split DNS: `intranet.example` resolves only at the proxy, to an address of the
    intranet (the canary). The crawler cannot check where it leads, so it is not fetched:
    the canary sees no connection, and the refusal is recorded."""
    canary_port = canary.server_address[1]
    proxy = _ForwardProxy({"intranet.example": "127.0.0.9"})
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        secret = f"http://intranet.example:{canary_port}/admin/secret-admin-page"
        with NewsSite(corpus[:2], feed_size=0) as site:
            site.add_route("/h/sitemap.xml", _sitemap(
                [secret, *(site.url_for(p) for p in corpus[:2])]),
                headers={"Content-Type": XML_TYPE})
            entry = local_site_config(site, feeds=[], sitemaps=[f"{site.base_url}/h/sitemap.xml"],
                                      allowed_domains=["127.0.0.1", "intranet.example"])
            expected = {site.url_for(p) for p in corpus[:2]}
            report = crawl_site_subprocess(entry, str(tmp_path / "archive"),
                                           _env(http_proxy=proxy.url), tmp_path / "data",
                                           "run-split-dns")
        assert canary.connections == 0, proxy.targets
        refused = errors_of(report, "private_address")
        # The article, and the robots.txt that would have been asked for first.
        assert {e["url"] for e in refused} == {secret, secret.split("/admin")[0] + "/robots.txt"}, \
            report["errors"]
        assert all("does not resolve here" in e["reason"] for e in refused)
        # The rest went through the proxy, to the address the crawler checked.
        assert ("GET", "127.0.0.1") in proxy.targets
        assert archived_urls(tmp_path / "archive") == expected
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_proxied_request_goes_to_the_checked_address(corpus, canary, tmp_path):
    """DNS rebinding through the proxy: the proxy's DNS answers `localhost` with the canary's
    address, where the crawler's resolved it to 127.0.0.1 (allowed for this site). The
    request names the checked address to the proxy, which therefore never asks its DNS:
    the site's own pages are archived, and the canary sees nothing."""
    proxy = _ForwardProxy({"localhost": "127.0.0.9"})
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with NewsSite(corpus[:2], feed_size=0) as site:
            port = site.base_url.rsplit(":", 1)[1]
            named = [f"http://localhost:{port}{p.path}" for p in corpus[:2]]
            site.add_route("/h/sitemap.xml", _sitemap(named), headers={"Content-Type": XML_TYPE})
            entry = local_site_config(site, feeds=[], allowed_domains=["localhost"],
                                      allow_private_hosts=["localhost"],
                                      sitemaps=[f"http://localhost:{port}/h/sitemap.xml"])
            report = crawl_site_subprocess(entry, str(tmp_path / "archive"),
                                           _env(http_proxy=proxy.url), tmp_path / "data",
                                           "run-pinned")
        assert canary.connections == 0
        assert proxy.targets and {host for _, host in proxy.targets} == {"127.0.0.1"}, \
            proxy.targets
        assert not report["errors"], report["errors"]
        assert archived_urls(tmp_path / "archive") == set(named)
    finally:
        proxy.shutdown()
        proxy.server_close()


def _env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **extra}


# -- 4. nothing in a crawl listens for commands --------------------------------------------

def _listening_sockets(pid: int) -> list[str]:
    """The TCP sockets process ``pid`` listens on, as ``address:port`` in hex (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    listening = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.append(fields[1])
    return listening


def test_a_crawl_opens_no_remote_control_endpoint(corpus, tmp_path):
    """Scrapy 2.19 starts, in every crawl, an HTTP endpoint that runs Python code sent to
    it (behind a token in a file). A crawl of untrusted sites listens on nothing."""
    from spiders.settings import crawl_settings

    site_config = SiteConfig(name="x", allowed_domains=["example.com"],
                             feeds=["https://example.com/rss.xml"])
    settings = crawl_settings(site_config, archive_url="/tmp/a", run_id="r", user_agent="ua")
    assert settings.getbool("REMOTE_CONTROL_ENABLED") is False
    assert settings.getbool("TELNETCONSOLE_ENABLED") is False

    with NewsSite(corpus[:3], feed_size=0) as site:
        site.hold_pages()  # the crawl is certainly running while it is looked at
        entry = local_site_config(site, feeds=[])
        crawl = subprocess.Popen(
            [sys.executable, "-m", "spiders.run", "--site-json",
             SiteConfig.model_validate(entry).model_dump_json(), "--archive",
             str(tmp_path / "archive"), "--run-id", "run-listen", "--stats-file",
             str(tmp_path / "stats.json"), "--data-dir", str(tmp_path / "data"),
             "--user-agent", "t", "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=_env(HOME=str(tmp_path / "home")))
        try:
            deadline = time.monotonic() + 240
            while not site.article_requests():
                assert crawl.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
            assert _listening_sockets(crawl.pid) == []
        finally:
            site.release_pages()
            assert crawl.wait(timeout=300) == 0


# -- 5. credentials never ride in an archive URL --------------------------------------------

@pytest.mark.parametrize("where", ["--archive", "NEWSARCHIVE_ARCHIVE_URL", "config"])
@pytest.mark.parametrize("command", ["crawl", "ls", "browse"])
def test_an_archive_url_with_credentials_is_refused_in_one_line(tmp_path, monkeypatch, capsys,
                                                                where, command):
    """`s3://KEY:SECRET@bucket/prefix` used to be accepted, and the secret then reached
    stderr, Prefect's logs and database, the stats file, the pending manifest, the crawl's
    argv and the web UI's header. It is refused where it comes in, before any of those,
    without being repeated."""
    from flows.cli import main

    url = "s3://AKIAEXAMPLEKEY:wJalrXUtnFEMIsecret@news-bucket/archive"
    config = write_sites_file(tmp_path / "sites.toml", url if where == "config" else "./archive",
                              [{"name": "example", "allowed_domains": ["example.com"],
                                "feeds": ["https://example.com/rss.xml"]}])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSARCHIVE_DATA_DIR", str(tmp_path / "data"))
    args = [command, "--config", str(config)]
    if where == "--archive":
        args += ["--archive", url]
    elif where == "NEWSARCHIVE_ARCHIVE_URL":
        monkeypatch.setenv("NEWSARCHIVE_ARCHIVE_URL", url)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "credentials" in lines[0], err
    assert "wJalrXUtnFEMIsecret" not in err and "AKIAEXAMPLEKEY" not in err
    assert not (tmp_path / "data").exists()  # nothing was started or written


def test_a_front_with_too_many_links_is_read_only_in_part(corpus, tmp_path):
    """A "front" of 6,000 links is not a section front: the first 5,000 are read (in a
    thread, with their canonical forms), the rest are not, and that is recorded."""
    from spiders.news import MAX_FRONT_LINKS

    article = next(p for p in corpus if not p.query)
    with NewsSite([article], feed_size=0) as site:
        links = "".join(f'<a href="/not-an-article/{i}">{i}</a>' for i in range(6_000))
        site.add_route("/front", f'<html><body><a href="{article.path}">story</a>{links}'
                                 f"</body></html>".encode(), headers=HTML)
        entry = local_site_config(site, sitemaps=[], feeds=[], article_pattern=article.path,
                                  start_urls=[f"{site.base_url}/front"])
        report = crawl_site_subprocess(entry, str(tmp_path / "archive"), _env(),
                                       tmp_path / "data", "run-many-links")
        expected, front = {site.url_for(article)}, f"{site.base_url}/front"
    capped = errors_of(report, "too_many_links")
    assert [e["url"] for e in capped] == [front]
    assert str(MAX_FRONT_LINKS) in capped[0]["reason"]
    assert archived_urls(tmp_path / "archive") == expected
