"""Crawl throughput: ``newsarchive crawl`` against the naive design, in the same run.

On local sites of N real news pages: N distinct articles (``distinct``), or mostly near
copies of each other (``near-copies``).

    .venv/bin/python bench/throughput.py [--pages 2000] [--rounds 2]
        [--designs newsarchive,naive,newsarchive-server,moto,moto-latency,crawl,baseline]
        [--sites distinct,near-copies] [--latency-ms 20] [--baseline-tree PATH]
        [--json FILE]

The site serves N pages made from the corpus (``tests/data/fundus``): copy ``i`` is
corpus page ``i mod 132`` with a suffix unique to the copy appended to every third word of
its paragraphs and its declared canonical URL removed, so every copy is a new article to the
archive (its own canonical URL, its own text fingerprint, no near duplicate of another
copy): dedup cannot skip any work. Pages are made on request from a template per corpus
page, so a site of any size costs the bench no memory. The site runs in a process of its
own (asyncio, HTTP/1.1 keep-alive: a fraction of a millisecond of CPU a page, which the
designs would otherwise pay for on the same cores), listed in robots.txt's sitemap index
(1,000 URLs per sitemap).

``--sites near-copies`` adds a site whose pages are mostly near copies of each other, as
syndicated wire stories are: groups of 10-20 pages (one story), each made from one corpus
page as the distinct site's copies are (so two groups are no nearer than unrelated pages),
the group's pages differing from each other in a few words (the same slots, a word in about
84 changed in each page's own way, calibrated per corpus page on the extracted text to a
Jaccard of 3-word shingles of at least 0.92 between two pages), and about a fifth of a group's
pages after its first repeating an earlier one exactly (the same text under another URL).
Every page has its own URL and declares no canonical URL; the pages are listed in a shuffled
order (see :class:`NearCopySite`). At start-up the site's process extracts every page of its
first groups and checks the claims with ``storage.dedup``'s shingles and Jaccard: the bench
prints the mean Jaccard within a group, the near copies and exact copies confirmed, the share
of the site's pages that are near or exact copies, and stops if a claim does not hold. Each
kind of site is crawled by every design in every round, and summarised apart.

Designs, one after the other against the same site, each into a fresh local directory:

- ``newsarchive``: the real ``newsarchive crawl`` command, start-up included (Prefect's
  temporary server too, unless ``PREFECT_API_URL`` is set), with the benchmark's site
  settings (download_delay 0, concurrent_requests 32, autothrottle off).
- ``naive``: what the usual news crawlers do: a Scrapy ``SitemapSpider`` whose callback
  runs trafilatura and writes the raw page, the text and a metadata file; same Scrapy
  concurrency, in a process of its own.
- ``newsarchive-server``: ``newsarchive crawl`` with a Prefect server already running (as
  under ``serve``), started once before it.
- ``moto``: as ``newsarchive-server``, into a bucket of moto's S3 server (a subprocess; its
  own CPU is shown apart, as it competes for the same cores).
- ``moto-latency``: as ``moto``, through a proxy that adds 20 ms to every round trip
  (``LATENCY_MS``, ``--latency-ms``), as a real S3 endpoint takes: what sequential requests
  cost. What the proxy adds is measured before each run and printed.
- ``crawl``: the crawl subprocess alone (``python -m spiders.run``), without Prefect.
- ``baseline``: as ``newsarchive``, with another checkout's code and virtualenv
  (``--baseline-tree PATH``, e.g. the commit before a change): before and after in the same
  rounds, so that the machine's drift hits both alike.

The S3 designs' moto server counts the requests it answers (bench/s3_counting.py: by
method, key prefix under the archive's root, and status); the bench prints, per design, the
requests per new article (articles written), by method and by method and prefix, and the
refused ones (a 412 is a conditional write that lost).

``--rounds N`` runs the designs N times in turn, every other round in reverse order. A shared
machine's speed drifts by a quarter or more over minutes; each round's ratios compare runs
that followed each other, and the summary gives their median.

Measured per design: wall time from start to exit, pages handled per second (stored,
whatever the outcome: a new article, a duplicate, an alias; the naive design writes every
page), CPU seconds of the whole process tree (``getrusage(RUSAGE_CHILDREN)``: this process
is made a child subreaper, so descendants that outlive their parents are reaped, and
counted, here), the site's CPU while serving it, and peak memory, sampled from ``/proc``
over the whole tree: the peak of the sum of the processes' RSS (shared pages counted in
every process: an upper bound; every 0.2 s) and of their PSS (shared pages split between
the processes that share them; every second), for the whole command ("all") and for the
crawl's own processes ("crawl": the crawl process and its extraction workers, which outlive
their forkserver and are found by command line), and the peak of each part (crawl,
extraction, the command, Prefect's server). The per-page CPU breakdown comes from the
crawls themselves: extraction as measured in the workers, storing as measured in the
storage threads, and the rest of the crawl process (fetching, discovery, Scrapy) as its CPU
time minus storing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.s3_counting import S3Counts, read_counts  # noqa: E402 (stdlib only)

VENV_BIN = Path(sys.executable).parent
URLS_PER_SITEMAP = 1000
SAMPLE_INTERVAL = 0.2
PSS_INTERVAL = 1.0
TIMELINE_INTERVAL = 5.0
SITE_NAME = "bench"
# The benchmark's site settings (ARCHITECTURE.md): no politeness delay against our own site.
SITE_SETTINGS = {"download_delay": 0, "concurrent_requests": 32, "autothrottle": False}

# -- the site -------------------------------------------------------------------------------

_DECLARED_URL = re.compile(
    r"""<link\b[^>]*\brel\s*=\s*["']?(?:canonical|amphtml)\b[^>]*>"""
    r"""|<meta\b[^>]*\b(?:property|name)\s*=\s*["']?(?:og:url|twitter:url)\b[^>]*>""", re.I)
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p\s*>", re.S | re.I)
_TEXT_RUN = re.compile(r"(?:^|>)([^<]+)")
_BODY = re.compile(r"<body\b", re.I)
_RAW_TEXT = re.compile(r"<(script|style|noscript|template|textarea)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)
_WORD = re.compile(r"\w+")
_LETTERS = "bcdfghjklmnpqrstvwxzaeiouy"


def copy_suffix(copy: int) -> bytes:
    """Letters unique to one copy, appended to every third word of its text."""
    out, n = "", copy + 1
    while n:
        n, r = divmod(n, len(_LETTERS))
        out += _LETTERS[r]
    return ("q" + out).encode()


def _split_after_every_third_word(html: str, spans: list[tuple[int, int]]) -> list[bytes]:
    points: list[int] = []
    for start, end in spans:
        for n, word in enumerate(_WORD.finditer(html, start, end)):
            if n % 3 == 0:
                points.append(word.end())
    points.sort()
    chunks, previous = [], 0
    for point in points:
        chunks.append(html[previous:point].encode("utf-8"))
        previous = point
    chunks.append(html[previous:].encode("utf-8"))
    return chunks


def paragraph_template(html: str) -> list[bytes]:
    """The page cut after every third word of its ``<p>`` text: a copy is the pieces joined
    by its suffix. Navigation and other boilerplate stay the same in every copy, as on a
    real site."""
    html = _DECLARED_URL.sub("", html)
    spans = []
    for paragraph in _PARAGRAPH.finditer(html):
        for run in _TEXT_RUN.finditer(paragraph.group(1)):
            spans.append((paragraph.start(1) + run.start(1), paragraph.start(1) + run.end(1)))
    return _split_after_every_third_word(html, spans)


def body_template(html: str) -> list[bytes]:
    """As :func:`paragraph_template`, over all the body's text: for pages whose article is
    not in ``<p>`` elements."""
    html = _DECLARED_URL.sub("", html)
    body = _BODY.search(html)
    position = body.start() if body else 0
    skipped = sorted([(m.start(), m.end()) for m in _RAW_TEXT.finditer(html, position)]
                     + [(m.start(), m.end()) for m in _TAG.finditer(html, position)])
    spans = []
    for start, end in skipped:
        if start > position:
            spans.append((position, start))
        position = max(position, end)
    spans.append((position, len(html)))
    return _split_after_every_third_word(html, spans)


@dataclass(frozen=True)
class Template:
    """One corpus page, ready to make copies of."""

    slug: str
    """Last path segment of the original URL, for the copies' URLs."""
    chunks: tuple[bytes, ...]
    """The page cut where each copy's suffix goes."""

    def page(self, copy: int) -> bytes:
        return copy_suffix(copy).join(self.chunks)


def build_templates(corpus_dir: Path | None = None) -> tuple[list[Template], list[str]]:
    """A template per corpus page whose copies are distinct articles to our extractor
    (different text, no near duplicates, the original's text intact); returns the templates
    and the pages left out, with why."""
    import logging

    from normalize import extract_article
    from storage import choose_canonical_url
    from storage.dedup import NEAR_DUPLICATE_JACCARD, jaccard, shingles, text_fingerprint
    from tests.newssite import load_corpus

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    templates, left_out = [], []
    for page in load_corpus(corpus_dir):
        html = page.html.decode("utf-8", errors="replace")
        original = extract_article(html, page.original_url)
        slug = re.sub(r"[^a-z0-9-]+", "-", page.path.rstrip("/").rsplit("/", 1)[-1].lower())
        slug = slug.strip("-")[:60] or "article"
        why = "no text"
        for make in (paragraph_template, body_template):
            template = Template(slug, tuple(make(html)))
            one, two = (extract_article(template.page(n), f"http://127.0.0.1/news/{n}-{slug}")
                        for n in (1, 2))
            similarity = jaccard(shingles(one.text), shingles(two.text))
            canonical = {choose_canonical_url(f"http://127.0.0.1/news/{n}-{slug}", a.canonical_url)
                         for n, a in ((1, one), (2, two))}
            if not one.text.strip():
                why = "no text"
            elif text_fingerprint(one.text) == text_fingerprint(two.text) or similarity >= 0.5:
                why = f"copies too alike (Jaccard {similarity:.2f}, near duplicate at " \
                      f"{NEAR_DUPLICATE_JACCARD})"
            elif len(canonical) < 2:
                why = "copies share a canonical URL"
            elif len(one.text.split()) < 0.9 * len(original.text.split()):
                why = "copies lose text"
            else:
                templates.append(template)
                break
        else:
            left_out.append(f"{page.original_url}: {why}")
    return templates, left_out


class CopySite:
    """The site's routes: robots.txt, a sitemap index, sitemaps, and N article copies."""

    def __init__(self, templates: list[Template], pages: int) -> None:
        self.templates = templates
        self.pages = pages

    def path(self, copy: int) -> str:
        return f"/news/{copy:06d}-{self.templates[copy % len(self.templates)].slug}"

    def respond(self, method: str, target: str, headers: dict[str, str],
                base_url: str) -> tuple[int, dict[str, str], bytes]:
        """The answer to a request (see :class:`SiteProtocol`)."""
        status, content_type, body = self.route(target.split("?", 1)[0], base_url)
        return status, {"Content-Type": content_type}, body

    def route(self, path: str, base_url: str) -> tuple[int, str, bytes]:
        if path == "/robots.txt":
            return 200, "text/plain", f"User-agent: *\nAllow: /\n\nSitemap: {base_url}/sitemap.xml\n".encode()
        if path == "/sitemap.xml":
            count = -(-self.pages // URLS_PER_SITEMAP)
            items = "".join(f"<sitemap><loc>{base_url}/sitemaps/{n}.xml</loc></sitemap>"
                            for n in range(count))
            return 200, "application/xml", (
                '<?xml version="1.0" encoding="UTF-8"?><sitemapindex '
                f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</sitemapindex>').encode()
        match = re.fullmatch(r"/sitemaps/(\d+)\.xml", path)
        if match:
            first = int(match.group(1)) * URLS_PER_SITEMAP
            urls = "".join(f"<url><loc>{escape(base_url + self.path(n))}</loc></url>"
                           for n in range(first, min(first + URLS_PER_SITEMAP, self.pages)))
            return 200, "application/xml", (
                '<?xml version="1.0" encoding="UTF-8"?><urlset '
                f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>').encode()
        match = re.fullmatch(r"/news/(\d{6})-[a-z0-9-]+", path)
        if match and int(match.group(1)) < self.pages and path == self.path(int(match.group(1))):
            return 200, "text/html; charset=utf-8", self.page(int(match.group(1)))
        return 404, "text/html", b"<html><body><h1>Not Found</h1></body></html>"

    def page(self, copy: int) -> bytes:
        return self.templates[copy % len(self.templates)].page(copy)


# -- the near-copies site ------------------------------------------------------------------

SITE_KINDS = ("distinct", "near-copies")
GROUP_SIZES = (10, 20)
"""Pages per group of near copies, both included: one wire story as the outlets that carry
it publish it."""
EXACT_SHARE = 0.22
"""Share of a group's pages after its first that repeat an earlier page of the group
exactly (the same page under another URL); the issue's site had 433 exact copies and 1,274
near ones in 2,000 pages."""
NEAR_TARGET_JACCARD = 0.92
"""The Jaccard of 3-word shingles aimed at between two near copies: above the archive's
threshold (0.9), with a margin, so that every one is a near duplicate to it."""
WORDS_PER_CHANGE = 28
"""A variant changes one slot (a word) in this many: about one word in 84, for a Jaccard
near 0.93 between two variants, before calibration."""
NEAR_CHECK_GROUPS = 5
"""Groups whose every page is extracted at start-up to check the site is what it claims."""


@dataclass(frozen=True)
class NearTemplate:
    """A corpus page, ready to make groups of near copies of. A group's pages are the copy
    of the template for the group (as on the distinct site: every third word carries the
    group's suffix, so two groups share no more than unrelated pages do), each variant with
    the same few words changed in its own way, as outlets retouch a wire story."""

    template: Template
    """The corpus page, cut where the copies' suffixes go."""
    varied: frozenset[int]
    """The slots (a slot ``k`` joins chunks ``k`` and ``k + 1``) whose word a variant
    changes."""
    jaccard: float
    """Jaccard of 3-word shingles between a group's first page and a variant, measured on
    the extracted texts when the template was made."""

    def page(self, group: int, variant: int) -> bytes:
        """Variant ``variant`` of group ``group`` (variant 0: the group's first page)."""
        chunks = self.template.chunks
        suffix = copy_suffix(group)
        if not variant:
            return suffix.join(chunks)
        changed = suffix + b"v" + copy_suffix(variant)
        out = bytearray(chunks[0])
        for k in range(1, len(chunks)):
            out += changed if k - 1 in self.varied else suffix
            out += chunks[k]
        return bytes(out)


def _spread(slots: int, count: int) -> frozenset[int]:
    """``count`` slots spread evenly over ``slots``."""
    return frozenset(int((i + 0.5) * slots / count) for i in range(count))


def build_near_templates(templates: list[Template]) -> tuple[list[NearTemplate], list[str]]:
    """A near-copies template per template whose variants, as extracted, differ from the
    group's first page (another text fingerprint) by a Jaccard of at least
    :data:`NEAR_TARGET_JACCARD`: the number of words changed is calibrated on the extracted
    text, since the extractor keeps only part of a page's words. Returns the templates and
    those left out, with why."""
    import logging

    from normalize import extract_article
    from storage.dedup import MIN_DEDUP_WORDS, jaccard, shingles, text_fingerprint

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    near_templates, left_out = [], []
    for template in templates:
        url = f"http://127.0.0.1/news/000001-{template.slug}"
        first = extract_article(NearTemplate(template, frozenset(), 1.0).page(1, 0), url,
                                detect_language=False).text
        base = shingles(first)
        slots = len(template.chunks) - 1
        if len(base) < MIN_DEDUP_WORDS:
            left_out.append(f"{template.slug}: too short to be deduplicated by content")
            continue
        count, why, made = max(1, round(slots / WORDS_PER_CHANGE)), "", None
        for _ in range(6):
            near = NearTemplate(template, _spread(slots, count), 0.0)
            text = extract_article(near.page(1, 1), url, detect_language=False).text
            similarity = jaccard(base, shingles(text))
            if text_fingerprint(text) == text_fingerprint(first):
                why = f"none of {count} words changed is in the extracted text"
                if count >= slots:
                    break
                count = min(slots, count * 2)
            elif similarity < NEAR_TARGET_JACCARD:
                why = f"Jaccard {similarity:.3f} with {count} word(s) changed"
                if count == 1:
                    break
                count = max(1, count // 2)
            else:
                made = NearTemplate(template, near.varied, similarity)
                break
        if made:
            near_templates.append(made)
        else:
            left_out.append(f"{template.slug}: {why}")
    return near_templates, left_out


@dataclass(frozen=True)
class NearMember:
    """One page of the near-copies site."""

    group: int
    """The group (one story) the page belongs to."""
    variant: int
    """Which variant of the group's story it is (0: the group's first page)."""
    role: str
    """``first`` (the first page of its group), ``near`` (a variant not seen before in the
    group: a near copy) or ``exact`` (an earlier page of the group again)."""


def near_copy_layout(pages: int) -> list[NearMember]:
    """The site's pages in URL order: groups of :data:`GROUP_SIZES` pages, one after the
    other (the copies of a story appear together, as syndicated stories do), drawn from a
    generator seeded per group so that any size of site starts with the same groups."""
    import random

    members: list[NearMember] = []
    group = 0
    while len(members) < pages:
        rng = random.Random(f"near-copies-{group}")
        variant = 0
        members.append(NearMember(group, 0, "first"))
        for _ in range(rng.randint(*GROUP_SIZES) - 1):
            if rng.random() < EXACT_SHARE:
                members.append(NearMember(group, variant, "exact"))
            else:
                variant += 1
                members.append(NearMember(group, variant, "near"))
        group += 1
    return members[:pages]


class NearCopySite(CopySite):
    """The routes of :class:`CopySite`, over pages that are mostly near copies of each
    other: each page has its own URL and declares no canonical URL.

    The pages are listed in a shuffled order (the same every time), not group after group:
    the crawl learns as a site's boilerplate the lines that recur on 5 of its first pages,
    and a group's 10-20 pages in a row would teach it their short paragraphs, strip them
    from the group's later pages, and make those new articles rather than near copies."""

    def __init__(self, near_templates: list[NearTemplate], pages: int) -> None:
        import random

        super().__init__([near.template for near in near_templates], pages)
        self.near_templates = near_templates
        self.members = near_copy_layout(pages)
        """The pages in layout order (group after group)."""
        self.order = list(range(len(self.members)))
        """The layout index of the page at each place in the site's URL order."""
        random.Random("near-copies-order").shuffle(self.order)
        self.place = {index: copy for copy, index in enumerate(self.order)}
        """Inverse of ``order``: the URL place of each page in the layout."""

    def path(self, copy: int) -> str:
        group = self.members[self.order[copy]].group
        return f"/news/{copy:06d}-{self.templates[group % len(self.templates)].slug}"

    def page(self, copy: int) -> bytes:
        member = self.members[self.order[copy]]
        return self.near_templates[member.group % len(self.near_templates)].page(
            member.group, member.variant)


def near_copy_check(site: NearCopySite) -> dict:
    """What the near-copies site is, by its layout and as measured on the texts of its first
    groups' pages, extracted: the Jaccard of 3-word shingles between the pages of a group,
    the near copies confirmed (another fingerprint, Jaccard >= the archive's threshold with
    an earlier page of the group), the exact ones (the same text), and the Jaccard between
    two groups made from one corpus page. ``problems`` lists what contradicts the claims."""
    import itertools
    from collections import Counter

    from normalize import extract_article
    from storage.dedup import NEAR_DUPLICATE_JACCARD, jaccard, shingles, text_fingerprint

    def extracted(copy: int) -> str:
        return extract_article(site.page(copy), "http://127.0.0.1" + site.path(copy),
                               detect_language=False).text

    roles = Counter(m.role for m in site.members)
    sizes = Counter(m.group for m in site.members)
    if len(sizes) > 1:
        del sizes[site.members[-1].group]  # the site's size may cut its last group short
    groups = sorted(sizes)[:NEAR_CHECK_GROUPS]
    similarities, problems = [], []
    near_confirmed = near_checked = exact_confirmed = exact_checked = 0
    for group in groups:
        texts: dict[int, tuple[str, set[str]]] = {}  # variant -> its text and shingles
        for index, member in enumerate(site.members):
            if member.group != group:
                continue
            text = extracted(site.place[index])
            if member.role == "exact":
                exact_checked += 1
                exact_confirmed += text_fingerprint(text) == text_fingerprint(texts[member.variant][0])
                continue
            mine = shingles(text)
            if member.role == "near":
                near_checked += 1
                best = max(jaccard(mine, other) for _, other in texts.values())
                if best >= NEAR_DUPLICATE_JACCARD and all(
                        text_fingerprint(text) != text_fingerprint(other) for other, _ in texts.values()):
                    near_confirmed += 1
                else:
                    problems.append(f"page {site.place[index]}: not a near copy (best Jaccard "
                                    f"{best:.3f})")
            texts[member.variant] = (text, mine)
        similarities += [jaccard(a, b) for (_, a), (_, b) in
                         itertools.combinations(texts.values(), 2)]
    if exact_confirmed < exact_checked:
        problems.append(f"{exact_checked - exact_confirmed} exact copies with another text")
    # Two groups made from the same corpus page must be no nearer than unrelated pages.
    near = site.near_templates[0]
    one, other = (shingles(extract_article(near.page(group, 0), "http://127.0.0.1/news/x",
                                           detect_language=False).text)
                  for group in (0, len(site.near_templates)))
    across = jaccard(one, other)
    if across >= 0.5:
        problems.append(f"two groups of one corpus page are too alike (Jaccard {across:.2f})")
    return {"pages": len(site.members), "groups": len({m.group for m in site.members}),
            "group_sizes": [min(sizes.values()), max(sizes.values())],
            **{role: roles[role] for role in ("first", "near", "exact")},
            "checked_groups": len(groups),
            "mean_jaccard": statistics.mean(similarities) if similarities else 0.0,
            "min_jaccard": min(similarities) if similarities else 0.0,
            "near_confirmed": [near_confirmed, near_checked],
            "exact_confirmed": [exact_confirmed, exact_checked],
            "across_groups_jaccard": across, "problems": problems}


_REASONS = {200: "OK", 304: "Not Modified", 404: "Not Found"}


class SiteProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, on one thread, answering with ``respond(method, target,
    headers, base_url) -> (status, headers, body)``. A bench's site stands in for servers
    elsewhere, whose CPU costs a crawler nothing: on this machine every millisecond it
    spends is taken from the design being timed, and more from the one that uses both
    cores (``http.server`` spent 6-7 ms of CPU a page; this, a fraction of one)."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
            request_line, *header_lines = head.split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in header_lines)}
            method, _, rest = request_line.partition(" ")
            target = rest.rpartition(" ")[0] or rest
            base = f"http://{headers.get('host', '127.0.0.1')}"
            status, response_headers, body = self.respond(method, target, headers, base)
            close = headers.get("connection", "").lower() == "close"
            lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
            lines += [f"{name}: {value}" for name, value in response_headers.items()]
            if status != 304:  # a 304 has no body, and says nothing of its length
                lines.append(f"Content-Length: {len(body)}")
            if close:
                lines.append("Connection: close")
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode()
                                 + (b"" if method == "HEAD" else body))
            if close:
                self.transport.close()
                return


def serve(pages: int, port_file: Path, kinds: list[str]) -> None:
    """Serve a site of each kind (see :data:`SITE_KINDS`), each on a port of its own, until
    killed; write their ports and what the sites are to ``port_file`` once listening."""
    templates, left_out = build_templates()
    info: dict = {"templates": len(templates), "left_out": left_out, "ports": {}}
    sites: dict[str, CopySite] = {}
    if "distinct" in kinds:
        sites["distinct"] = CopySite(templates, pages)
    if "near-copies" in kinds:
        near_templates, near_left_out = build_near_templates(templates)
        if not near_templates:
            raise SystemExit("no corpus page makes near copies: " + "; ".join(near_left_out))
        site = NearCopySite(near_templates, pages)
        sites["near-copies"] = site
        info["near_copies"] = {"templates": len(near_templates), "left_out": near_left_out,
                               "check": near_copy_check(site)}

    async def listen() -> None:
        loop = asyncio.get_running_loop()
        for kind, site in sites.items():
            server = await loop.create_server(lambda site=site: SiteProtocol(site.respond),
                                              "127.0.0.1", 0, backlog=128)
            info["ports"][kind] = server.sockets[0].getsockname()[1]
        # Written whole, then renamed: the bench polls for the file and reads it at once.
        temporary = port_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(info))
        temporary.rename(port_file)
        await loop.create_future()  # the servers serve until the process is killed

    asyncio.run(listen())


# -- the naive design -----------------------------------------------------------------------


def run_naive(sitemap_url: str, out_dir: Path, stats_file: Path) -> None:
    """A Scrapy SitemapSpider that extracts with trafilatura and writes three files per page
    in its callback, as the usual news crawlers do."""
    import logging

    import scrapy
    import trafilatura
    from scrapy.crawler import CrawlerProcess
    from scrapy.spiders import SitemapSpider

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    cpu = {"extract": 0.0, "store": 0.0, "pages": 0}

    class NaiveSpider(SitemapSpider):
        name = "naive"
        sitemap_urls = [sitemap_url]

        def parse(self, response: scrapy.http.Response):
            started = time.process_time()
            doc = trafilatura.bare_extraction(response.text, url=response.url, with_metadata=True)
            extracted = time.process_time()
            folder = out_dir / hashlib.sha256(response.url.encode()).hexdigest()[:24]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "raw.html").write_bytes(response.body)
            (folder / "text.txt").write_text((doc.text or "") if doc else "", encoding="utf-8")
            meta = {"url": response.url, "title": doc.title if doc else None,
                    "author": doc.author if doc else None, "date": doc.date if doc else None,
                    "fetched_at": time.time()}
            (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            cpu["extract"] += extracted - started
            cpu["store"] += time.process_time() - extracted
            cpu["pages"] += 1

    process = CrawlerProcess({
        "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False, "ROBOTSTXT_OBEY": True,
        "DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "COOKIES_ENABLED": False,
        "CONCURRENT_REQUESTS": SITE_SETTINGS["concurrent_requests"],
        "CONCURRENT_REQUESTS_PER_DOMAIN": SITE_SETTINGS["concurrent_requests"],
    })
    process.crawl(NaiveSpider)
    process.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats_file.write_text(json.dumps({**cpu, "process": usage.ru_utime + usage.ru_stime}))


# -- measuring a process tree ---------------------------------------------------------------


def _become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (not init), so that they are
    reaped, and their CPU time counted, here."""
    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> dict[int, list[int]]:
    """Parent pid -> the pids of its live children (zombies are gone already)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


# The parts of a design's process tree, by command line; memory is reported per part.
CRAWL_PARTS = ("crawl", "extraction")
"""The crawl process and its extraction processes (workers, their forkserver while it runs
and multiprocessing's resource tracker): what a crawl costs, whatever runs it. The workers
outlive the forkserver they were forked from and are re-parented to this process, so they
are found by their command line, not by ancestry."""


def _part(argv: list[bytes]) -> str:
    if b"spiders.run" in argv or b"_naive" in argv:
        return "crawl"
    if any(b"multiprocessing.forkserver" in a or b"multiprocessing.resource_tracker" in a
           for a in argv):
        return "extraction"
    if any(b"uvicorn" in a for a in argv) or (b"server" in argv and b"start" in argv):
        return "prefect server"
    return "command"


def _command_line(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return None


def _descendants(root: int, tree: dict[int, list[int]], exclude: set[int]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, ()):
            if child not in exclude:
                out.append(child)
                todo.append(child)
    return out


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kb(pid: int) -> int:
    """RSS of a process, in kB (0 once it is gone): cheap enough to read every sample."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return 0.0


def _pss_kb(pid: int) -> int:
    """PSS of a process, in kB (0 once it is gone): the kernel walks every mapping for it,
    so it is read less often."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            values = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(values["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0


@dataclass
class Measurement:
    """One design's run."""

    design: str
    wall: float = 0.0
    cpu: float = 0.0
    peak_rss_mb: float = 0.0
    """Peak over the samples of the sum of the tree's RSS."""
    peak_pss_mb: float = 0.0
    """Peak over the samples of the sum of the tree's PSS."""
    crawl_rss_mb: float = 0.0
    """As peak_rss_mb, for the crawl's parts only (CRAWL_PARTS: no Prefect, no command)."""
    crawl_pss_mb: float = 0.0
    parts_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak of each part's summed RSS (parts peak at different times: no total)."""
    parts_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each part, as last sampled from ``/proc`` (a process's last fifth of a
    second before it exits is missed: a lower bound)."""
    crawl_span: tuple[float, float] | None = None
    """Seconds from the command's start to the first and the last sample that saw the crawl
    process: what the command spends before and after the crawl itself."""
    site_cpu: float = 0.0
    """CPU seconds the local site spent serving this design."""
    timeline: list[tuple[float, float, float]] = field(default_factory=list)
    """(seconds since the start, crawl RSS MB, crawl PSS MB), every TIMELINE_INTERVAL."""
    peak_processes: int = 0
    pages: int = 0
    """Pages the design handled: for ours, each article page stored, whatever the outcome
    (a new article, a version, a duplicate or an alias of an archived article); for the
    naive design, the pages it wrote."""
    returncode: int = 0
    breakdown: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    site: str = "distinct"
    """The kind of site crawled (:data:`SITE_KINDS`)."""
    articles: int = 0
    """New articles written (``newsarchive/archive/written``); the naive design's pages."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """The crawl's ``newsarchive/archive/*`` counters, by name."""
    s3: S3Counts | None = None
    """The requests moto's server answered during the run (the S3 designs)."""

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.wall if self.wall else 0.0


def measure(design: str, command: list[str], env: dict, cwd: Path, exclude: set[int],
            log: Path) -> Measurement:
    """Run ``command`` to its end; its wall time, the CPU time of its whole process tree and
    the peak memory of that tree."""
    result = Measurement(design)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    me = os.getpid()
    done = threading.Event()

    parts: dict[int, str] = {}
    cpu_of: dict[int, float] = {}  # the last CPU seconds sampled, per process

    def sample() -> None:
        last_pss = -PSS_INTERVAL
        while not done.is_set():
            pids = _descendants(me, _children(), exclude)
            for pid in pids:
                if pid not in parts and (argv := _command_line(pid)) is not None:
                    parts[pid] = _part(argv)
                cpu_of[pid] = _cpu_seconds(pid) or cpu_of.get(pid, 0.0)
            if any(parts.get(pid) == "crawl" for pid in pids):
                at = time.perf_counter() - started
                result.crawl_span = (result.crawl_span or (at, at))[0], at
            rss = {pid: _rss_kb(pid) for pid in pids}
            total = sum(rss.values())
            crawl = sum(kb for pid, kb in rss.items() if parts.get(pid) in CRAWL_PARTS)
            result.peak_rss_mb = max(result.peak_rss_mb, total / 1024)
            result.crawl_rss_mb = max(result.crawl_rss_mb, crawl / 1024)
            for name in set(parts.values()):
                kb = sum(v for pid, v in rss.items() if parts.get(pid) == name)
                result.parts_rss_mb[name] = max(result.parts_rss_mb.get(name, 0.0), kb / 1024)
            result.peak_processes = max(result.peak_processes, len(pids))
            elapsed = time.perf_counter() - started
            if elapsed - last_pss >= PSS_INTERVAL:
                last_pss = elapsed
                pss = {pid: _pss_kb(pid) for pid in pids}
                crawl_pss = sum(kb for pid, kb in pss.items() if parts.get(pid) in CRAWL_PARTS)
                result.peak_pss_mb = max(result.peak_pss_mb, sum(pss.values()) / 1024)
                result.crawl_pss_mb = max(result.crawl_pss_mb, crawl_pss / 1024)
                if crawl and (not result.timeline
                              or elapsed - result.timeline[-1][0] >= TIMELINE_INTERVAL):
                    result.timeline.append((elapsed, crawl / 1024, crawl_pss / 1024))
            done.wait(SAMPLE_INTERVAL)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result.returncode = process.wait()
    result.wall = time.perf_counter() - started
    # Descendants still running were re-parented to us: a crawl must leave none behind.
    deadline = time.monotonic() + 10
    while True:
        left = _descendants(me, _children(), exclude)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        result.notes.append(f"{len(left)} process(es) left running after the command: killed")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _reap(exclude)
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for pid, seconds in cpu_of.items():
        name = parts.get(pid, "command")
        result.parts_cpu[name] = result.parts_cpu.get(name, 0.0) + seconds
    return result


def _reap(exclude: set[int]) -> None:
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in exclude:
            return
        os.waitpid(info.si_pid, 0)


# -- the designs ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sites_toml(path: Path, archive_url: str, base_url: str) -> None:
    from tests.conftest import write_sites_file

    write_sites_file(path, archive_url, [{
        "name": SITE_NAME, "allowed_domains": ["127.0.0.1"],
        "allow_private_hosts": ["127.0.0.1"], "sitemaps": [f"{base_url}/robots.txt"],
        **SITE_SETTINGS,
    }])


def run_newsarchive(design: str, work: Path, base_url: str, archive_url: str, env: dict,
                    exclude: set[int], bin_dir: Path = VENV_BIN) -> Measurement:
    run_dir = work / design
    data_dir = run_dir / "data"
    run_dir.mkdir(parents=True)
    config = run_dir / "sites.toml"
    _sites_toml(config, archive_url, base_url)
    env = {**env, "NEWSARCHIVE_DATA_DIR": str(data_dir), "NEWSARCHIVE_LOG_LEVEL": "WARNING"}
    result = measure(design, [str(bin_dir / "newsarchive"), "crawl", "--config", str(config)],
                     env, run_dir, exclude, run_dir / "crawl.log")
    stats_files = sorted((data_dir / "crawls").glob("*.json"))
    return _read_crawl_stats(result, stats_files[-1] if stats_files else None, run_dir)


PAGE_OUTCOMES = ("written", "version", "duplicate", "aliased", "in_progress")
"""The outcomes of storing one page (``StoreOutcome``'s values; ``near_duplicate`` is
counted besides ``written``): their sum is the pages a crawl handled."""


def _read_crawl_stats(result: Measurement, stats_file: Path | None, run_dir: Path) -> Measurement:
    if stats_file is None or not stats_file.exists():
        result.notes.append(f"no stats file: see {run_dir / 'crawl.log'}")
        return result
    stats = json.loads(stats_file.read_text())["stats"]
    result.outcomes = {key.removeprefix("newsarchive/archive/"): value for key, value in
                       stats.items() if key.startswith("newsarchive/archive/")}
    result.articles = result.outcomes.get("written", 0)
    result.pages = sum(result.outcomes.get(name, 0) for name in PAGE_OUTCOMES)
    result.notes.append("archive outcomes: " + ", ".join(
        f"{name} {count}" for name, count in sorted(result.outcomes.items())))
    errors = {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("newsarchive/errors/")}
    if errors:
        result.notes.append(f"errors: {errors}")
    pages = max(1, result.pages)
    store = stats.get("newsarchive/cpu/store_seconds", 0.0)
    result.breakdown = {
        "fetch": (stats.get("newsarchive/cpu/crawl_process_seconds", 0.0) - store) / pages,
        "extract": stats.get("newsarchive/cpu/extract_seconds", 0.0) / pages,
        "store": store / pages,
    }
    result.notes.append(f"pages in flight at most {stats.get('newsarchive/pipeline/max_pages_in_flight')}"
                        f" ({stats.get('newsarchive/pipeline/max_bytes_in_flight', 0) / 1e6:.1f} MB)")
    return result


def run_crawl_subprocess(work: Path, base_url: str, env: dict, exclude: set[int]) -> Measurement:
    """The crawl subprocess alone (``python -m spiders.run``), as the crawl flow starts it."""
    from spiders.config import SiteConfig

    run_dir = work / "crawl"
    run_dir.mkdir(parents=True)
    site = SiteConfig.model_validate({
        "name": SITE_NAME, "allowed_domains": ["127.0.0.1"], "allow_private_hosts": ["127.0.0.1"],
        "sitemaps": [f"{base_url}/robots.txt"], **SITE_SETTINGS})
    stats_file = run_dir / "data" / "crawls" / "crawl.json"
    command = [sys.executable, "-m", "spiders.run", "--site-json", site.model_dump_json(),
               "--archive", str(run_dir / "archive"), "--run-id", "bench-crawl",
               "--stats-file", str(stats_file), "--data-dir", str(run_dir / "data"),
               "--user-agent", "newsarchive-bench", "--log-level", "WARNING"]
    result = measure("crawl", command, env, run_dir, exclude, run_dir / "crawl.log")
    return _read_crawl_stats(result, stats_file, run_dir)


def run_naive_design(work: Path, base_url: str, env: dict, exclude: set[int]) -> Measurement:
    run_dir = work / "naive"
    run_dir.mkdir(parents=True)
    stats_file = run_dir / "stats.json"
    result = measure("naive", [sys.executable, str(Path(__file__).resolve()), "_naive",
                               f"{base_url}/robots.txt", str(run_dir / "out"), str(stats_file)],
                     env, run_dir, exclude, run_dir / "crawl.log")
    if not stats_file.exists():
        result.notes.append(f"no stats file: see {run_dir / 'crawl.log'}")
        return result
    stats = json.loads(stats_file.read_text())
    result.pages = sum(1 for _ in (run_dir / "out").iterdir()) if (run_dir / "out").exists() else 0
    result.articles = result.pages
    pages = max(1, stats["pages"])
    result.breakdown = {"fetch": (stats["process"] - stats["extract"] - stats["store"]) / pages,
                        "extract": stats["extract"] / pages, "store": stats["store"] / pages}
    return result


def start_site(pages: int, work: Path,
               kinds: list[str]) -> tuple[subprocess.Popen, dict[str, str], dict]:
    """The site process, serving a site of each kind; returns it, each kind's base URL and
    what the site process says of the sites (templates, pages left out, the near-copies
    site's check)."""
    port_file = work / "site.json"
    site = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_serve", str(pages),
                             str(port_file), ",".join(kinds)], cwd=ROOT)
    deadline = time.monotonic() + 600  # a busy machine: the near copies are calibrated too
    while not port_file.exists():
        if site.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the benchmark site did not start")
        time.sleep(0.2)
    info = json.loads(port_file.read_text())
    return site, {kind: f"http://127.0.0.1:{port}" for kind, port in info["ports"].items()}, info


ARCHIVE_PREFIX = "archive"
"""The key prefix of the S3 designs' archives (``s3://<bucket>/archive``)."""


def start_moto(work: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server behind the request counter (bench/s3_counting.py), in a process of
    its own."""
    port_file = work / "moto.port"
    with open(work / "moto.log", "wb") as log:
        moto = subprocess.Popen([sys.executable, str(Path(__file__).with_name("s3_counting.py")),
                                 str(port_file), ARCHIVE_PREFIX],
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if time.monotonic() > deadline or moto.poll() is not None:
            raise SystemExit(f"moto's server did not start: see {work / 'moto.log'}")
        time.sleep(0.2)
    return moto, f"http://127.0.0.1:{int(port_file.read_text())}"


def round_trip_ms(endpoint: str, requests: int = 15) -> float:
    """Median wall time, ms, of a small request to the counting S3 server at ``endpoint``
    on one kept-alive connection: what each of a client's sequential round trips costs."""
    import http.client

    from bench.s3_counting import COUNTS_ROUTE

    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    times = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("GET", COUNTS_ROUTE)
            connection.getresponse().read()
            times.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return statistics.median(times)


# Round-trip time the moto-latency design adds between the crawl and moto's server: a
# request to a real S3 endpoint takes 10-50 ms (--latency-ms).
LATENCY_MS = 20.0


def start_latency_proxy(endpoint: str, latency_ms: float) -> tuple[subprocess.Popen, str]:
    """A TCP proxy in front of ``endpoint`` (in a process of its own) that delays every
    chunk by half of ``latency_ms`` each way, as a network does (``netem delay``): each
    request and its answer then take ``latency_ms`` more, however many are in flight."""
    port = _free_port()
    target = endpoint.removeprefix("http://")
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_latency",
                              str(port), target, str(latency_ms)])
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or proxy.poll() is not None:
                raise SystemExit("the latency proxy did not start") from None
            time.sleep(0.1)


_EOF, _CLOSE = object(), object()


class _DelayedSide(asyncio.Protocol):
    """One side of a proxied connection: what it receives is written to its peer ``delay``
    seconds later, in order. asyncio's Protocols with one timer per burst, not streams with
    a task and a queue per direction: the proxy stands for a network, which costs the
    machine's cores nothing, so it should cost them as little as it can (per 2,000 pages,
    the streams version took 6.1-6.4 CPU s, this one 5.0-5.3)."""

    def __init__(self, delay: float, peer: _DelayedSide | None = None) -> None:
        self.delay = delay
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        # (when, what): bytes to write, _EOF to half-close the peer, _CLOSE to close it.
        self._due: collections.deque = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.peer is not None and self.peer._due:
            self.peer._schedule()  # what the other side received before this one connected

    def data_received(self, data: bytes) -> None:
        self._push(data)

    def eof_received(self) -> bool:
        self._push(_EOF)
        return True  # half-closed: the answer may still come

    def connection_lost(self, exc) -> None:
        self._push(_CLOSE)  # once what came before it has been passed on

    def _push(self, data: bytes | object) -> None:
        loop = asyncio.get_running_loop()
        self._due.append((loop.time() + self.delay, data))
        self._schedule()

    def _schedule(self) -> None:
        """A timer for the first thing due, unless one is set or the peer is not there yet."""
        if self._timer is None and self._due and self.peer is not None \
                and self.peer.transport is not None:
            self._timer = asyncio.get_running_loop().call_at(self._due[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        # asyncio runs a timer up to its clock's resolution early: within a millisecond is due.
        now = asyncio.get_running_loop().time() + 0.001
        out = self.peer.transport
        while self._due and self._due[0][0] <= now:
            _, data = self._due.popleft()
            if out.is_closing():
                self._due.clear()
                return
            if data is _CLOSE or (data is _EOF and not out.can_write_eof()):
                out.close()
            elif data is _EOF:
                out.write_eof()
            else:
                out.write(data)
        self._schedule()


def serve_latency(port: int, target: str, latency_ms: float) -> None:
    """The latency proxy's process (see :func:`start_latency_proxy`)."""
    host, target_port = target.rsplit(":", 1)
    delay = latency_ms / 2000

    class Client(_DelayedSide):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.peer = _DelayedSide(delay, peer=self)
            connecting = asyncio.ensure_future(asyncio.get_running_loop().create_connection(
                lambda: self.peer, host, int(target_port)))
            connecting.add_done_callback(
                lambda done: transport.close() if done.exception() else None)

    async def listen() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: Client(delay), "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(listen())


def start_prefect_server(env: dict) -> tuple[subprocess.Popen, str]:
    """``prefect server start``, for the runs that leave the temporary server out."""
    import urllib.request

    port = _free_port()
    server = subprocess.Popen([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the Prefect server did not start") from None
            time.sleep(0.5)


DESIGNS = ("newsarchive", "naive", "newsarchive-server", "moto", "moto-latency", "crawl",
           "baseline")
# --baseline-tree: another checkout of newsarchive (with its own .venv), run as the
# ``baseline`` design: the code before a change, against the code after it, in the same rounds.
BASELINE_TREE: Path | None = None


def compile_bytecode(tree: Path) -> None:
    """Compile the bytecode of ``tree``'s packages, as ``make install`` does for this checkout:
    where PYTHONDONTWRITEBYTECODE is set, a fresh worktree's every process (the command, the
    crawl, the forkserver) would otherwise compile our modules again on each run, a handicap
    of seconds that only the baseline design carries."""
    # The packages the tree itself declares (its pyproject's wheel), not this checkout's.
    project = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "compileall", "-q", *packages],
                   cwd=tree, check=True)


def run_design(design: str, work: Path, base_url: str, env: dict, exclude: set[int],
               servers: dict) -> Measurement:
    """One run of ``design`` in the folder ``work``; ``servers`` keeps the Prefect and moto
    servers started for earlier runs."""
    work.mkdir(parents=True, exist_ok=True)
    if design == "newsarchive":
        return run_newsarchive(design, work, base_url, str(work / design / "archive"), env,
                               exclude)
    if design == "naive":
        return run_naive_design(work, base_url, env, exclude)
    if design == "baseline":
        if BASELINE_TREE is None:
            raise SystemExit("the baseline design needs --baseline-tree")
        return run_newsarchive(design, work, base_url, str(work / design / "archive"),
                               {**env, "PYTHONPATH": str(BASELINE_TREE)}, exclude,
                               BASELINE_TREE / ".venv" / "bin")
    if design == "crawl":
        return run_crawl_subprocess(work, base_url, env, exclude)
    if design in ("newsarchive-server", "moto", "moto-latency") and "prefect" not in servers:
        servers["prefect"] = start_prefect_server(env)
        exclude.add(servers["prefect"][0].pid)
    # moto is compared with newsarchive-server: storing into S3 instead of a directory.
    env = {**env, "PREFECT_API_URL": servers["prefect"][1]}
    if design == "newsarchive-server":
        return run_newsarchive(design, work, base_url, str(work / design / "archive"), env,
                               exclude)
    if design in ("moto", "moto-latency"):
        if "moto" not in servers:
            servers["moto"] = start_moto(work.parent)
            exclude.add(servers["moto"][0].pid)
        moto, moto_endpoint = servers["moto"]
        endpoint, notes = moto_endpoint, []
        if design == "moto-latency":
            if "latency" not in servers:
                servers["latency"] = start_latency_proxy(moto_endpoint, LATENCY_MS)
                exclude.add(servers["latency"][0].pid)
            endpoint = servers["latency"][1]
            direct, proxied = round_trip_ms(moto_endpoint), round_trip_ms(endpoint)
            notes.append(f"the proxy adds {proxied - direct:.1f} ms per round trip (median: "
                         f"{proxied:.1f} ms through it, {direct:.1f} ms straight to moto; "
                         f"LATENCY_MS {LATENCY_MS:g})")
        # Each design, site and round into an empty archive of its own.
        bucket = f"bench-{design}-{work.parent.name}-{work.name}"
        moto_env = {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3

        boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench",
                     ).create_bucket(Bucket=bucket)
        read_counts(moto_endpoint, reset=True)  # the run's requests alone
        moto_cpu = _cpu_seconds(moto.pid)
        proxy = servers["latency"][0] if design == "moto-latency" else None
        proxy_cpu = _cpu_seconds(proxy.pid) if proxy else 0.0
        result = run_newsarchive(design, work, base_url, f"s3://{bucket}/{ARCHIVE_PREFIX}",
                                 moto_env, exclude)
        result.s3 = read_counts(moto_endpoint, reset=True)
        result.notes += notes
        result.notes.append(f"moto's server used {_cpu_seconds(moto.pid) - moto_cpu:.1f} "
                            "CPU s besides")
        if proxy:  # on the same cores too, where a network would cost the crawl nothing
            result.notes.append(f"the latency proxy used {_cpu_seconds(proxy.pid) - proxy_cpu:.1f} "
                                "CPU s besides")
        return result
    raise AssertionError(f"unknown design {design!r}")


def autogroup_warning(setting: Path = Path("/proc/sys/kernel/sched_autogroup_enabled")
                      ) -> str | None:
    """A line for the reader when the kernel shares the cores out by session: ``nice`` then
    orders the processes of one session only, and another session's work at ``nice 19``
    (a test run, another bench) takes as much of the machine as this bench. Seen here: a
    third of a crawl's speed, now and then, in one design of a round and not the next."""
    try:
        enabled = setting.read_text().strip() == "1"
    except OSError:
        return None
    if not enabled:
        return None
    return ("note: the kernel's sched_autogroup is on: other sessions' work, however nice, takes "
            "its share of the cores from this bench (as root, `echo 0 > "
            f"{setting}` turns it off until the next boot)")


def main() -> None:
    global BASELINE_TREE, LATENCY_MS
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]),
              sys.argv[4].split(",") if len(sys.argv) > 4 else ["distinct"])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_latency":
        serve_latency(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_naive":
        run_naive(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--designs", default="newsarchive,naive,newsarchive-server,moto",
                        help="comma-separated, run in this order: newsarchive, naive, "
                        "newsarchive-server (PREFECT_API_URL set to a Prefect server started "
                        "beforehand), moto, moto-latency, crawl (the crawl subprocess alone), "
                        "baseline (with --baseline-tree)")
    parser.add_argument("--sites", default="distinct",
                        help="comma-separated kinds of site, each crawled by every design in "
                        "every round: distinct (N distinct articles), near-copies (groups of "
                        "10-20 near copies of one story, some exact copies)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the designs this many times, in turn (ABAB...): a shared "
                        "machine's speed drifts, and each round's ratios compare runs that "
                        "followed each other")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS,
                        help="the round-trip time the moto-latency design adds (default "
                        "%(default)g)")
    parser.add_argument("--workdir", type=Path, help="where the archives go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the archives")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--baseline-tree", type=Path,
                        help="a checkout of newsarchive with its own .venv, run as the "
                        "'baseline' design (e.g. the code before a change)")
    args = parser.parse_args()
    BASELINE_TREE = args.baseline_tree.resolve() if args.baseline_tree else None
    if BASELINE_TREE is not None:
        compile_bytecode(BASELINE_TREE)
    LATENCY_MS = args.latency_ms
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = sorted(set(designs) - set(DESIGNS))
    if unknown or len(set(designs)) < len(designs):
        parser.error(f"--designs: each of {', '.join(DESIGNS)}, once (not {', '.join(unknown) or 'twice'})")
    kinds = [k.strip() for k in args.sites.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(SITE_KINDS))
    if not kinds or unknown or len(set(kinds)) < len(kinds):
        parser.error(f"--sites: each of {', '.join(SITE_KINDS)}, once (not {', '.join(unknown) or 'twice'})")

    _become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="throughput-", dir=args.workdir))
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # Prefect's state, like `make run`'s, outlives the runs: its database is set up once.
           "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(ROOT / ".newsarchive" / "prefect"))}
    warning = autogroup_warning()
    if warning:
        print(warning, flush=True)
    print(f"building the sites ({', '.join(kinds)}) of {args.pages} pages ...", flush=True)
    site, base_urls, info = start_site(args.pages, work, kinds)
    exclude = {site.pid}
    servers: dict = {}
    rounds: list[list[Measurement]] = []
    try:
        print(f"{info['templates']} corpus pages make the copies; left out: "
              f"{len(info['left_out'])}", flush=True)
        for line in info["left_out"]:
            print(f"  {line}")
        if "near_copies" in info:
            print_near_copies(info["near_copies"])
        for number in range(1, args.rounds + 1):
            for kind in kinds:
                results = []
                # Every other round in reverse order (ABBA...): a machine that speeds up or
                # slows down during the rounds then favours no design.
                for design in designs if number % 2 else designs[::-1]:
                    print(f"round {number}, {kind} site: running {design} ...", flush=True)
                    site_cpu = _cpu_seconds(site.pid)
                    result = run_design(design, work / f"round-{number}" / kind, base_urls[kind],
                                        env, exclude, servers)
                    result.site = kind
                    result.site_cpu = _cpu_seconds(site.pid) - site_cpu
                    if result.returncode:
                        result.notes.append(f"exit status {result.returncode}")
                    results.append(result)
                results.sort(key=lambda r: designs.index(r.design))
                rounds.append(results)
                report(results, args.pages, f"round {number} of {args.rounds}, {kind} site")
                if args.json:  # after every round: an interrupted bench keeps what it measured
                    write_json(args.json, rounds, len(kinds), args.pages, info)
    finally:
        for server in [site, *(process for process, _ in servers.values())]:
            server.terminate()
            server.wait(30)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary(rounds, kinds)


def print_near_copies(near: dict) -> None:
    """What the near-copies site is, as its process checked it at start-up."""
    check = near["check"]
    pages = max(1, check["pages"])
    print(f"near-copies site: {near['templates']} corpus pages make its groups; left out: "
          f"{len(near['left_out'])}")
    for line in near["left_out"]:
        print(f"  {line}")
    print(f"  {check['pages']} pages in {check['groups']} groups of {check['group_sizes'][0]}-"
          f"{check['group_sizes'][1]}: {check['first']} firsts, {check['near']} near copies "
          f"({check['near'] / pages:.0%}), {check['exact']} exact copies "
          f"({check['exact'] / pages:.0%}); near or exact: "
          f"{(check['near'] + check['exact']) / pages:.0%}")
    print(f"  checked on the extracted texts of {check['checked_groups']} groups: mean Jaccard "
          f"of 3-word shingles within a group {check['mean_jaccard']:.3f} (min "
          f"{check['min_jaccard']:.3f}); near copies confirmed {check['near_confirmed'][0]}/"
          f"{check['near_confirmed'][1]}, exact {check['exact_confirmed'][0]}/"
          f"{check['exact_confirmed'][1]}; two groups of one corpus page: Jaccard "
          f"{check['across_groups_jaccard']:.3f}")
    if check["problems"]:
        raise SystemExit("the near-copies site is not what it claims: "
                         + "; ".join(check["problems"][:5]))


def write_json(path: Path, rounds: list[list[Measurement]], kinds: int, pages: int,
               info: dict) -> None:
    """Every run's figures, for notes: pages/s, ratio, CPU, S3 requests by method, prefix
    and status."""
    runs = []
    for number, results in enumerate(rounds):  # a round's sites one after the other
        for r in results:
            runs.append({
                "round": number // kinds + 1, "site": r.site, "design": r.design, "pages": r.pages,
                "articles": r.articles, "wall_s": r.wall, "pages_per_s": r.pages_per_second,
                "x_naive": _ratio(r, results), "cpu_s": r.cpu, "peak_rss_mb": r.peak_rss_mb,
                "crawl_rss_mb": r.crawl_rss_mb, "outcomes": r.outcomes, "breakdown": r.breakdown,
                "notes": r.notes, "s3": r.s3.to_json() if r.s3 else None,
                "s3_per_article": r.s3.total / r.articles if r.s3 and r.articles else None})
    path.write_text(json.dumps({"pages": pages, "near_copies": info.get("near_copies"),
                                "latency_ms": LATENCY_MS, "runs": runs}, indent=1))


def _ratio(result: Measurement, results: list[Measurement]) -> float:
    """``result``'s pages/s over the naive design's in the same round."""
    naive = next((r for r in results if r.design == "naive"), None)
    if naive is None or not naive.pages_per_second:
        return 0.0
    return result.pages_per_second / naive.pages_per_second


def summary(rounds: list[list[Measurement]], kinds: list[str]) -> None:
    """Per kind of site, each design's pages/s and ratio to the naive design, per round and
    their median; the S3 designs' requests per new article."""
    for kind in kinds:
        of_kind = [results for results in rounds if results and results[0].site == kind]
        if not of_kind:
            continue
        print()
        print(f"summary, {kind} site, {len(of_kind)} round(s): pages/s (x naive in the same "
              "round)")
        for design in [r.design for r in of_kind[0]]:
            runs = [(r, results) for results in of_kind for r in results if r.design == design]
            cells = "  ".join(f"{r.pages_per_second:5.1f} (x{_ratio(r, rs):.2f})" for r, rs in runs)
            ratio = statistics.median(_ratio(r, rs) for r, rs in runs)
            speed = statistics.median(r.pages_per_second for r, _ in runs)
            print(f"{design:<18} {cells}   median {speed:.1f} pages/s, x{ratio:.2f}; peak RSS: "
                  f"crawl {max(r.crawl_rss_mb for r, _ in runs):.0f} MB, "
                  f"all {max(r.peak_rss_mb for r, _ in runs):.0f} MB")
        s3_runs = [r for results in of_kind for r in results if r.s3 and r.articles]
        if s3_runs:
            s3_report(s3_runs, f"summary, {kind} site: S3 requests per new article, counted at "
                      "moto's server (mean over the rounds)")


def s3_report(results: list[Measurement], title: str) -> None:
    """Requests per new article (total, by method, by method and prefix) of each S3 design,
    averaged over its runs, and the requests refused (412: a conditional write lost)."""
    designs = list(dict.fromkeys(r.design for r in results))
    runs = {d: [r for r in results if r.design == d] for d in designs}

    def per_article(design: str, count) -> float:
        return statistics.mean(count(r.s3) / r.articles for r in runs[design])

    width = max(12, *(len(d) for d in designs))
    label = 42
    print()
    print(title)
    print(f"{'':<{label}}" + "".join(f"{d:>{width + 1}}" for d in designs))
    print(f"{'new articles (mean)':<{label}}" + "".join(
        f"{statistics.mean(r.articles for r in runs[d]):>{width + 1}.0f}" for d in designs))
    print(f"{'requests (mean)':<{label}}" + "".join(
        f"{statistics.mean(r.s3.total for r in runs[d]):>{width + 1}.0f}" for d in designs))
    print(f"{'requests per page stored':<{label}}" + "".join(
        f"{statistics.mean(r.s3.total / max(1, r.pages) for r in runs[d]):>{width + 1}.2f}"
        for d in designs))
    print(f"{'requests per new article':<{label}}" + "".join(
        f"{per_article(d, lambda c: c.total):>{width + 1}.2f}" for d in designs))
    methods = sorted({m for r in results for m in r.s3.by_method()})
    for method in methods:
        print(f"{'  ' + method:<{label}}" + "".join(
            f"{per_article(d, lambda c, m=method: c.by_method()[m]):>{width + 1}.2f}"
            for d in designs))
    print("by method and prefix, per new article:")
    keys = sorted({k for r in results for k in r.s3.by_request()}, key=lambda k: (k[1], k[0]))
    for method, prefix in keys:
        print(f"{'  ' + method + ' ' + prefix:<{label}}" + "".join(
            f"{per_article(d, lambda c, k=(method, prefix): c.by_request()[k]):>{width + 1}.2f}"
            for d in designs))
    print(f"{'  Expect: 100-continue':<{label}}" + "".join(
        f"{per_article(d, lambda c: c.expect_continue):>{width + 1}.2f}" for d in designs))
    refused = sorted({k for r in results for k in r.s3.refused()}, key=lambda k: (k[1], k[0], k[2]))
    if refused:
        print("answered 3xx-5xx (412: a conditional request's condition failed), per new article:")
        for method, prefix, status in refused:
            key = (method, prefix, status)
            print(f"{'  ' + f'{status} {method} {prefix}':<{label}}" + "".join(
                f"{per_article(d, lambda c, k=key: c.refused()[k]):>{width + 1}.2f}"
                for d in designs))


def report(results: list[Measurement], pages: int, title: str) -> None:
    naive = next((r for r in results if r.design == "naive"), None)
    print()
    cores = os.cpu_count() or 1
    print(f"{title}: {pages} pages, {cores} cores")
    print("pages/s: pages handled (ours: stored, whether a new article, a version, a duplicate "
          "or an alias; new: articles written) per wall second; CPU-bound: what the CPU time "
          f"allows on an otherwise idle machine ({cores} cores for newsarchive, one for the "
          "naive design, whose work all runs in one thread); site s: CPU the local site spent "
          "serving the design")
    print("peak memory, MB, summed over processes: RSS (shared pages in each) / PSS (split); "
          "all: the whole command, crawl: the crawl process and its extraction processes")
    header = (f"{'design':<18} {'pages':>6} {'new':>6} {'wall s':>7} {'pages/s':>8} {'x naive':>7} "
              f"{'CPU-bound':>9} {'x naive':>7} {'CPU s':>7} {'ms/page':>7} {'site s':>6} "
              f"{'RSS all':>7} {'PSS all':>7} {'RSS crawl':>9} {'PSS crawl':>9} {'procs':>5}")
    print(header)

    def bound(r: Measurement) -> float:
        return (1 if r.design == "naive" else cores) * r.pages / r.cpu if r.cpu else 0.0

    for r in results:
        bound_ratio = bound(r) / bound(naive) if naive and bound(naive) else 0
        print(f"{r.design:<18} {r.pages:>6} {r.articles:>6} {r.wall:>7.1f} "
              f"{r.pages_per_second:>8.1f} "
              f"{_ratio(r, results):>7.2f} {bound(r):>9.1f} {bound_ratio:>7.2f} {r.cpu:>7.1f} "
              f"{r.cpu / max(1, r.pages) * 1000:>7.1f} {r.site_cpu:>6.1f} "
              f"{r.peak_rss_mb:>7.0f} {r.peak_pss_mb:>7.0f} {r.crawl_rss_mb:>9.0f} "
              f"{r.crawl_pss_mb:>9.0f} {r.peak_processes:>5}")
    print()
    print("peak RSS of each part, MB (summed over its processes; parts peak at different times)")
    for r in results:
        print(f"{r.design:<18} " + "  ".join(f"{name} {mb:.0f}" for name, mb in
                                             sorted(r.parts_rss_mb.items())))
    print()
    print("CPU s of each part (sampled: a lower bound); the crawl process seen from..to, "
          "s after the command started")
    for r in results:
        span = (f"  crawl seen {r.crawl_span[0]:.1f}..{r.crawl_span[1]:.1f} of {r.wall:.1f}"
                if r.crawl_span else "")
        print(f"{r.design:<18} " + "  ".join(f"{name} {cpu:.1f}" for name, cpu in
                                             sorted(r.parts_cpu.items())) + span)
    print()
    print("per-page CPU, ms (fetch: the crawl process besides storing; start-up included)")
    print(f"{'design':<18} {'fetch':>7} {'extract':>8} {'store':>7}")
    for r in results:
        if r.breakdown:
            b = r.breakdown
            print(f"{r.design:<18} {b['fetch'] * 1000:>7.1f} {b['extract'] * 1000:>8.1f} "
                  f"{b['store'] * 1000:>7.1f}")
    for r in results:
        for note in r.notes:
            print(f"{r.design}: {note}")
    print()
    print("crawl memory over time, MB (RSS / PSS of the crawl process and its extraction "
          "processes)")
    for r in results:
        if r.timeline:
            step = max(1, len(r.timeline) // 10)
            points = r.timeline[::step] + ([r.timeline[-1]] if (len(r.timeline) - 1) % step else [])
            print(f"{r.design:<18} " + "  ".join(f"{t:.0f}s {rss:.0f}/{pss:.0f}"
                                                for t, rss, pss in points))
    s3_runs = [r for r in results if r.s3 and r.articles]
    if s3_runs:
        s3_report(s3_runs, f"{title}: S3 requests per new article, counted at moto's server")


if __name__ == "__main__":
    main()
