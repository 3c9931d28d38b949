"""What an operator sees on the console: real crawls of local sites through the
``newsarchive`` command in a subprocess, and commands on moto's S3.

At the default level a crawl shows where its full log is, at most one progress line per
site every 5 s, each warning and error in one line (a flood is counted, not printed), and
the summary table at the end; Scrapy's banner, settings, components and stats dump, and the
repr of a dropped page, are in the crawl's log file only. ``--log-level debug`` shows
Scrapy's detail. botocore's INFO chatter is not shown, and no credential is, at any level.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

from flows.cli import build_parser, main
from spiders.console import CONSOLE_PROBLEM_LINES
from tests.conftest import REPO_ROOT, free_port, local_site_config, write_sites_file
from tests.newssite import SITEMAP_NS, XML_TYPE, NewsSite

PROGRESS_INTERVAL = 5.0
"""The shortest time between two progress lines of a site (NEWSARCHIVE_PROGRESS_INTERVAL)."""

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
# What Scrapy prints at INFO, and the repr of a dropped page: none of it on the console.
SCRAPY_DETAIL = ("Scrapy 2.", "Versions:", "Overridden settings", "Enabled extensions",
                 "Enabled downloader middlewares", "Enabled item pipelines",
                 "Dumping Scrapy stats", "'downloader/request_count'", "FetchedPage(",
                 "Spider opened", "Crawled 0 pages")


def progress_lines(stderr: str, site: str) -> list[datetime]:
    """The time stamps of ``site``'s progress lines."""
    pattern = rf"^({STAMP}) INFO {site}: \d+ discovered, \d+ fetched, \d+ archived, " \
              rf"\d+ duplicates, \d+ errors; [\d.]+ pages/s$"
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            for m in re.finditer(pattern, stderr, re.M)]


def copies_sitemap(site: NewsSite, paths: list[str]) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="{SITEMAP_NS}">'
            + "".join(f"<url><loc>{site.base_url}{p}</loc></url>" for p in paths)
            + "</urlset>").encode()


def test_a_crawl_shows_progress_errors_and_the_summary_not_scrapy_detail(corpus, run_cli,
                                                                       tmp_path):
    """Two sites crawled at once, each slowed by its download delay to well over 5 s (a
    lower bound whatever the machine: only the rate limit is checked, never a speed). One
    has two duplicates (copies of its articles) and three pages gone (404); the other a
    flood of 404s."""
    pages_a, pages_b = corpus[:20], corpus[20:80]
    with NewsSite(pages_a, feed_size=0) as site_a, NewsSite(pages_b, feed_size=0) as site_b:
        copies = []
        for n, page in enumerate(pages_a[:2]):
            site_a.add_route(f"/copies/{n}.html", page.html)
            copies.append(f"/copies/{n}.html")
        site_a.add_route("/copies.xml", copies_sitemap(site_a, copies),
                         headers={"Content-Type": XML_TYPE})
        for page in pages_a[-3:]:
            site_a.add_route(page.path, b"gone", status=404)
        flood = pages_b[:50]
        for page in flood:
            site_b.add_route(page.path, b"gone", status=404)
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [
            local_site_config(site_a, name="calm", feeds=[], download_delay=0.5,
                              concurrent_requests=1,
                              sitemaps=[f"{site_a.base_url}/robots.txt",
                                        f"{site_a.base_url}/copies.xml"]),
            local_site_config(site_b, name="flooded", feeds=[], download_delay=0.2,
                              concurrent_requests=1),
        ])
        gone = sorted(site_a.url_for(p) for p in pages_a[-3:])
        started = time.monotonic()
        done = run_cli("crawl", "--config", str(config))
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    err = done.stderr

    # Scrapy's detail is not on the console...
    shown = [detail for detail in SCRAPY_DETAIL if detail in err]
    assert not shown, (shown, err[-4000:])
    assert "[scrapy." not in err and "Traceback" not in err
    # ...it is in each crawl's log file, which one line names.
    for site in ("calm", "flooded"):
        (log_path,) = re.findall(rf"^{STAMP} INFO {site}: the full log of this crawl is in "
                                 rf"(\S+)$", err, re.M)
        assert Path(log_path).parent == (tmp_path / "data" / "crawls").resolve()
        log = Path(log_path).read_text(encoding="utf-8")
        assert "Overridden settings" in log and "Dumping Scrapy stats" in log
        assert "FetchedPage(" not in log

    # Every line is one stamped line (no traceback, no multi-line repr).
    assert all(re.match(rf"{STAMP} (INFO|WARNING|ERROR) ", line) for line in err.splitlines()), err

    # At most one progress line per site per 5 s, and there was one: each crawl took longer.
    for site in ("calm", "flooded"):
        stamps = progress_lines(err, site)
        assert stamps, (site, err[-4000:])
        gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
        assert all(gap >= PROGRESS_INTERVAL - 0.01 for gap in gaps), (site, gaps)
        assert len(stamps) <= elapsed / PROGRESS_INTERVAL + 1, (site, len(stamps), elapsed)

    # Errors reach the console in one line each...
    calm_404 = re.findall(rf"^{STAMP} WARNING calm: error http_404: (\S+): HTTP 404$", err, re.M)
    assert sorted(calm_404) == gone, err[-4000:]
    # ...but a flood is counted, not printed.
    flooded = [line for line in err.splitlines() if " flooded: error http_404: " in line]
    assert len(flooded) == CONSOLE_PROBLEM_LINES, flooded
    assert re.search(rf"^{STAMP} WARNING flooded: {CONSOLE_PROBLEM_LINES} warnings and errors: "
                     r"more are counted, not shown here \(all are in \S+\.log\)$", err, re.M)
    not_shown = re.search(rf"^{STAMP} INFO flooded: (\d+) more warnings and errors were not "
                          r"shown here: see \S+\.log$", err, re.M)
    assert not_shown and int(not_shown.group(1)) == len(flood) - CONSOLE_PROBLEM_LINES

    # The summary table ends the output, with the duplicates and errors counted.
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["site", "status", "discovered", "skipped", "fetched",
                                "archived", "versions", "duplicates", "errors"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert sorted(rows) == ["calm", "flooded"] and len(lines) == 3
    assert rows["calm"][0] == "ok" and int(rows["calm"][6]) >= 1 and rows["calm"][7] == "3"
    assert rows["flooded"][7] == str(len(flood))


def test_log_level_debug_shows_scrapy_detail(corpus, run_cli, tmp_path):
    with NewsSite(corpus[:3], feed_size=0) as site:
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"),
                                  [local_site_config(site, name="detailed", feeds=[])])
        done = run_cli("--log-level", "debug", "crawl", "--config", str(config))
    assert done.returncode == 0, done.stderr[-4000:]
    for detail in ("Overridden settings", "Enabled item pipelines", "Dumping Scrapy stats",
                   "[scrapy.core.engine] DEBUG: Crawled (200)"):
        assert detail in done.stderr, detail
    # The dropped and stored pages are named by their URL, not by their whole record.
    assert "FetchedPage(" not in done.stderr
    assert re.search(r"\[scrapy\.core\.scraper\] DEBUG: Archived http://127\.0\.0\.1:\d+/",
                     done.stderr)
    assert done.stdout.splitlines()[0].split()[:2] == ["site", "status"]


def test_a_backfill_plan_shows_no_scrapy_detail_and_keeps_its_log(corpus, run_cli, tmp_path):
    with NewsSite(corpus[:10], feed_size=0) as site:
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"),
                                  [local_site_config(site, name="planned", feeds=[])])
        planned = run_cli("backfill", "--config", str(config), "--site", "planned",
                          "--since", "2020-01-01", "--until", "2029-12-31", "--dry-run")
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert not [d for d in SCRAPY_DETAIL if d in planned.stderr], planned.stderr[-3000:]
    (log_path,) = re.findall(rf"^{STAMP} INFO planned: the full log of this crawl is in (\S+)$",
                             planned.stderr, re.M)
    assert Path(log_path).parent == (tmp_path / "data" / "crawls").resolve()
    assert "Dumping Scrapy stats" in Path(log_path).read_text(encoding="utf-8")


def test_a_plan_keeps_its_log_in_the_data_dir_of_its_settings(corpus, tmp_path, monkeypatch):
    """make_plan with settings whose data directory is not the environment's: the plan's
    log went to the environment's (or ./.newsarchive), not to the one it was given."""
    from flows.backfill import make_plan
    from flows.settings import Settings
    from spiders.interface import SiteConfig

    monkeypatch.setenv("NEWSARCHIVE_DATA_DIR", str(tmp_path / "elsewhere"))
    given = tmp_path / "given"
    with NewsSite(corpus[:5], feed_size=0) as site:
        config = SiteConfig.model_validate(local_site_config(site, name="planned", feeds=[]))
        plan = make_plan(config, str(tmp_path / "archive"), date(2020, 1, 1),
                         date(2029, 12, 31), Settings(data_dir=given))
    assert plan.total == 5
    logs = list((given / "crawls").glob("plan-planned-*.log"))
    assert len(logs) == 1 and "Dumping Scrapy stats" in logs[0].read_text(encoding="utf-8")
    assert not (tmp_path / "elsewhere").exists()


def test_log_level_is_global_and_accepted_after_the_command_too():
    parser = build_parser()
    assert parser.parse_args(["--log-level", "DEBUG", "ls"]).log_level == "debug"
    assert parser.parse_args(["crawl", "--log-level", "warning"]).log_level == "warning"
    assert parser.parse_args(["ls"]).log_level is None


def test_a_bad_log_level_in_the_environment_is_a_one_line_config_error(monkeypatch, capsys):
    monkeypatch.setenv("NEWSARCHIVE_LOG_LEVEL", "chatty")
    assert main(["ls", "--archive", "./nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("newsarchive: environment: NEWSARCHIVE_LOG_LEVEL: 'chatty' is not one of "
                   "debug, info, warning, error")


def test_a_command_on_s3_shows_no_botocore_chatter_and_no_credentials(s3_archive, run_cli):
    """botocore says at INFO where it found the credentials, on every command; at debug
    it logs each request it signs, the access key id in its Authorization header: masked."""
    token = os.urandom(8).hex()
    key_id, secret = f"AKIA{token.upper()}", f"consoleSECRET{token}/xyz"
    env = {**s3_archive.env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    # Something stored: the archive exists (and has no article to list).
    s3_archive.client.put_object(Bucket=s3_archive.bucket, Key=f"{s3_archive.prefix}/runs/x",
                                 Body=b"{}")
    listed = run_cli("ls", "--archive", s3_archive.url, env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stderr == "", listed.stderr[-3000:]

    detailed = run_cli("--log-level", "debug", "ls", "--archive", s3_archive.url, env=env)
    assert detailed.returncode == 0, detailed.stderr[-3000:]
    output = detailed.stdout + detailed.stderr
    assert "Found credentials in environment variables" in output
    assert "Credential=***/" in output
    assert key_id not in output and secret not in output and token not in output


def test_a_first_command_in_a_terminal_shows_no_prefect_usage_notice(tmp_path):
    """Prefect's client, imported in a terminal under a new PREFECT_HOME, prints that Prefect
    collects usage data (and would report to a server with analytics on). With analytics off,
    the default, a user's first command shows its own line and nothing of Prefect's."""
    from prefect._internal.analytics.ci_detection import CI_ENV_VARS  # Prefect keeps quiet there

    closed = free_port()
    config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"), [{
        "name": "unreached", "allowed_domains": ["example.org"],
        "sitemaps": ["https://example.org/sitemap.xml"]}])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k != "DO_NOT_TRACK" and k not in CI_ENV_VARS}
    env.update(PREFECT_API_URL=f"http://127.0.0.1:{closed}/api",
               PREFECT_HOME=str(tmp_path / "new-home"), NEWSARCHIVE_DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=str(REPO_ROOT))
    controller, terminal = os.openpty()
    try:
        with subprocess.Popen([sys.executable, "-m", "flows", "deploy", "--pool", "nowhere",
                               "--config", str(config)], stdin=terminal, stdout=terminal,
                              stderr=terminal, cwd=tmp_path, env=env) as command:
            os.close(terminal)
            shown = b""
            while True:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the command is gone, and the terminal with it
                    break
                if not chunk:
                    break
                shown += chunk
            assert command.wait(timeout=300) == 1
    finally:
        os.close(controller)
    text = shown.decode().replace("\r\n", "\n")
    assert re.fullmatch(rf"newsarchive: Prefect is not available: cannot reach "
                        rf"http://127\.0\.0\.1:{closed}/api: .+\n", text), text
