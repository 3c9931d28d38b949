"""The servers of ``bench/incremental_crawl.py``, each run in a process of its own: a synthetic news
site whose sitemaps and feed answer conditional requests and which counts the requests it
gets by kind, and moto's S3 server behind a middleware that counts S3 requests by method
and key prefix.

The site is made on request from a seed, so a site of any size costs the bench no memory
beyond its cached sitemaps: article ``n``'s title, byline and text come from a random
generator seeded with ``n``, and its date from its place in the site. The bench process
builds the same :class:`NewsModel` from the same parameters to seed an archive with what a
crawl of the site would leave.

Control routes (not counted): ``/_bench/counts`` (``?reset=1`` also sets them to zero) and
``/_bench/publish`` (phase 2: twenty new articles in the newest sitemap and at the top of
the feed; once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import struct
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import SiteProtocol  # noqa: E402 (stdlib only: light for a server)

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
PUBLICATION = "The Bench Courier"
FEED_SIZE = 50
"""Items in the feed: the newest articles."""
NEW_ARTICLES = 20
"""Articles phase 2 adds to the newest sitemap."""
DAY = 86400

# Common English words: enough of them that two articles' texts share no run of words (a
# MinHash near duplicate needs 90% of shingles in common), and English enough that the
# language detector says so.
_WORDS = """
about above across action after again against agency agreement ahead airport already
also although among analysis announced annual another answer anyone april area army
around arrived asked attack attention august authority autumn average away back bank
based became because become before began behind being believe below best better between
bill billion black board body book border both bought bridge brief brought budget build
building business called came campaign cannot capital care career carried case cause
central century certain chairman chance change charge chief children choice church city
claim class clear climate close club coast cold college come committee common community
company concern conference congress control cost council country county court cover
create crime crisis critical current customer daily damage data daughter deal death debt
december decision defence demand department described design despite detail develop
development different difficult director discuss disease district doctor dollar done
double down draft drive during early east economic economy edge education effect effort
eight election electric energy engineer enough entire environment equal europe evening
event every evidence exactly example expect experience expert explain face fact factory
fall family farmer father fear february federal field fight figure final finance find
fire first five flight floor follow food force foreign forest former forward found four
free friday friend front fuel full fund future game garden general gives glass global
goal going government great green ground group growth guard half hall hand happen harbour
health hear heart heavy held help high highway hill history hold home hospital hotel
hour house housing however human hundred idea important income increase industry inside
interest international investment island issue january job joined journey judge july
june justice keep kept kind kitchen known labour land language large last late later law
leader learn least leave left legal less letter level library life light likely limit
line list little live local long look lost made major make manager many march market
material matter mayor meant measure media medical meeting member message method middle
might military million minister minute model moment monday money month morning mother
move much museum music national nature near need network never news next night north
note november number october offer office officer often oil once only open opinion order
other outside owner page paid parent park part party passed past patient peace people
percent period person picture piece place plan plant player plenty police policy
political poor popular population port position possible power pressure price private
problem process produce product program project property protect provide public pupil
quarter question quickly rail rain raised range rate rather reach ready real reason
receive recent record reduce region remain report research resident result return
review right rise risk river road rock role room round rule rural safety said sales
same saturday school science season second secretary section security seen senior
sense september series service session seven several share ship short shown side sign
simple since single sister site size small social soldier south space speak special
spring staff stage standard start state station still stock stone store story street
strong student study summer sunday supply support system table taken talk team
technology term test thing third thousand three through thursday ticket time today
together total tourism toward town trade traffic train transport travel treaty tree
trial truck tuesday turn union unit university until upon urban used valley value
village visit voice vote wage wait walk wall water weather wednesday week weekend west
whole wide wife wind window winter within without woman wood work worker world writer
year young youth zone
""".split()

_FIRST_NAMES = ("Anna", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines",
                "James", "Kenji", "Lena", "Marco", "Nadia", "Oscar", "Priya", "Rosa", "Samuel",
                "Tara", "Victor", "Wen", "Yusuf", "Zoe")
_LAST_NAMES = ("Adams", "Baker", "Castro", "Dubois", "Evans", "Fischer", "Garcia", "Hansen",
               "Ito", "Jensen", "Khan", "Larsen", "Moreau", "Novak", "Okafor", "Patel",
               "Quinn", "Rossi", "Silva", "Tanaka", "Weber", "Young")
_SECTIONS = ("politics", "business", "world", "science", "culture", "sport", "local")


@dataclass(frozen=True)
class ArticleContent:
    """What article ``n`` says: the same in every process, from a generator seeded with ``n``."""

    title: str
    """The headline."""
    author: str
    """The byline's one author."""
    section: str
    """The section the article is filed under (a path segment)."""
    paragraphs: tuple[str, ...]
    """Four to six paragraphs of text like no other article's."""

    @property
    def text(self) -> str:
        """The article's text, one paragraph a line: what an extraction gives."""
        return "\n".join(self.paragraphs)


def _headline(rng: random.Random) -> str:
    words = rng.sample(_WORDS, rng.randint(6, 10))
    return " ".join([words[0].capitalize(), *words[1:]])


def headline(n: int) -> str:
    """Article ``n``'s headline alone (drawn first: a sitemap needs no more)."""
    return _headline(random.Random(f"article-{n}"))


def slug(n: int) -> str:
    """The last path segment of article ``n``'s URL: headline words, then ``n``."""
    return "-".join(headline(n).lower().split()[:5]) + f"-{n}"


def article_content(n: int) -> ArticleContent:
    """Article ``n``: headline, byline, section and four to six paragraphs."""
    rng = random.Random(f"article-{n}")
    title = _headline(rng)
    author = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    section = rng.choice(_SECTIONS)
    paragraphs = []
    for _ in range(rng.randint(4, 6)):
        sentences = []
        for _ in range(rng.randint(3, 5)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(9, 18))]
            sentences.append(" ".join([words[0].capitalize(), *words[1:]]) + ".")
        paragraphs.append(" ".join(sentences))
    return ArticleContent(title, author, section, tuple(paragraphs))


def w3c(moment: datetime) -> str:
    """A W3C datetime (sitemaps), to the second, in UTC."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def http_date(moment: datetime) -> str:
    """An HTTP date (``Last-Modified``)."""
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


@dataclass(frozen=True)
class Document:
    """A discovery document as served: body and validators."""

    body: bytes
    content_type: str
    etag: str
    """A strong ETag: the quoted SHA-256 of the body (its first 32 hex digits)."""
    last_modified: datetime
    """When its newest entry changed, to the second."""

    @classmethod
    def of(cls, text: str, content_type: str, last_modified: datetime) -> Document:
        body = text.encode("utf-8")
        return cls(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                   last_modified.replace(microsecond=0))

    @property
    def last_modified_header(self) -> str:
        return http_date(self.last_modified)


@dataclass(frozen=True)
class SitemapEntry:
    """One sitemap of the index."""

    name: str
    """Its file name under ``/sitemaps/``."""
    ids: tuple[int, ...] | range
    """Its articles, newest first."""


class NewsModel:
    """What the site publishes: its articles (their dates and URLs) and their sitemaps.

    Two shapes: ``daily`` (``sitemaps`` sitemaps of ``per_sitemap`` articles, one a day going
    back from ``t0``, plus a feed of the newest 50; phase 2 adds twenty articles to the
    newest) and ``year`` (``days`` days of ``per_day`` articles ending the day before
    ``t0``, in monthly sitemaps whose entries carry ``news:publication_date``; no feed).
    """

    def __init__(self, shape: str, t0: float, *, sitemaps: int = 0, per_sitemap: int = 0,
                 days: int = 0, per_day: int = 2) -> None:
        if shape not in ("daily", "year"):
            raise ValueError(f"unknown shape {shape!r}")
        self.shape = shape
        self.t0 = datetime.fromtimestamp(int(t0), timezone.utc)
        self.published_new: dict[int, datetime] = {}
        if shape == "daily":
            self.per_sitemap = per_sitemap
            self.count = sitemaps * per_sitemap
            self._sitemaps = [SitemapEntry(self._daily_name(k), range(k * per_sitemap,
                                                                      (k + 1) * per_sitemap))
                              for k in range(sitemaps)]
        else:
            self.per_day = per_day
            self.count = days * per_day
            self.first_day = self.t0.date() - timedelta(days=days)
            months: dict[str, list[int]] = {}
            for n in range(self.count):
                months.setdefault(f"{self.published(n):%Y-%m}", []).append(n)
            # Newest month first, newest article first, as a publisher lists them.
            self._sitemaps = [SitemapEntry(f"{month}.xml", tuple(reversed(ids)))
                              for month, ids in sorted(months.items(), reverse=True)]
        self._by_name = {s.name: s for s in self._sitemaps}

    def _daily_name(self, k: int) -> str:
        return f"{(self.t0 - timedelta(days=k)).date():%Y-%m-%d}.xml"

    @property
    def sitemaps(self) -> list[SitemapEntry]:
        """The sitemaps of the index, newest first."""
        return self._sitemaps

    @property
    def days(self) -> tuple[date, date]:
        """The first and last publication days (year shape)."""
        return self.first_day, self.first_day + timedelta(days=self.count // self.per_day - 1)

    def published(self, n: int) -> datetime:
        """When article ``n`` was published (its ``lastmod`` too: articles do not change)."""
        if n in self.published_new:
            return self.published_new[n]
        if self.shape == "daily":
            k, j = divmod(n, self.per_sitemap)
            # Sitemap k holds the day before t0 - k days, newest first, spread over it.
            return self.t0 - timedelta(days=k, seconds=(j + 1) * DAY // (self.per_sitemap + 1))
        day, j = divmod(n, self.per_day)
        start = datetime.combine(self.first_day + timedelta(days=day), datetime.min.time(),
                                 timezone.utc)
        return start + timedelta(seconds=(j + 1) * DAY // (self.per_day + 1))

    def path(self, n: int) -> str:
        return f"/news/{self.published(n):%Y/%m/%d}/{slug(n)}"

    def article_ids(self) -> range:
        """Every article before phase 2."""
        return range(self.count)

    def publish(self, now: datetime) -> list[int]:
        """Phase 2: twenty new articles, published in the seconds before ``now``, at the top
        of the newest sitemap and of the feed. Once; returns their ids."""
        if self.shape != "daily" or self.published_new:
            return sorted(self.published_new)
        new = list(range(self.count, self.count + NEW_ARTICLES))
        for age, n in enumerate(reversed(new)):
            self.published_new[n] = now.replace(microsecond=0) - timedelta(seconds=age)
        newest = self._sitemaps[0]
        self._sitemaps[0] = SitemapEntry(newest.name, (*reversed(new), *newest.ids))
        self._by_name[newest.name] = self._sitemaps[0]
        return new

    # -- documents -------------------------------------------------------------------

    def robots(self, base: str) -> str:
        return f"User-agent: *\nAllow: /\n\nSitemap: {base}/sitemap.xml\n"

    def lastmod(self, sitemap: SitemapEntry) -> datetime:
        return max(self.published(n) for n in sitemap.ids)

    def index(self, base: str) -> Document:
        items = []
        for sitemap in self._sitemaps:
            items.append(f"<sitemap><loc>{base}/sitemaps/{sitemap.name}</loc>"
                         f"<lastmod>{w3c(self.lastmod(sitemap))}</lastmod></sitemap>")
        text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{SITEMAP_NS}">\n'
                + "\n".join(items) + "\n</sitemapindex>\n")
        return Document.of(text, "application/xml", max(self.lastmod(s) for s in self._sitemaps))

    def sitemap(self, name: str, base: str) -> Document | None:
        sitemap = self._by_name.get(name)
        if sitemap is None:
            return None
        news = self.shape == "year"
        items = []
        for n in sitemap.ids:
            when = w3c(self.published(n))
            extension = (f"<news:news><news:publication><news:name>{PUBLICATION}</news:name>"
                         "<news:language>en</news:language></news:publication>"
                         f"<news:publication_date>{when}</news:publication_date>"
                         f"<news:title>{escape(headline(n))}</news:title></news:news>"
                         if news else "")
            items.append(f"<url><loc>{base}{self.path(n)}</loc><lastmod>{when}</lastmod>"
                         f"{extension}</url>")
        namespaces = f'xmlns="{SITEMAP_NS}"' + (f' xmlns:news="{NEWS_NS}"' if news else "")
        text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {namespaces}>\n'
                + "\n".join(items) + "\n</urlset>\n")
        return Document.of(text, "application/xml", self.lastmod(sitemap))

    def newest(self, count: int) -> list[int]:
        """The ``count`` newest articles, newest first."""
        out: list[int] = []
        for sitemap in self._sitemaps:
            out.extend(sitemap.ids[:count - len(out)])
            if len(out) >= count:
                break
        return out

    def feed(self, base: str) -> Document | None:
        if self.shape != "daily":
            return None
        items = [f"<item><title>{escape(headline(n))}</title><link>{base}{self.path(n)}</link>"
                 f'<guid isPermaLink="true">{base}{self.path(n)}</guid>'
                 f"<pubDate>{http_date(self.published(n))}</pubDate></item>"
                 for n in self.newest(FEED_SIZE)]
        newest = self.published(self.newest(1)[0])
        text = ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
                f"<title>{PUBLICATION}</title><link>{base}/</link>"
                f"<description>The latest news</description>"
                f"<lastBuildDate>{http_date(newest)}</lastBuildDate>\n"
                + "\n".join(items) + "\n</channel></rss>\n")
        return Document.of(text, "application/rss+xml", newest)

    def article_html(self, n: int, base: str) -> bytes:
        content = article_content(n)
        url = base + self.path(n)
        when = self.published(n)
        title = escape(content.title)
        paragraphs = "\n".join(f"<p>{escape(p)}</p>" for p in content.paragraphs)
        nav = " ".join(f'<a href="/{s}">{s.capitalize()}</a>' for s in _SECTIONS)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} | {PUBLICATION}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="{escape(content.paragraphs[0].split('. ')[0])}.">
<meta name="author" content="{escape(content.author)}">
<meta property="og:type" content="article">
<meta property="og:title" content="{title}">
<meta property="og:url" content="{url}">
<meta property="og:site_name" content="{PUBLICATION}">
<meta property="article:published_time" content="{w3c(when)}">
<meta property="article:section" content="{content.section}">
<link rel="canonical" href="{url}">
</head><body>
<header><a class="logo" href="/">{PUBLICATION}</a><nav>{nav}</nav></header>
<main><article>
<p class="kicker"><a href="/{content.section}">{content.section.capitalize()}</a></p>
<h1>{title}</h1>
<p class="byline">By <a rel="author" href="/authors/{content.author.lower().replace(' ', '-')}">{escape(content.author)}</a>
 <time datetime="{w3c(when)}">{when:%B %d, %Y %H:%M} UTC</time></p>
{paragraphs}
</article></main>
<footer><p>Subscribe to our newsletter for the day's top stories.</p>
<p>Copyright {when:%Y} {PUBLICATION}. All rights reserved.</p></footer>
</body></html>
""".encode()


# -- the site's server ------------------------------------------------------------------

KINDS = ("robots", "index", "sitemaps", "feeds", "articles", "other")
_ARTICLE_PATH = re.compile(r"/news/\d{4}/\d{2}/\d{2}/[a-z-]+-(\d+)")


def not_modified(headers: dict[str, str], document: Document) -> bool:
    """RFC 9110 conditional GET: ``If-None-Match`` (weak comparison) decides when present;
    else ``If-Modified-Since``."""
    if "if-none-match" in headers:
        tags = [t.strip().removeprefix("W/") for t in headers["if-none-match"].split(",")]
        return "*" in tags or document.etag in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return document.last_modified <= moment
    return False


class Site:
    """The site's routes over a :class:`NewsModel`, with request counters by kind."""

    def __init__(self, model: NewsModel) -> None:
        self.model = model
        self.counts: Counter[str] = Counter()
        self._documents: dict[tuple[str, str], Document | None] = {}

    def _document(self, key: str, base: str, make) -> Document | None:
        # Cached: a crawl of the baseline asks for every sitemap on every run.
        if (key, base) not in self._documents:
            self._documents[key, base] = make()
        return self._documents[key, base]

    def respond(self, method: str, target: str, headers: dict[str, str],
                base: str) -> tuple[int, dict[str, str], bytes]:
        path, _, query = target.partition("?")
        if path.startswith("/_bench/"):
            return self._control(path, parse_qs(query))
        kind, document = self._route(path, base)
        self.counts[kind] += 1
        if isinstance(document, bytes):
            return 200, {"Content-Type": "text/html; charset=utf-8"}, document
        if isinstance(document, str):
            return 200, {"Content-Type": "text/plain"}, document.encode()
        if document is None:
            return 404, {"Content-Type": "text/html"}, b"<html><body><h1>Not Found</h1></body></html>"
        validators = {"ETag": document.etag, "Last-Modified": document.last_modified_header}
        if method in ("GET", "HEAD") and not_modified(headers, document):
            self.counts["not_modified"] += 1
            return 304, validators, b""
        return 200, {"Content-Type": document.content_type, **validators}, document.body

    def _route(self, path: str, base: str):
        model = self.model
        if path == "/robots.txt":
            return "robots", model.robots(base)
        if path == "/sitemap.xml":
            return "index", self._document("index", base, lambda: model.index(base))
        if path.startswith("/sitemaps/"):
            name = path.removeprefix("/sitemaps/")
            return "sitemaps", self._document(name, base, lambda: model.sitemap(name, base))
        if path == "/rss.xml":
            return "feeds", self._document("feed", base, lambda: model.feed(base))
        match = _ARTICLE_PATH.fullmatch(path)
        if match:
            n = int(match.group(1))
            known = n < model.count or n in model.published_new
            return "articles", (model.article_html(n, base) if known and model.path(n) == path
                                else None)
        return "other", None

    def _control(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        json_type = {"Content-Type": "application/json"}
        if path == "/_bench/counts":
            counts = {kind: self.counts.get(kind, 0) for kind in (*KINDS, "not_modified")}
            if query.get("reset"):
                self.counts.clear()
            return 200, json_type, json.dumps(counts).encode()
        if path == "/_bench/publish":
            new = self.model.publish(datetime.now(timezone.utc))
            self._documents.clear()
            return 200, json_type, json.dumps({"new": new}).encode()
        return 404, json_type, b"{}"


def write_port(port_file: Path, port: int) -> None:
    """Tell the bench the port, all at once (it polls for the file)."""
    partial = port_file.with_suffix(".partial")
    partial.write_text(json.dumps({"port": port}))
    partial.rename(port_file)


def serve_site(model: NewsModel, port_file: Path) -> None:
    """Serve the site until killed; write the port to ``port_file`` once listening."""
    site = Site(model)

    async def listen() -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: SiteProtocol(site.respond), "127.0.0.1", 0, backlog=128)
        write_port(port_file, server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(listen())


# -- moto's S3 server, counting -------------------------------------------------------------

S3_PREFIXES = ("_index/urls/", "_index/sites/", "_index/lsh/", "_index/content/", "articles/",
               "warc/", "catalog/", "runs/")
"""The archive's key prefixes S3 requests are counted by (others: ``other``)."""


def s3_category(key: str, archive_prefix: str) -> str:
    """The counted prefix of a bucket-relative key (or listing prefix)."""
    key = key.removeprefix(archive_prefix)
    return next((p for p in S3_PREFIXES if key.startswith(p)), "other")


class CountingS3:
    """moto's WSGI app behind a counter of requests by method (``LIST`` for a bucket
    listing) and archive key prefix.

    Counted here, in front of moto and in its process, rather than from moto's request log:
    the log is werkzeug's access line, with the key percent-encoded and the listing's prefix
    in the query string, to be parsed line by line in another process, and formatting it
    costs moto's process CPU that would then be counted against nothing. A middleware sees
    each request once, decoded, and answers the counts on request (``/_bench/s3-counts``).

    ``/_bench/load`` stores objects straight in moto's backend, without a request per
    object: seeding a hundred thousand articles' index state through boto3 would cost
    moto minutes of CPU.
    """

    def __init__(self, app, archive_prefix: str) -> None:
        self.app = app
        self.archive_prefix = archive_prefix.strip("/") + "/"
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._control(path, environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        bucket, _, key = path.lstrip("/").partition("/")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if not key and method == "GET" and ("list-type" in query or "prefix" in query):
            method, key = "LIST", query.get("prefix", [""])[0]
        category = s3_category(key, self.archive_prefix) if bucket else "other"
        with self.lock:
            self.counts[f"{method} {category}"] += 1
        return self.app(environ, start_response)

    def _control(self, path, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_bench/s3-counts":
            with self.lock:
                body = json.dumps(dict(self.counts)).encode()
                if query.get("reset"):
                    self.counts.clear()
        elif path == "/_bench/load":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            data = environ["wsgi.input"].read(length)
            body = json.dumps({"stored": self._load(query["bucket"][0], data)}).encode()
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b"{}"]
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _load(self, bucket: str, data: bytes) -> int:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        stored = 0
        for key, content_type, value in unpack_objects(data):
            fake = backend.put_object(bucket, key, value, disable_notification=True)
            fake.set_metadata({"Content-Type": content_type})
            stored += 1
        return stored


def pack_objects(objects) -> bytes:
    """``(key, content_type, bytes)`` triples framed for ``/_bench/load``."""
    out = bytearray()
    for key, content_type, value in objects:
        k, c = key.encode(), (content_type or "").encode()
        out += struct.pack("<IHI", len(k), len(c), len(value)) + k + c + value
    return bytes(out)


def unpack_objects(data: bytes):
    """Inverse of :func:`pack_objects`."""
    position, header = 0, struct.Struct("<IHI")
    while position < len(data):
        key_length, type_length, value_length = header.unpack_from(data, position)
        position += header.size
        key = data[position:position + key_length].decode()
        position += key_length
        content_type = data[position:position + type_length].decode()
        position += type_length
        yield key, content_type, data[position:position + value_length]
        position += value_length


def serve_s3(port_file: Path, archive_prefix: str) -> None:
    """moto's server, counting, until killed; writes its port to ``port_file``."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    # werkzeug logs every request at INFO: formatting it would be most of moto's own work.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = CountingS3(DomainDispatcherApplication(create_backend_app), archive_prefix)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    write_port(port_file, server.server_port)
    server.serve_forever()


def main(argv: list[str]) -> None:
    """``site PORT_FILE SHAPE T0 A B`` (daily: A sitemaps of B articles; year: A days of B
    articles) or ``s3 PORT_FILE PREFIX``."""
    server, port_file = argv[0], Path(argv[1])
    if server == "site":
        shape, t0, a, b = argv[2], float(argv[3]), int(argv[4]), int(argv[5])
        model = (NewsModel(shape, t0, sitemaps=a, per_sitemap=b) if shape == "daily"
                 else NewsModel(shape, t0, days=a, per_day=b))
        serve_site(model, port_file)
    elif server == "s3":
        serve_s3(port_file, argv[2])
    else:
        raise SystemExit(f"unknown server {server!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
