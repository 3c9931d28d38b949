"""Pure functions from HTML to article text and metadata. No Scrapy, no I/O."""

from normalize.article import (
    EXTRACTOR_NAME,
    EXTRACTOR_VERSION,
    Article,
    decode_html,
    extract_article,
    is_article_page,
    settle_article_language,
)
from normalize.softblock import PageKind, SoftBlock, classify_page
from normalize.urls import canonicalize_url, choose_canonical_url

__all__ = [
    "EXTRACTOR_NAME",
    "EXTRACTOR_VERSION",
    "Article",
    "PageKind",
    "SoftBlock",
    "canonicalize_url",
    "choose_canonical_url",
    "classify_page",
    "decode_html",
    "extract_article",
    "is_article_page",
    "settle_article_language",
]
