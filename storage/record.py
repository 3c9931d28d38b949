"""The archive record: what ``meta.json``, a catalog row and a line of ``ls --json`` hold.

A contract (see the README's "Record fields"): add fields freely, never rename or drop one
without raising ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1

_DATETIME_FIELDS = ("published", "modified", "fetched_at", "checked_at")


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware datetime in UTC. The archive's convention: a naive time is
    UTC (every time it writes is aware; a naive one can only come from outside, e.g. a
    hand-written ``meta.json``), never the machine's local time, so that the same record
    lands in the same date folder and catalog partition on every machine."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Extractor:
    """Which extractor produced a record's text and metadata."""

    name: str
    """Extractor name, e.g. ``newsarchive``."""
    version: str
    """Its version, including the versions of the libraries it builds on."""


@dataclass(frozen=True)
class Version:
    """One capture of an article whose text changed since the capture before it."""

    fetched_at: datetime
    """When this version's response was received (UTC)."""
    content_sha256: str
    """SHA-256 (hex) of this version's cleaned text."""
    raw_key: str
    """Key of this version's ``raw.html.gz``."""
    text_key: str
    """Key of this version's ``text.txt``."""
    url: str
    """The URL this version was fetched from."""
    extractor: str = ""
    """``name/version`` of the extractor that made this version's text (empty: unknown)."""
    warc_key: str | None = None
    """Key of the WARC file holding this version's response, or null."""
    warc_offset: int | None = None
    """Byte offset of the response record in that WARC file, or null."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {**asdict(self), "fetched_at": self.fetched_at.isoformat()}

    @classmethod
    def of(cls, record: Record) -> Version:
        """The capture a record's own fields describe."""
        return cls(record.fetched_at, record.content_sha256, record.raw_key, record.text_key,
                   record.url, f"{record.extractor.name}/{record.extractor.version}",
                   record.warc_key, record.warc_offset)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        """Inverse of :meth:`to_dict`; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        return cls(**{**values, "fetched_at": datetime.fromisoformat(data["fetched_at"])})


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
    """Id of the archived article of another URL whose text is near-identical (Jaccard of
    word shingles >= 0.9) and that was published first (else first fetched): the
    original a near copy points to, or null. A copy archived before its original points to
    it once the original is archived."""
    duplicate_of: str | None = None
    """Id of the article of another site with the same text (an exact copy, archived
    under each site) that was published first (else first fetched), or null: the copy
    points to the original, corrected when the original is archived after the copy."""
    text_fingerprint: str = ""
    """SHA-256 (hex) of the text after normalisation (Unicode NFKC, case, whitespace):
    articles with equal fingerprints have the same text."""
    versions: tuple[Version, ...] = ()
    """Every capture with different text, oldest first; the last one is the one the
    record's other fields describe. Earlier versions' objects stay in the archive."""
    checked_at: datetime | None = None
    """The last time the page was fetched again and its text found unchanged, or null."""
    charset: str | None = None
    """Character encoding the raw body was decoded with, or null when unknown."""
    paywalled: bool = False
    """True when the page held only the teaser of a paywalled article (the text is that
    teaser, not the whole story)."""
    warc_key: str | None = None
    """Key of the WARC file holding the response (same convention as ``raw_key``), or null."""
    warc_offset: int | None = None
    """Byte offset of the response record in that WARC file, or null."""
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
    source: str = "crawl"
    """Where the archived response came from: ``crawl`` (fetched from the site) or
    ``ccnews`` (a capture in Common Crawl's news crawl, the site not asked)."""
    source_file: str | None = None
    """For a ``ccnews`` record, the CC-NEWS WARC file it was read from (its path under the
    source, e.g. ``crawl-data/CC-NEWS/2024/05/CC-NEWS-20240501....warc.gz``), else null."""
    source_offset: int | None = None
    """For a ``ccnews`` record, the byte offset of the response record in that file, else
    null."""
    screenshot_key: str | None = None
    """Key of the full-page screenshot of the page as it looked (PNG, beside
    ``raw.html.gz``), or null: taken only for sites with ``screenshot = true``."""
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
                value = [v.to_dict() if isinstance(v, Version) else v for v in value]
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
        values["versions"] = tuple(Version.from_dict(v) for v in values.get("versions") or ())
        values["extractor"] = Extractor(**values["extractor"])
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**values)

    @classmethod
    def from_json(cls, raw: bytes) -> Record:
        """Parse ``meta.json`` bytes."""
        return cls.from_dict(json.loads(raw))

    @property
    def all_versions(self) -> tuple[Version, ...]:
        """:attr:`versions`, or for a record written before versions were kept, its one capture."""
        return self.versions or (Version.of(self),)

    @property
    def urls(self) -> frozenset[str]:
        """Every URL the article is known by: its canonical URL and its aliases."""
        return frozenset((self.canonical_url, *self.aliases))

    @property
    def last_seen(self) -> datetime:
        """When the page was last fetched: its latest version or its latest check."""
        return max(filter(None, (self.fetched_at, self.checked_at)))


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record) if f.name != "extra")
"""Every field a record carries, in declaration order."""
