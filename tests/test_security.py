"""Security: where a crawl may connect, what credentials can leak, and what a config may say.

The reach rule is tested with real listeners that must not be hit: "canaries" on other
loopback ports and addresses, reached through spellings a hostile site would use (a DNS
name, decimal and octal IPv4, another loopback address, an IPv6-mapped address, a
redirect). The canaries' hosts are inside the site's ``allowed_domains``, so that only the
private-address rule stands between the crawler and them; the site itself, on 127.0.0.1,
is allowed by ``allow_private_hosts``.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import json
import os
import socketserver
import threading
from datetime import date
from pathlib import Path

import pytest

from spiders.config import SiteConfig
from spiders.reach import address_kind, address_refusal, ip_literal
from spiders.redact import MASK, redact, secrets_in
from storage import Archive
from tests.conftest import REPO_ROOT, crawl_site_subprocess, local_site_config, write_sites_file
from tests.newssite import SITEMAP_NS, XML_TYPE, NewsSite


class Canary(socketserver.ThreadingTCPServer):
    """A listener that counts every connection made to it (and answers like a web server,
    so that a crawler that got through would go on and fetch)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str) -> None:
        self.connections: list[bytes] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(inner) -> None:  # noqa: N805
                inner.server.connections.append(inner.rfile.readline(4096))
                body = b"<html><body><p>internal secrets</p></body></html>"
                inner.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                  % (len(body), body))

        super().__init__((host, 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def _urlset(urls: list[str]) -> bytes:
    return (f'<?xml version="1.0"?><urlset xmlns="{SITEMAP_NS}">'
            + "".join(f"<url><loc>{u}</loc></url>" for u in urls) + "</urlset>").encode()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


# -- reach: what the crawler connects to -------------------------------------------------


def test_private_addresses_are_refused_and_recorded(corpus, tmp_path):
    same_host, other_host, offsite = Canary("127.0.0.1"), Canary("127.0.0.2"), Canary("127.0.0.3")
    try:
        with NewsSite(corpus[:3], feed_size=0) as site:
            base = site.base_url
            a, b = same_host.port, other_host.port
            listed = {
                # The site's own address, spelled so that only resolving it tells.
                f"http://localhost:{a}/news/via-a-dns-name": "localhost is 127.0.0.1",
                f"http://2130706433:{a}/news/via-decimal-ipv4": "2130706433 is 127.0.0.1",
                f"http://0177.0.0.1:{a}/news/via-octal-ipv4": "0177.0.0.1 is 127.0.0.1",
                # Another loopback address, as such and IPv6-mapped.
                f"http://127.0.0.2:{b}/news/via-another-loopback": "127.0.0.2 is a loopback",
                f"http://[::ffff:127.0.0.2]:{b}/news/via-mapped-ipv6":
                    "::ffff:127.0.0.2 is a loopback",
                # The cloud's metadata endpoint: nothing listens here, nothing may be tried.
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/":
                    "169.254.169.254 is a link-local",
            }
            site.add_route("/s/sitemap.xml", _urlset([*listed, f"{base}/r/to-private",
                                                      f"{base}/r/to-offsite"]),
                           headers={"Content-Type": XML_TYPE})
            # A sitemap index may list sitemaps at private addresses too.
            private_sitemap = f"http://localhost:{a}/private-sitemap.xml"
            site.add_route("/s/index.xml", (
                f'<?xml version="1.0"?><sitemapindex xmlns="{SITEMAP_NS}">'
                f"<sitemap><loc>{private_sitemap}</loc></sitemap></sitemapindex>").encode(),
                headers={"Content-Type": XML_TYPE})
            private_target = f"http://127.0.0.2:{b}/news/redirected-inside-allowed-domains"
            offsite_target = f"http://127.0.0.3:{offsite.port}/news/redirected-off-the-site"
            site.add_route("/r/to-private", b"", status=302, headers={"Location": private_target})
            site.add_route("/r/to-offsite", b"", status=301, headers={"Location": offsite_target})

            entry = local_site_config(
                site, name="reach", feeds=[],
                sitemaps=[f"{base}/robots.txt", f"{base}/s/sitemap.xml", f"{base}/s/index.xml"],
                allowed_domains=["127.0.0.1", "localhost", "2130706433", "0177.0.0.1",
                                 "127.0.0.2", "::ffff:127.0.0.2", "169.254.169.254"])
            assert entry["allow_private_hosts"] == ["127.0.0.1"]
            report = crawl_site_subprocess(entry, str(tmp_path / "archive"), _env(),
                                           tmp_path / "data", "reach", timeout=120)
            served = {site.url_for(p) for p in site.pages}

        # Not one connection reached a canary: not even for robots.txt.
        assert same_host.connections == [] and other_host.connections == []
        assert offsite.connections == []

        errors = {e["url"]: e for e in report["errors"]}
        for url, says in listed.items():
            assert errors[url]["kind"] == "private_address", (url, errors.get(url))
            assert says in errors[url]["reason"] and "allow_private_hosts" in errors[url]["reason"]
        assert errors[private_sitemap]["kind"] == "private_address"
        # A redirect is named by the URL that was listed, with where it led.
        redirected = errors[f"{base}/r/to-private"]
        assert redirected["kind"] == "private_address"
        assert redirected["reason"].startswith(
            f"redirect to {private_target}: 127.0.0.2 is a loopback")
        assert errors[f"{base}/r/to-offsite"]["kind"] == "offsite_redirect"
        assert offsite_target in errors[f"{base}/r/to-offsite"]["reason"]
        assert len(report["errors"]) == len(listed) + 3

        # The rest of the crawl is undisturbed: the site's own articles are all archived.
        archive = Archive.open(str(tmp_path / "archive"))
        assert {r.url for r in archive.iter_records()} == served
        (manifest,) = archive.iter_run_manifests("reach")
        assert manifest["errors_by_kind"] == {"private_address": len(listed) + 2,
                                              "offsite_redirect": 1}
    finally:
        for canary in (same_host, other_host, offsite):
            canary.close()


def test_a_site_on_a_loopback_address_needs_allow_private_hosts(corpus, tmp_path):
    """Without the allowance, crawling the local site is refused before anything is sent."""
    with NewsSite(corpus[:2], feed_size=0) as site:
        entry = local_site_config(site, name="notallowed", allow_private_hosts=[])
        report = crawl_site_subprocess(entry, str(tmp_path / "archive"), _env(),
                                       tmp_path / "data", "notallowed", timeout=120)
        assert site.requests == []
    configured = set(entry["sitemaps"]) | set(entry["feeds"])
    assert {e["url"] for e in report["errors"]} == configured
    for error in report["errors"]:
        assert error["kind"] == "private_address"
        assert error["reason"] == ("127.0.0.1 is a loopback address; list the host in "
                                   "allow_private_hosts to crawl it")


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("100.64.0.1", "reserved"),
    ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    # IPv6 spellings of IPv4 addresses are judged by the address they carry.
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"),
    ("::127.0.0.1", "loopback"), ("2002:7f00:1::", "loopback"),
    ("64:ff9b::a9fe:a9fe", "link-local"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ("8.8.8.8", None), ("2606:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_address_kinds(address, kind):
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_address_refusal_names_the_host_and_honours_the_allowance():
    assert address_refusal("localhost", ["127.0.0.1"]) == (
        "localhost is 127.0.0.1, which is a loopback address; list the host in "
        "allow_private_hosts to crawl it")
    assert address_refusal("LocalHost.", ["127.0.0.1"], ["localhost"]) is None
    assert address_refusal("news.example", ["93.184.216.34"]) is None
    # Every address counts: one private address among public ones is enough.
    assert "10.0.0.7" in address_refusal("news.example", ["93.184.216.34", "10.0.0.7"])
    # The allowance is for exact hosts: another name at the same address is refused.
    assert address_refusal("127.0.0.1", ["127.0.0.1"], ["localhost"]) is not None
    # Only standard notations are literals; other spellings must be resolved.
    assert ip_literal("[::1]") == ipaddress.ip_address("::1")
    assert ip_literal("2130706433") is None and ip_literal("0177.0.0.1") is None


# -- secrets ------------------------------------------------------------------------------


def test_redact_masks_credentials():
    env = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzz",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE12345", "AWS_DEFAULT_REGION": "us-east-1", "MY_API_TOKEN": "short", "HOME": "/home/someone"}
    secrets = secrets_in(env)
    assert set(secrets) == {env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]}
    line = ("headers={'Authorization': b'AWS4-HMAC-SHA256 Credential=ASIAOTHERKEY99/20260101/"
            "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc', "
            "'X-Amz-Security-Token': b'FQoGZXIvYXdzEXAMPLETOKEN'} key AKIAEXAMPLE12345 "
            "secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYzz region us-east-1")
    clean = redact(line, secrets)
    for leaked in ("ASIAOTHERKEY99", "FQoGZXIvYXdzEXAMPLETOKEN", "AKIAEXAMPLE12345",
                   env["AWS_SECRET_ACCESS_KEY"]):
        assert leaked not in clean
    assert f"Credential={MASK}/20260101/" in clean and "region us-east-1" in clean
    assert "Signature=abc" in clean  # a signature is no credential


# -- keys and the local archive: nothing escapes its place --------------------------------


@pytest.mark.parametrize("site", ["../../etc", "/etc", "a/b", "..", "news\n", "News", "a b",
                                  "x" * 65, ""])
def test_hostile_site_names_make_no_key(site):
    from storage import InvalidKey
    from storage.keys import article_id, article_keys, run_manifest_key, warc_key

    aid = article_id("https://example.com/a")
    for build in (lambda: article_keys(site, date(2024, 5, 7), aid),
                  lambda: warc_key(site, date(2024, 5, 7), "run1", 0),
                  lambda: run_manifest_key(site, date(2024, 5, 7), "run1")):
        with pytest.raises(InvalidKey):
            build()


def test_keys_from_hostile_urls_and_dates_stay_in_place():
    from storage import InvalidKey
    from storage.keys import article_id, article_keys, run_manifest_key

    # A URL's own ../ or odd characters only ever reach a key as a hash.
    for url in ("https://example.com/../../etc/passwd", "https://example.com/a/\n/../b",
                "file:///etc/passwd", "https://example.com/%2e%2e/%2e%2e/x"):
        keys = article_keys("example", date(2024, 5, 7), article_id(url))
        assert keys.prefix.startswith("articles/example/2024/05/07/")
        assert ".." not in keys.prefix and "\n" not in keys.prefix
    # Dates are formatted from dates only, never from text.
    for day in ("../../etc", "2024/05/07", None):
        with pytest.raises(InvalidKey):
            run_manifest_key("example", day, "run1")
    with pytest.raises(InvalidKey):
        run_manifest_key("example", date(2024, 5, 7), "../run")


@pytest.mark.parametrize("key", ["a/\n/b", "a\rb", "a\x7fb", "a\tb", "a\x00b"])
def test_keys_with_control_characters_are_refused(key):
    from storage import InvalidKey
    from storage.backends import check_key

    with pytest.raises(InvalidKey):
        check_key(key)


def test_local_archive_never_reads_or_writes_outside_its_root(tmp_path):
    from storage import Archive, InvalidKey, LocalBackend

    root, outside = tmp_path / "archive", tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    backend = LocalBackend(root)
    backend.put("articles/ok.json", b"{}")
    # A symlink planted in the archive, leading out of it.
    (root / "articles" / "planted.json").symlink_to(outside / "passwd")
    for key in ("../outside/passwd", "/etc/passwd", "articles/../../outside/passwd",
                "articles/planted.json"):
        with pytest.raises(InvalidKey):
            backend.get(key)
        with pytest.raises(InvalidKey):
            backend.put(key, b"pwned")
        with pytest.raises(InvalidKey):
            backend.put_file(key, outside / "passwd")
    # Listing skips the planted link rather than failing every reader of the archive.
    assert list(backend.iter_keys("articles/")) == ["articles/ok.json"]
    assert (outside / "passwd").read_text() == "root:x:0:0"
    assert sorted(p.name for p in outside.iterdir()) == ["passwd"]
    # A record whose keys were tampered with cannot lead a reader out either.
    archive = Archive(backend)
    meta = {"raw_key": "../outside/passwd", "text_key": "/etc/passwd"}
    for key in meta.values():
        with pytest.raises(InvalidKey):
            archive.backend.get(archive.backend.relative(key))


def test_credential_headers_are_not_archived(tmp_path):
    """A request's Authorization or Proxy-Authorization (Scrapy adds the latter for a proxy
    URL with a password) would otherwise be kept in the WARC request record."""
    from scrapy.http import HtmlResponse, Request
    from scrapy.utils.test import get_crawler

    from spiders.news import NewsSpider

    site = SiteConfig(name="x", allowed_domains=["example.com"], feeds=["https://example.com/f"])
    spider = NewsSpider.from_crawler(get_crawler(NewsSpider), site=site,
                                     archive_url=str(tmp_path / "archive"))
    url = "https://example.com/news/a-story-here"
    request = Request(url, headers={"Authorization": "Basic dXNlcjpzZWNyZXQ=",
                                    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
                                    "Cookie": "session=s3cr3t", "User-Agent": "newsarchive-test"})
    response = HtmlResponse(url, body=b"<html><body><p>A story.</p></body></html>",
                            headers={"Content-Type": "text/html"}, request=request)
    (page,) = spider.parse_article(response, via="sitemap", date_hint=None, canonical=url)
    assert page.request_headers == [("User-Agent", "newsarchive-test")]


def test_settings_objects_hold_no_credentials(monkeypatch, tmp_path):
    """Credentials stay with boto3's chain: no settings object, ours or Scrapy's, holds or
    prints them, and what a crawl subprocess is given on its command line has none."""
    from flows.crawl import spider_command
    from flows.settings import Settings
    from spiders.settings import crawl_settings

    secret, key_id = "wJalrSETTINGSsecret0123/x", "AKIASETTINGS0123"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("NEWSARCHIVE_ARCHIVE_URL", "s3://bucket/news")
    settings = Settings()
    site = SiteConfig.model_validate(
        {"name": "x", "allowed_domains": ["example.com"], "feeds": ["https://example.com/f"]})
    scrapy_settings = crawl_settings(site, archive_url="s3://bucket/news", run_id="r1",
                                     user_agent=settings.user_agent)
    printed = [repr(settings), str(settings), settings.model_dump_json(),
               json.dumps(scrapy_settings.copy_to_dict(), default=str),
               " ".join(spider_command(site, "s3://bucket/news", settings))]
    assert "s3://bucket/news" in printed[0]  # the dump does show the settings' values
    for text in printed:
        assert secret not in text and key_id not in text


# -- secrets: a real crawl with credentials in its environment ----------------------------


def _decoded_objects(s3_archive) -> dict[str, str]:
    """Every object in the bucket as text: gzip inflated (raw pages, WARC files), Parquet
    read back row by row (its columns are zstd-compressed on disk)."""
    import pyarrow.parquet as pq

    out = {}
    for key in s3_archive.listing():
        data = s3_archive.get(key)
        if key.endswith(".gz"):
            data = gzip.decompress(data)  # every member, for WARC files
        if key.endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
            out[key] = json.dumps(rows, default=str)
        else:
            out[key] = data.decode("utf-8", errors="replace")
    return out


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root``, as text (gzip inflated)."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            out[str(path)] = data.decode("utf-8", errors="replace")
    return out


def test_credentials_leave_no_trace(corpus, s3_archive, run_cli, tmp_path):
    """A crawl at DEBUG through the CLI and Prefect into S3, with distinctive credentials:
    neither the secret key nor the access key id is in any log line, stats file, run
    manifest, archived object, Prefect artifact, log or database row."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.settings import get_current_settings

    token = os.urandom(8).hex()
    secret, key_id = f"wJalrSECRET{token}Kx/7q+Zz", f"AKIA{token.upper()}"
    env = {**s3_archive.env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret,
           "NEWSARCHIVE_LOG_LEVEL": "DEBUG"}
    with NewsSite(corpus[:3], feed_size=0) as site:
        config = write_sites_file(tmp_path / "sites.toml", s3_archive.url,
                                  [local_site_config(site, name="secrets", feeds=[])])
        done = run_cli("crawl", "--config", str(config), env=env)
        base_url = site.base_url
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, str] = {"stdout": done.stdout, "stderr": done.stderr}

    objects = _decoded_objects(s3_archive)
    found.update(objects)
    # The scan read what it claims to: inflated pages and WARC files, catalog rows, records.
    by_kind = {kind: [k for k in objects if k.endswith(kind)]
               for kind in ("raw.html.gz", "text.txt", "meta.json", ".warc.gz", ".parquet")}
    assert len(by_kind["meta.json"]) == 3 and all(by_kind.values()), by_kind
    assert all("<html" in objects[k].lower() for k in by_kind["raw.html.gz"])
    assert all(objects[k].startswith("WARC/1.1") for k in by_kind[".warc.gz"])
    assert all(base_url in objects[k] for k in by_kind[".parquet"] + by_kind["meta.json"])
    (manifest_key,) = [k for k in objects if "/runs/" in k]
    assert json.loads(objects[manifest_key])["site"] == "secrets"

    data_files = _files(tmp_path / "data")  # stats files and any workspace left
    (stats_path,) = [p for p in data_files if p.endswith("-secrets.json")]
    found.update(data_files)

    run_id = json.loads(data_files[stats_path])["run_id"]
    with get_client(sync_client=True) as client:
        artifacts = [a for a in client.read_artifacts()
                     if a.data and f"# Crawl run {run_id}" in a.data and "| secrets |" in a.data]
        assert len(artifacts) == 1
        found["artifact"] = artifacts[0].data
        flow_run = client.read_flow_run(artifacts[0].flow_run_id)
        found["flow run"] = flow_run.model_dump_json()
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        assert logs
        found["prefect logs"] = "\n".join(log.message for log in logs)
    # And the Prefect server's database itself (flow parameters, states, logs, artifacts).
    database = Path(get_current_settings().server.database.connection_url
                    .get_secret_value().split(":///", 1)[1]).parent
    database_files = _files(database)
    assert database_files
    found.update(database_files)

    leaks = {where: needle for where, text in found.items()
             for needle in (secret, key_id, token) if needle in text}
    assert leaks == {}
    # The log is the crawl's at DEBUG, botocore's signed requests included, masked.
    assert "[scrapy.core.engine] DEBUG: Crawled (200)" in done.stderr
    assert done.stderr.count("Credential=***/") >= 10
    # The needles are findable: the process really ran with them.
    assert secret in env.values() and key_id in env.values()
