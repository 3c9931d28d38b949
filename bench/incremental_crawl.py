"""Incremental crawling (issue 19): what a scheduled crawl costs once a site is archived, and
a year-long backfill against one crawl of the same pages.

    .venv/bin/python bench/incremental_crawl.py [--sizes 1000,10000,100000] [--per-sitemap 100]
        [--baseline-tree /tmp/wt_old] [--baseline-sizes 1000,10000] [--backfill-days 365]
        [--parts second,backfill] [--no-verify] [--quick]

**Second crawl.** For each size N, a local site (made on request, in a process of its own,
bench/incremental_servers.py) whose robots.txt names a sitemap index of N / M daily
sitemaps of M articles each (``--per-sitemap``), each listed in the index with its
``<lastmod>``, plus an RSS feed of the newest 50. Sitemaps, index and feed carry a strong
``ETag`` and ``Last-Modified`` and answer ``If-None-Match`` / ``If-Modified-Since`` with 304.
Articles are small synthetic news pages (headline, byline, ``<time>``, og:type article,
four to six paragraphs drawn from a seeded generator, no two alike). The archive is a
bucket of moto's S3 server, in a process of its own behind a middleware that counts S3
requests by method and key prefix.

1. First state, every listed article archived: at N <= 1,000 by a real ``newsarchive
   crawl`` of the whole site; at larger N by seeding, in this process, what a first crawl
   leaves that the next one reads before fetching: each article's URL marker and complete
   ``meta.json`` (``storage.Archive``'s own ``place``, marker and ``to_json``), and, when the
   storage API has them (``storage.summary.write_segment``), the site's URL summary and discovery
   state (:func:`seed_discovery_state`). Not seeded: raw pages, texts, WARC files, catalog
   rows, content claims, LSH buckets, run manifests (the look-ups before fetching read none
   of them). At 1,000 the seeded variant runs too, and its second crawl is compared with the
   one after the real first crawl (``--no-verify`` skips the real one).
2. Phase 2: twenty new articles in the newest sitemap (its ``lastmod`` and ETag change) and
   at the top of the feed.
3. The measured second crawl: ``newsarchive crawl --config sites.toml --archive s3://...``,
   a real CLI run against a Prefect server started once beforehand (as under ``serve``).

Printed per size: the site's requests by kind (and how many were answered 304), S3
requests by method and prefix, wall time, CPU seconds of the crawl's process tree
(``getrusage(RUSAGE_CHILDREN)``, this process being a child subreaper), peak RSS of the tree
(sampled from /proc, bench/throughput.py's ``measure``); moto's and the site's own CPU apart.
The issue's targets are checked: site requests <= robots + index + one sitemap + feed + 20
articles, S3 requests <= 60 + 12 x 20, wall time at the largest size within 1.5x of 1,000.

**Backfill.** A second site: ``--backfill-days`` days (365) of two articles a day, in monthly
sitemaps whose entries carry ``news:publication_date``. ``newsarchive backfill`` of those
days into a fresh local archive, then ``newsarchive crawl`` of the same site into another;
their wall times and ratio (the target: at most 2x).

``--baseline-tree PATH`` runs everything again with another checkout's ``newsarchive``
(``PATH/.venv/bin/newsarchive``, run in ``PATH``), e.g. the code before the change, and
prints its figures beside the current tree's; ``--baseline-sizes`` limits its sizes (its
second crawl at 100,000 makes ~180,000 S3 requests). ``--quick``: size 1,000 and a 30-day
backfill.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.incremental_servers import (  # noqa: E402
    NEW_ARTICLES,
    S3_PREFIXES,
    NewsModel,
    article_content,
    pack_objects,
    w3c,
)
from bench.throughput import (  # noqa: E402
    SITE_SETTINGS,
    VENV_BIN,
    Measurement,
    _become_subreaper,
    _cpu_seconds,
    measure,
    start_prefect_server,
)

SITE_NAME = "bench"
BUCKET_PREFIX = "archive"
SERVERS = Path(__file__).resolve().parent / "incremental_servers.py"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
SEED_RUN_ID = "bench-seed"
SEED_BATCH = 5000
"""Articles seeded per load into moto."""
CONTENT_TYPE_JSON = "application/json; charset=utf-8"
# The targets for the second crawl.
SITE_TARGET = 1 + 1 + 1 + 1 + NEW_ARTICLES  # robots, index, the changed sitemap, feed, articles
S3_TARGET = 60 + 12 * NEW_ARTICLES
WALL_TARGET = 1.5
BACKFILL_TARGET = 2.0

_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:7.0f} s] {message}", flush=True)


# -- servers ------------------------------------------------------------------------------


def start_server(args: list[str], port_file: Path) -> tuple[subprocess.Popen, int]:
    """One of bench/incremental_servers.py's servers, in a process of its own."""
    process = subprocess.Popen([sys.executable, str(SERVERS), args[0], str(port_file), *args[1:]],
                               cwd=ROOT)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the bench's {args[0]} server did not start")
        time.sleep(0.1)
    return process, json.loads(port_file.read_text())["port"]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def get_json(url: str, method: str = "GET", data: bytes | None = None) -> dict:
    request = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


@dataclass
class Site:
    """A running bench site and the model it serves (the same, rebuilt in this process)."""

    process: subprocess.Popen
    base_url: str
    model: NewsModel

    def counts(self, reset: bool = True) -> dict[str, int]:
        return get_json(f"{self.base_url}/_bench/counts" + ("?reset=1" if reset else ""))

    def publish(self) -> list[int]:
        return get_json(f"{self.base_url}/_bench/publish", method="POST", data=b"")["new"]


def start_site(work: Path, shape: str, a: int, b: int) -> Site:
    """The site (``daily``: ``a`` sitemaps of ``b`` articles; ``year``: ``a`` days of ``b``)."""
    t0 = int(time.time()) - 60
    port_file = work / f"site-{uuid.uuid4().hex[:8]}.json"
    process, port = start_server(["site", shape, str(t0), str(a), str(b)], port_file)
    model = (NewsModel(shape, t0, sitemaps=a, per_sitemap=b) if shape == "daily"
             else NewsModel(shape, t0, days=a, per_day=b))
    return Site(process, f"http://127.0.0.1:{port}", model)


@dataclass
class Servers:
    """What runs for the whole bench: Prefect's server and moto's (counting)."""

    prefect: subprocess.Popen
    prefect_url: str
    s3: subprocess.Popen
    endpoint: str
    exclude: set[int]
    """Processes the measurements leave out (servers)."""

    def s3_counts(self, reset: bool = True) -> dict[str, int]:
        return get_json(f"{self.endpoint}/_bench/s3-counts" + ("?reset=1" if reset else ""))

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self) -> str:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        self._client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys under ``prefix``, relative to it."""
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        return [o["Key"].removeprefix(prefix) for page in pages for o in page.get("Contents", ())]

    def reset_s3(self) -> None:
        """Forget every bucket: a seeded site of 100,000 articles is hundreds of MB in moto."""
        get_json(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")


@dataclass(frozen=True)
class Tree:
    """A checkout whose ``newsarchive`` is measured."""

    label: str
    root: Path

    @property
    def newsarchive(self) -> Path:
        if self.root == ROOT:
            return VENV_BIN / "newsarchive"
        return self.root / ".venv" / "bin" / "newsarchive"

    def env(self, servers: Servers, data_dir: Path) -> dict[str, str]:
        # The tree's own code only: the bench's PYTHONPATH must not leak into a baseline.
        return {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": servers.endpoint,
                "PYTHONPATH": str(self.root), "PREFECT_API_URL": servers.prefect_url,
                "NEWSARCHIVE_DATA_DIR": str(data_dir), "NEWSARCHIVE_LOG_LEVEL": "WARNING"}


def write_config(path: Path, archive_url: str, base_url: str, feeds: bool) -> Path:
    from tests.conftest import write_sites_file

    return write_sites_file(path, archive_url, [{
        "name": SITE_NAME, "allowed_domains": ["127.0.0.1"],
        "allow_private_hosts": ["127.0.0.1"], "sitemaps": [f"{base_url}/robots.txt"],
        "feeds": [f"{base_url}/rss.xml"] if feeds else [], **SITE_SETTINGS,
    }])


# -- seeding ------------------------------------------------------------------------------


class MemoryBackend:
    """The storage Backend protocol over a dict, with an S3 bucket's key placement (keys
    located under ``prefix``), so that :class:`storage.Archive` writes into it the exact
    bytes it would write into the bucket; :meth:`take` hands them over for loading into
    moto at once. Objects taken are forgotten (seeding reads back only what it just wrote)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.prefix = prefix.strip("/") + "/"
        self.url = f"s3://{bucket}/{self.prefix}"
        self.objects: dict[str, tuple[bytes, str | None]] = {}

    def put(self, key, data, *, content_type=None, content_encoding=None) -> None:
        self.objects[key] = (bytes(data), content_type)

    def put_file(self, key, path, *, content_type=None) -> None:
        self.put(key, Path(path).read_bytes(), content_type=content_type)

    def put_if_absent(self, key, data, *, content_type=None) -> bool:
        if key in self.objects:
            return False
        self.put(key, data, content_type=content_type)
        return True

    def get(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        from storage.errors import ObjectNotFound

        if key not in self.objects:
            raise ObjectNotFound(key)
        data = self.objects[key][0]
        return data, f'"{hashlib.md5(data).hexdigest()}"'

    def put_if_match(self, key, data, tag, *, content_type=None) -> bool:
        if key not in self.objects or self.get_tagged(key)[1] != tag:
            return False
        self.put(key, data, content_type=content_type)
        return True

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))

    def locate(self, key: str) -> str:
        return self.prefix + key

    def relative(self, located: str) -> str:
        return located.removeprefix(self.prefix)

    def take(self) -> list[tuple[str, str | None, bytes]]:
        """Every object written since the last call, as (bucket key, content type, bytes)."""
        out = [(self.prefix + key, content_type, data)
               for key, (data, content_type) in self.objects.items()]
        self.objects.clear()
        return out


def seeded_record(model: NewsModel, n: int, base_url: str, fetched_at: datetime):
    """The record a crawl would archive for article ``n`` (unplaced)."""
    from normalize import EXTRACTOR_NAME, EXTRACTOR_VERSION
    from storage import canonicalize_url
    from storage.dedup import text_fingerprint
    from storage.keys import article_id
    from storage.record import Extractor, Record

    content = article_content(n)
    url = base_url + model.path(n)
    canonical = canonicalize_url(url)
    text = content.text
    return Record(
        id=article_id(canonical), site=SITE_NAME, url=url, canonical_url=canonical,
        title=content.title, authors=(content.author,), published=model.published(n),
        modified=None, language="en", fetched_at=fetched_at, http_status=200,
        content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        extractor=Extractor(EXTRACTOR_NAME, EXTRACTOR_VERSION),
        raw_key="", text_key="", meta_key="", aliases=tuple(sorted({url} - {canonical})),
        text_fingerprint=text_fingerprint(text), charset="utf-8",
        description=content.paragraphs[0].split(". ")[0] + ".", section=content.section)


def seed_discovery_state(archive, model: NewsModel, base_url: str,
                         captured: Mapping[str, datetime], now: datetime) -> list[str]:
    """What a first crawl of the new design leaves besides markers and records: the site's
    URL summary and its discovery state (every sitemap's validators and index lastmod, as
    the site sends them before phase 2). Only when the storage API has them; returns what
    was written. A real crawl records the feed too; phase 2 changes the feed, so its
    second crawl reads it in full either way. Its learned boilerplate is not seeded either:
    the second crawl reads that state once, found or not."""
    try:
        from storage.summary import write_segment
    except ImportError:  # a design before the summary
        return []
    write_segment(archive.backend, SITE_NAME, SEED_RUN_ID, captured)
    documents = {}
    for sitemap in model.sitemaps:
        served = model.sitemap(sitemap.name, base_url)
        documents[f"{base_url}/sitemaps/{sitemap.name}"] = {
            "etag": served.etag, "last_modified": served.last_modified_header,
            "lastmod": w3c(model.lastmod(sitemap)), "read_at": now.isoformat()}
    archive.write_site_state(SITE_NAME, "discovery", {
        "version": 1, "full_read_at": now.isoformat(), "documents": documents})
    return ["URL summary", f"discovery state ({len(documents)} sitemaps)"]


def seed(site: Site, servers: Servers, bucket: str) -> str:
    """Write what a first crawl of every article of ``site`` leaves for the look-ups before
    fetching: URL markers and complete records (then :func:`seed_discovery_state`). Built
    with the storage API into memory, loaded into moto a batch at a time."""
    from storage import Archive
    from storage.archive import _marker
    from storage.record import Version

    # The site's validators must be what the model computes here: check the index's.
    with urllib.request.urlopen(f"{site.base_url}/sitemap.xml", timeout=60) as response:
        served_etag = response.headers["ETag"]
    if served_etag != site.model.index(site.base_url).etag:
        raise SystemExit("the bench site's index differs from the model rebuilt here")
    backend = MemoryBackend(bucket, BUCKET_PREFIX)
    archive = Archive(backend)
    now = datetime.now(timezone.utc)
    captured: dict[str, datetime] = {}

    def load() -> None:
        get_json(f"{servers.endpoint}/_bench/load?bucket={bucket}", method="POST",
                 data=pack_objects(backend.take()))

    for n in site.model.article_ids():
        record = archive.place(seeded_record(site.model, n, site.base_url, now))
        record = replace(record, versions=(Version.of(record),))
        marker = _marker(record, SEED_RUN_ID)
        archive.index.claim_url(marker)
        archive.index.mark_urls(marker, record.urls)
        backend.put(backend.relative(record.meta_key), record.to_json(),
                    content_type=CONTENT_TYPE_JSON)
        captured[record.canonical_url] = record.fetched_at
        if (n + 1) % SEED_BATCH == 0:
            load()
    load()
    written = seed_discovery_state(archive, site.model, site.base_url, captured, now)
    load()
    return ", ".join(["markers and records", *written])


# -- the second crawl ---------------------------------------------------------------------


@dataclass
class Crawl:
    """One measured ``newsarchive`` command: its figures and what the servers counted."""

    measurement: Measurement
    site: dict[str, int] = field(default_factory=dict)
    s3: dict[str, int] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    moto_cpu: float = 0.0
    site_cpu: float = 0.0

    @property
    def s3_total(self) -> int:
        return sum(self.s3.values())

    @property
    def site_total(self) -> int:
        return sum(v for k, v in self.site.items() if k != "not_modified")

    def stat(self, name: str) -> int:
        if name == "listed":
            return sum(self.stats.get(f"newsarchive/discovered/{via}", 0)
                       for via in ("sitemap", "feed"))
        return self.stats.get({"skipped": "newsarchive/skipped/already_archived",
                               "fetched": "newsarchive/fetched",
                               "archived": "newsarchive/archive/written",
                               "refetched": "newsarchive/refetched/newer_date"}[name], 0)


def run_command(tree: Tree, servers: Servers, run_dir: Path, args: list[str], label: str,
                site: Site | None, reset: bool = True) -> Crawl:
    """``newsarchive ARGS`` of ``tree``, measured, with the servers' counts of its requests."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir = run_dir / "data"
    if reset:
        servers.s3_counts(reset=True)
        if site:
            site.counts(reset=True)
    moto_cpu = _cpu_seconds(servers.s3.pid)
    site_cpu = _cpu_seconds(site.process.pid) if site else 0.0
    # The site is a child of this process too, but no part of what is measured.
    exclude = servers.exclude | ({site.process.pid} if site else set())
    result = measure(label, [str(tree.newsarchive), *args], tree.env(servers, data_dir),
                     tree.root, exclude, run_dir / f"{args[0]}.log")
    crawl = Crawl(result, site.counts(reset=True) if site else {}, servers.s3_counts(reset=True),
                  moto_cpu=_cpu_seconds(servers.s3.pid) - moto_cpu,
                  site_cpu=(_cpu_seconds(site.process.pid) - site_cpu) if site else 0.0)
    for stats_file in sorted((data_dir / "crawls").glob("*.json")):
        try:
            for key, value in json.loads(stats_file.read_text())["stats"].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    crawl.stats[key] = crawl.stats.get(key, 0) + value
        except (OSError, ValueError, KeyError):
            result.notes.append(f"unreadable stats file {stats_file}")
    if result.returncode:
        result.notes.append(f"exit status {result.returncode}: see {run_dir / (args[0] + '.log')}")
    errors = {k.rsplit("/", 1)[1]: v for k, v in crawl.stats.items()
              if k.startswith("newsarchive/errors/")}
    if errors:
        result.notes.append(f"errors: {errors}")
    return crawl


@dataclass
class Scenario:
    """A second crawl of one size by one tree, after a first state made one way."""

    tree: str
    size: int
    sitemaps: int
    first: str
    """``crawl`` (a real first crawl) or ``seed``."""
    first_seconds: float = 0.0
    first_crawl: Crawl | None = None
    second: Crawl | None = None
    seeded: str = ""
    state_keys: list[str] = field(default_factory=list)
    """The site's state objects (``_index/sites/<site>/``) the first state left."""

    @property
    def label(self) -> str:
        return f"{self.tree} {self.size} {self.first}"


def run_scenario(tree: Tree, servers: Servers, work: Path, size: int, per_sitemap: int,
                 first: str) -> Scenario:
    per = min(per_sitemap, size)
    sitemaps = -(-size // per)
    scenario = Scenario(tree.label, sitemaps * per, sitemaps, first)
    run_dir = work / f"{tree.label}-{size}-{first}"
    run_dir.mkdir(parents=True)
    site = start_site(run_dir, "daily", sitemaps, per)
    try:
        bucket = servers.new_bucket()
        archive_url = f"s3://{bucket}/{BUCKET_PREFIX}"
        config = write_config(run_dir / "sites.toml", archive_url, site.base_url, feeds=True)
        started = time.perf_counter()
        if first == "crawl":
            progress(f"{tree.label}, {scenario.size} articles: first crawl of the whole site ...")
            scenario.first_crawl = run_command(
                tree, servers, run_dir / "first", ["crawl", "--config", str(config),
                                                   "--archive", archive_url],
                f"{scenario.label} first", site)
        else:
            progress(f"{tree.label}, {scenario.size} articles: seeding the archive ...")
            scenario.seeded = seed(site, servers, bucket)
        scenario.first_seconds = time.perf_counter() - started
        scenario.state_keys = servers.keys(bucket, f"{BUCKET_PREFIX}/_index/sites/{SITE_NAME}/")
        site.publish()
        progress(f"{tree.label}, {scenario.size} articles ({first}, {scenario.first_seconds:.0f} s): "
                 f"{NEW_ARTICLES} new articles published; second crawl ...")
        scenario.second = run_command(
            tree, servers, run_dir / "second", ["crawl", "--config", str(config),
                                                "--archive", archive_url],
            f"{scenario.label} second", site)
        report_scenario(scenario)
    finally:
        stop(site.process)
        servers.reset_s3()
    return scenario


# -- the backfill -------------------------------------------------------------------------


@dataclass
class Backfill:
    tree: str
    days: int
    backfill: Crawl | None = None
    crawl: Crawl | None = None
    backfill_archived: int = 0
    crawl_archived: int = 0


def count_records(archive_dir: Path) -> int:
    return sum(1 for _ in archive_dir.glob("articles/*/*/*/*/*/meta.json"))


def run_backfill(tree: Tree, servers: Servers, work: Path, days: int) -> Backfill:
    run_dir = work / f"{tree.label}-backfill"
    run_dir.mkdir(parents=True)
    site = start_site(run_dir, "year", days, 2)
    figures = Backfill(tree.label, days)
    try:
        since, until = site.model.days
        for part in ("backfill", "crawl"):
            archive_dir = run_dir / part / "archive"
            config = write_config(run_dir / f"{part}.toml", str(archive_dir), site.base_url,
                                  feeds=False)
            args = (["backfill", "--site", SITE_NAME, "--since", since.isoformat(),
                     "--until", until.isoformat()] if part == "backfill" else ["crawl"])
            progress(f"{tree.label}: {' '.join(args[:1])} of {days} days x 2 articles "
                     f"({since} to {until}) ...")
            result = run_command(tree, servers, run_dir / part,
                                 [*args, "--config", str(config), "--archive", str(archive_dir)],
                                 f"{tree.label} {part}", site)
            setattr(figures, part, result)
            setattr(figures, f"{part}_archived", count_records(archive_dir))
            progress(f"{tree.label}: {part} took {result.measurement.wall:.1f} s, "
                     f"{count_records(archive_dir)} articles archived, site requests {result.site}")
    finally:
        stop(site.process)
    return figures


# -- reports ------------------------------------------------------------------------------


def _site_cells(crawl: Crawl) -> str:
    s = crawl.site
    return (f"{crawl.site_total:>5} {s.get('robots', 0):>3} {s.get('index', 0):>3} "
            f"{s.get('sitemaps', 0):>5} {s.get('not_modified', 0):>4} {s.get('feeds', 0):>3} "
            f"{s.get('articles', 0):>5}")


def _s3_by_method(crawl: Crawl) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in crawl.s3.items():
        method = key.split(" ", 1)[0]
        out[method] = out.get(method, 0) + n
    return out


def report_scenario(scenario: Scenario) -> None:
    second = scenario.second
    m = second.measurement
    listed = second.stat("listed")
    print(f"  {scenario.label}: listed {listed}, skipped {second.stat('skipped')}, fetched "
          f"{second.stat('fetched')}, archived {second.stat('archived')}; wall {m.wall:.1f} s, "
          f"CPU {m.cpu:.1f} s, peak RSS {m.peak_rss_mb:.0f} MB (crawl {m.crawl_rss_mb:.0f} MB); "
          f"moto CPU {second.moto_cpu:.1f} s, site CPU {second.site_cpu:.1f} s")
    print(f"  site: {second.site}")
    print("  crawl stats: " + ", ".join(
        f"{k.removeprefix('newsarchive/')} {v}" for k, v in sorted(second.stats.items())
        if k.startswith(("newsarchive/discovered/", "newsarchive/skipped/",
                         "newsarchive/refetched/"))))
    per_url = second.s3_total / (scenario.size + NEW_ARTICLES)
    print(f"  S3: {second.s3_total} requests ({per_url:.2f} per article the site lists): "
          + ", ".join(f"{k} {v}" for k, v in sorted(second.s3.items(), key=lambda kv: -kv[1])))
    if scenario.first_crawl:
        f = scenario.first_crawl
        print(f"  first crawl: {f.measurement.wall:.1f} s, archived {f.stat('archived')}, "
              f"S3 {f.s3_total} requests ({f.s3_total / max(1, f.stat('archived')):.1f} per "
              f"article), site {f.site}")
    if scenario.seeded:
        print(f"  seeded: {scenario.seeded}")
    print(f"  site state the first state left (_index/sites/{SITE_NAME}/): "
          f"{', '.join(scenario.state_keys) or 'none'}")
    for note in m.notes + (scenario.first_crawl.measurement.notes if scenario.first_crawl else []):
        print(f"  note: {note}")


def summary(scenarios: list[Scenario], backfills: list[Backfill]) -> None:
    if scenarios:
        print()
        print(f"second crawl, after {NEW_ARTICLES} new articles in the newest sitemap and the feed")
        print("site: requests to the site (robots, index, sitemaps, 304s among all, feeds, "
              "articles); S3: requests counted at moto (/art: per article the site lists); "
              "CPU: the command's process tree; RSS: peak of the tree's summed RSS; first: how "
              "the archived state was made, and in how long; listed: sitemap and feed entries read")
        print(f"{'size':>7} {'maps':>5} {'tree':<9} {'first':<6} {'first s':>7} {'listed':>7} "
              f"{'skipped':>7} {'fetched':>7} {'archived':>8} | {'site':>5} {'rob':>3} {'idx':>3} "
              f"{'maps':>5} {'304':>4} {'fd':>3} {'art':>5} | {'S3':>7} {'/art':>5} {'GET':>7} "
              f"{'PUT':>5} {'HEAD':>5} {'LIST':>5} | {'wall s':>6} {'CPU s':>6} {'RSS MB':>6} "
              f"{'moto s':>6} {'site s':>6}")
        for s in scenarios:
            c = s.second
            m = c.measurement
            methods = _s3_by_method(c)
            listed = c.stat("listed")
            print(f"{s.size:>7} {s.sitemaps:>5} {s.tree:<9} {s.first:<6} {s.first_seconds:>7.0f} "
                  f"{listed:>7} {c.stat('skipped'):>7} {c.stat('fetched'):>7} "
                  f"{c.stat('archived'):>8} | {_site_cells(c)} | {c.s3_total:>7} "
                  f"{c.s3_total / (s.size + NEW_ARTICLES):>5.2f} {methods.get('GET', 0):>7} "
                  f"{methods.get('PUT', 0):>5} {methods.get('HEAD', 0):>5} "
                  f"{methods.get('LIST', 0):>5} | {m.wall:>6.1f} {m.cpu:>6.1f} "
                  f"{m.peak_rss_mb:>6.0f} {c.moto_cpu:>6.1f} {c.site_cpu:>6.1f}")
        print()
        print("S3 requests of the second crawl by method and key prefix")
        keys = sorted({k for s in scenarios for k in s.second.s3},
                      key=lambda k: (k.split(" ", 1)[1] in S3_PREFIXES
                                     and S3_PREFIXES.index(k.split(" ", 1)[1]), k))
        width = max(14, *(len(s.label) for s in scenarios))
        print(f"{'':<22}" + "".join(f"{s.label:>{width + 2}}" for s in scenarios))
        for key in keys:
            print(f"{key:<22}" + "".join(f"{s.second.s3.get(key, 0):>{width + 2}}"
                                         for s in scenarios))
        print(f"{'total':<22}" + "".join(f"{s.second.s3_total:>{width + 2}}" for s in scenarios))
        print()
        print(f"targets (issue 19): site requests <= {SITE_TARGET}, S3 requests <= {S3_TARGET}, "
              f"wall time at the largest size <= {WALL_TARGET}x that at 1,000")
        for s in scenarios:
            c = s.second
            print(f"  {s.label:<28} site {c.site_total:>6} "
                  f"{'ok' if c.site_total <= SITE_TARGET else 'over':<4}  S3 {c.s3_total:>7} "
                  f"{'ok' if c.s3_total <= S3_TARGET else 'over'}")
        for tree in dict.fromkeys(s.tree for s in scenarios):
            runs = [s for s in scenarios if s.tree == tree and s.first == "seed"] or \
                [s for s in scenarios if s.tree == tree]
            small = min(runs, key=lambda s: s.size)
            large = max(runs, key=lambda s: s.size)
            if large.size > small.size:
                ratio = large.second.measurement.wall / small.second.measurement.wall
                print(f"  {tree}: wall {large.size} / {small.size} = {ratio:.2f} "
                      f"{'ok' if ratio <= WALL_TARGET else 'over'}")
        verify(scenarios)
    if backfills:
        print()
        print("backfill of a year against one crawl of the same pages (local archives)")
        print(f"{'tree':<9} {'days':>5} {'backfill s':>10} {'CPU s':>7} {'archived':>8} "
              f"{'crawl s':>8} {'CPU s':>7} {'archived':>8} {'ratio':>6} {'target':>6}")
        for b in backfills:
            ratio = b.backfill.measurement.wall / b.crawl.measurement.wall
            print(f"{b.tree:<9} {b.days:>5} {b.backfill.measurement.wall:>10.1f} "
                  f"{b.backfill.measurement.cpu:>7.1f} {b.backfill_archived:>8} "
                  f"{b.crawl.measurement.wall:>8.1f} {b.crawl.measurement.cpu:>7.1f} "
                  f"{b.crawl_archived:>8} {ratio:>6.2f} "
                  f"{'ok' if ratio <= BACKFILL_TARGET else 'over':>6}")
            for note in b.backfill.measurement.notes + b.crawl.measurement.notes:
                print(f"  note: {note}")


def verify(scenarios: list[Scenario]) -> None:
    """The seeded state must lead the second crawl to do what the crawled state does."""
    for tree in dict.fromkeys(s.tree for s in scenarios):
        for size in sorted({s.size for s in scenarios if s.tree == tree}):
            pair = {s.first: s.second for s in scenarios if s.tree == tree and s.size == size}
            if len(pair) < 2:
                continue
            crawled, seeded = pair["crawl"], pair["seed"]
            differences = []
            for name in ("listed", "skipped", "fetched", "archived", "refetched"):
                if crawled.stat(name) != seeded.stat(name):
                    differences.append(f"{name} {crawled.stat(name)} / {seeded.stat(name)}")
            for kind in sorted(set(crawled.site) | set(seeded.site)):
                if crawled.site.get(kind, 0) != seeded.site.get(kind, 0):
                    differences.append(f"site {kind} {crawled.site.get(kind, 0)} / "
                                       f"{seeded.site.get(kind, 0)}")
            for key in sorted(set(crawled.s3) | set(seeded.s3)):
                if crawled.s3.get(key, 0) != seeded.s3.get(key, 0):
                    differences.append(f"S3 {key} {crawled.s3.get(key, 0)} / "
                                       f"{seeded.s3.get(key, 0)}")
            print(f"  seeding check, {tree} {size}: skipped {crawled.stat('skipped')} after a "
                  f"real first crawl, {seeded.stat('skipped')} after seeding; "
                  + ("same figures" if not differences else
                     "differences (crawled / seeded): " + "; ".join(differences)))


# -- main ---------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="articles listed by the site (comma-separated)")
    parser.add_argument("--per-sitemap", type=int, default=100,
                        help="articles per daily sitemap (default 100: 1,000 sitemaps at 100,000)")
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout (with its own .venv) to run the same way")
    parser.add_argument("--baseline-sizes", help="the baseline's sizes (default: --sizes)")
    parser.add_argument("--backfill-days", type=int, default=365)
    parser.add_argument("--parts", default="second,backfill",
                        help="second (the second crawls), backfill, or both")
    parser.add_argument("--no-verify", action="store_true",
                        help="at 1,000, seed only (no real first crawl to check the seeding)")
    parser.add_argument("--quick", action="store_true",
                        help="size 1,000 and a 30-day backfill")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    sizes = [1000] if args.quick else _sizes(args.sizes)
    baseline_sizes = [1000] if args.quick else _sizes(args.baseline_sizes or args.sizes)
    days = 30 if args.quick else args.backfill_days
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - {"second", "backfill"} or not parts:
        parser.error("--parts: second, backfill, or both")
    trees = [Tree("current", ROOT)]
    if args.baseline_tree:
        root = args.baseline_tree.resolve()
        if not (root / ".venv" / "bin" / "newsarchive").exists():
            parser.error(f"--baseline-tree: no {root / '.venv/bin/newsarchive'}")
        trees.append(Tree("baseline", root))

    _become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="incremental-", dir=args.workdir))
    prefect_env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   # Its own database, set up once: other benchmarks may run theirs meanwhile.
                   "PREFECT_HOME": os.environ.get(
                       "PREFECT_HOME", str(ROOT / ".newsarchive" / "prefect-bench-incremental"))}
    os.environ.update({k: prefect_env[k] for k in ("PREFECT_HOME",
                                                   "PREFECT_SERVER_ANALYTICS_ENABLED")})
    progress(f"work directory {work}; starting Prefect's server and moto's ...")
    prefect, prefect_url = start_prefect_server(prefect_env)
    s3, s3_port = start_server(["s3", BUCKET_PREFIX], work / "s3.json")
    servers = Servers(prefect, prefect_url, s3, f"http://127.0.0.1:{s3_port}",
                      {prefect.pid, s3.pid})
    scenarios: list[Scenario] = []
    backfills: list[Backfill] = []
    try:
        if "second" in parts:
            for size in sizes:
                for tree in trees:
                    if tree.label == "baseline" and size not in baseline_sizes:
                        continue
                    firsts = (["seed"] if size > 1000 or args.no_verify else ["crawl", "seed"])
                    for first in firsts:
                        scenarios.append(run_scenario(tree, servers, work, size,
                                                      args.per_sitemap, first))
        if "backfill" in parts:
            for tree in trees:
                backfills.append(run_backfill(tree, servers, work, days))
    finally:
        for process in (s3, prefect):
            stop(process)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary(scenarios, backfills)
    progress("done")


if __name__ == "__main__":
    main()
