"""Pure functions from HTML to article text and metadata. No Scrapy, no I/O but the language
detector's model, read once per process (:mod:`normalize.language_model`)."""

from normalize.article import (
    EXTRACTOR_NAME,
    EXTRACTOR_VERSION,
    Article,
    decode_body,
    decode_html,
    extract_article,
    is_article_page,
    load_language_detector,
    settle_article_language,
)
from normalize.metadata import PageMetadata
from normalize.softblock import PageKind, SoftBlock, classify_page

__all__ = [
    "EXTRACTOR_NAME",
    "EXTRACTOR_VERSION",
    "Article",
    "PageKind",
    "PageMetadata",
    "SoftBlock",
    "classify_page",
    "decode_body",
    "decode_html",
    "extract_article",
    "is_article_page",
    "load_language_detector",
    "settle_article_language",
]
