"""One page's path to a record, in pure functions: what a crawl and ``reprocess`` both do
with an extracted page. No Scrapy, no I/O.

A fetched page (:class:`spiders.items.FetchedPage`) is extracted in a worker process
(:func:`spiders.extraction_pool.extract_page`: the article and the soft-block verdict); its
text loses the site's learnt boilerplate; then :func:`page_record` turns page, article and
text into the :class:`storage.Record` the archive stores (and places:
:meth:`storage.Archive.store` chooses its keys).
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from normalize import EXTRACTOR_NAME, EXTRACTOR_VERSION, Article
from normalize.boilerplate import SiteBoilerplate
from spiders.extraction_pool import PageExtraction
from spiders.items import FetchedPage
from storage import Extractor, Record, article_id, canonicalize_url, choose_canonical_url

EXTRACTOR = Extractor(name=EXTRACTOR_NAME, version=EXTRACTOR_VERSION)
"""The extractor every record made here names."""

BOILERPLATE_STATE = "boilerplate"
"""Name of a site's learnt boilerplate lines in the archive's site state."""

# The record fields an extraction fills, named alike in Article and Record (the rest come
# from the fetch, or are the archive's).
_ARTICLE_FIELDS = ("title", "authors", "published", "modified", "language", "description",
                   "section", "tags", "image_url")


def article_fields(article: Article) -> dict:
    """The record fields an extraction fills."""
    return {**{name: getattr(article, name) for name in _ARTICLE_FIELDS},
            "metadata_sources": dict(article.sources)}


def seen_urls(page: FetchedPage) -> set[str]:
    """Every URL that led to the page: as listed, as requested, as answered."""
    return {page.request_url, page.url, *page.discovered_urls}


def canonical_seen_urls(page: FetchedPage) -> set[str]:
    """:func:`seen_urls`, canonicalised: the URL index's keys for the page."""
    return {canonicalize_url(url) for url in seen_urls(page)}


@dataclass(frozen=True)
class Problem:
    """Why a page gives no record, as its crawl records it."""

    kind: str
    """The error kind (``no_article_text``, ``blocked_captcha``, ...)."""
    reason: str
    """One line for a person."""


def settle(extraction: PageExtraction, boilerplate: SiteBoilerplate, *,
           learn: bool = True, lock: AbstractContextManager | None = None
           ) -> tuple[Article, str] | Problem:
    """The article of an extracted page (its language already checked against its text, by
    :func:`spiders.extraction_pool.extract_page`) and its text without the site's boilerplate
    (learning from it with ``learn``); or the Problem that leaves the page without a record:
    a soft block (a CAPTCHA, a consent wall), or no article text. ``boilerplate`` is shared
    by a crawl's storage threads: ``lock`` is held while it learns, and only then."""
    if extraction.blocked:
        block = extraction.block
        return Problem(f"blocked_{block.kind.value}", block.reason)
    article = extraction.article
    if learn:
        with lock or nullcontext():
            text = boilerplate.observe_and_strip(article.text)
    else:
        text = boilerplate.strip(article.text)
    if not text:
        return Problem("no_article_text", "extraction found no article text")
    return article, text


def page_record(page: FetchedPage, article: Article, text: str, *, charset: str,
                paywalled: bool = False) -> Record:
    """The record of a fetched page whose extraction (reading the body as ``charset``) gave
    ``article`` and whose cleaned text (boilerplate stripped) is ``text``. Its keys are left
    for the archive to choose."""
    canonical = choose_canonical_url(page.url, article.canonical_url)
    return Record(
        id=article_id(canonical),
        site=page.site,
        url=page.url,
        canonical_url=canonical,
        aliases=tuple(sorted(seen_urls(page) - {canonical})),
        **article_fields(article),
        fetched_at=page.fetched_at,
        http_status=page.status,
        content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        extractor=EXTRACTOR,
        raw_key="", text_key="", meta_key="",  # the archive places it (Archive.store)
        charset=charset,  # what the body was read with, not what it declared
        paywalled=paywalled,
        warc_key=page.warc[0] if page.warc else None,
        warc_offset=page.warc[1] if page.warc else None,
    )
