"""Pure functions from HTML to article text and metadata. No Scrapy, no I/O but the language
detector's model, read once per process (:mod:`normalize.language_model`).

The names below are loaded on first use (PEP 562): a crawl's own process records what its
extraction workers found (:class:`Article`, :data:`EXTRACTOR_VERSION`) and reads dates and
JSON-LD, but never extracts, and trafilatura with its language model and their imports
(0.2-0.4 s of each crawl's start-up) load in the workers only."""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

EXTRACTOR_NAME = "newsarchive"
"""The extractor's name in every record (``extractor.name``)."""
# Bump when extraction logic changes, so records say which code produced them.
EXTRACTOR_REVISION = "12"
EXTRACTOR_VERSION = f"{EXTRACTOR_REVISION}+trafilatura.{importlib.metadata.version('trafilatura')}"
"""The extractor's version in every record: our revision and trafilatura's, read from its
installed metadata rather than by importing it (the same as ``trafilatura.__version__``: a
test compares them)."""

# Where each name is defined.
_DEFINED_IN = {
    "Article": "normalize.metadata",
    "PageMetadata": "normalize.metadata",
    "is_article_page": "normalize.metadata",
    "decode_body": "normalize.article",
    "decode_html": "normalize.article",
    "extract_article": "normalize.article",
    "load_language_detector": "normalize.article",
    "settle_article_language": "normalize.article",
    "PageKind": "normalize.softblock",
    "SoftBlock": "normalize.softblock",
    "classify_page": "normalize.softblock",
}

__all__ = ["EXTRACTOR_NAME", "EXTRACTOR_REVISION", "EXTRACTOR_VERSION", *_DEFINED_IN]


def __getattr__(name: str) -> Any:
    module = _DEFINED_IN.get(name)
    if module is None:
        raise AttributeError(f"module 'normalize' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later look-ups find it without this function
    return value
