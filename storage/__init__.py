"""The archive: key layout, record schema, S3 and local backends, dedup markers, readers.

Imports nothing else of ours, so ``browse`` and analysis scripts can use it alone.
"""

from storage.archive import Archive, StoreOutcome, StoreResult
from storage.backends import Backend, LocalBackend, S3Backend, check_archive_url, open_backend
from storage.errors import (
    ArchiveAccessDenied,
    ArchiveError,
    ArchiveUnavailable,
    InvalidArchiveURL,
    InvalidKey,
    ObjectNotFound,
)
from storage.keys import ArticleKeys, article_id, article_keys, validate_site_name
from storage.record import RECORD_FIELDS, SCHEMA_VERSION, Extractor, Record
from storage.urls import canonicalize_url, choose_canonical_url

__all__ = [
    "RECORD_FIELDS",
    "SCHEMA_VERSION",
    "Archive",
    "ArchiveAccessDenied",
    "ArchiveError",
    "ArchiveUnavailable",
    "ArticleKeys",
    "Backend",
    "Extractor",
    "InvalidArchiveURL",
    "InvalidKey",
    "LocalBackend",
    "ObjectNotFound",
    "Record",
    "S3Backend",
    "StoreOutcome",
    "StoreResult",
    "article_id",
    "check_archive_url",
    "choose_canonical_url",
    "article_keys",
    "canonicalize_url",
    "open_backend",
    "validate_site_name",
]
