"""The archive record: what ``meta.json``, a catalog row and a line of ``ls --json`` hold.

A contract (see the README's "Record fields"): add fields freely, never rename or drop one
without raising ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

SCHEMA_VERSION = 1

_DATETIME_FIELDS = ("published", "modified", "fetched_at")


@dataclass(frozen=True)
class Extractor:
    """Which extractor produced a record's text and metadata."""

    name: str
    """Extractor name, e.g. ``newsarchive``."""
    version: str
    """Its version, including the versions of the libraries it builds on."""


@dataclass(frozen=True)
class Record:
    """One archived article."""

    id: str
    """24 hex characters derived from ``canonical_url``."""
    site: str
    """The configured site name."""
    url: str
    """The URL as fetched (after redirects)."""
    canonical_url: str
    """The normalised URL the id is derived from."""
    title: str | None
    """Headline, or null when none was found."""
    authors: tuple[str, ...]
    """Author names, possibly empty."""
    published: datetime | None
    """Publication time with the publisher's offset, or null."""
    modified: datetime | None
    """Last modification time with offset, or null."""
    language: str | None
    """ISO 639-1 code, or null."""
    fetched_at: datetime
    """When the response was received (UTC)."""
    http_status: int
    """HTTP status of the archived response."""
    content_sha256: str
    """SHA-256 (hex) of the cleaned text as stored in ``text.txt``."""
    extractor: Extractor
    """Name and version of the extractor."""
    raw_key: str
    """Key of ``raw.html.gz`` from the bucket's root (local archive: path from its directory)."""
    text_key: str
    """Key of ``text.txt``, same convention."""
    meta_key: str
    """Key of ``meta.json``, same convention."""
    aliases: tuple[str, ...] = ()
    """Other URLs at which the same content was seen."""
    near_duplicate_of: str | None = None
    """Id of an archived article with near-identical text, or null."""
    description: str | None = None
    """The page's summary, or null."""
    section: str | None = None
    """Section of the site, or null."""
    tags: tuple[str, ...] = ()
    """Keywords and tags the page declares."""
    image_url: str | None = None
    """The lead image, or null."""
    metadata_sources: dict[str, str] = field(default_factory=dict)
    """Where each metadata field came from (``title``: ``json-ld``, ...)."""
    schema_version: int = SCHEMA_VERSION
    """Version of this record layout."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Fields written by a newer schema that this version does not know; kept on round-trip."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: datetimes as ISO 8601 strings, tuples as lists."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Extractor):
                value = asdict(value)
            out[f.name] = value
        return out

    def to_json(self) -> bytes:
        """UTF-8 JSON, keys sorted so that the same record always gives the same bytes."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, indent=1).encode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`; unknown keys are kept in ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        for name in _DATETIME_FIELDS:
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name])
        values["authors"] = tuple(values.get("authors") or ())
        values["aliases"] = tuple(values.get("aliases") or ())
        values["tags"] = tuple(values.get("tags") or ())
        values["extractor"] = Extractor(**values["extractor"])
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**values)

    @classmethod
    def from_json(cls, raw: bytes) -> Record:
        """Parse ``meta.json`` bytes."""
        return cls.from_dict(json.loads(raw))


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record) if f.name != "extra")
"""Every field a record carries, in declaration order."""
