"""The archive's key layout (a contract: see the README's "Archive layout").

Keys are built only here, only from validated site names, dates and hex digests, so no
input from a crawled page can steer a write outside its place.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from dataclasses import dataclass
from datetime import date, timedelta

from storage.errors import InvalidKey

SITE_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
_ARTICLE_ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")
_RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")

ARTICLES_ROOT = "articles"
URL_INDEX_ROOT = "_index/urls"
CONTENT_INDEX_ROOT = "_index/content"
NEAR_INDEX_ROOT = "_index/near"
SITE_STATE_ROOT = "_index/sites"
WARC_ROOT = "warc"
SCREENSHOT_NAME = "screenshot.png"
_STATE_NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")


def validate_site_name(site: str) -> str:
    """Return ``site`` if it is a valid site name (``[a-z0-9_-]+``), else raise InvalidKey."""
    if not isinstance(site, str) or not SITE_NAME_PATTERN.fullmatch(site):
        raise InvalidKey(f"invalid site name {site!r}: use 1-64 characters of a-z, 0-9, _ and -")
    return site


def validate_day(day: date) -> date:
    """Return ``day`` if it is a date (or datetime), else raise InvalidKey: a key's date
    folders are formatted from nothing else, never from a string."""
    if not isinstance(day, date):
        raise InvalidKey(f"invalid date {day!r} for an archive key")
    return day


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is safe to use inside a key, else raise InvalidKey."""
    if not isinstance(run_id, str) or not _RUN_ID_PATTERN.fullmatch(run_id):
        raise InvalidKey(f"invalid run id {run_id!r}")
    return run_id


def url_digest(url: str) -> str:
    """SHA-256 hex digest of a URL, the basis of ids and index keys."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def article_id(canonical_url: str) -> str:
    """The article id: derived from the canonical URL, so an article always lands in one place.

    96 bits of SHA-256 keep ids short enough to type while collisions stay out of reach for
    any archive size we can imagine (about 1e-10 at a billion articles).
    """
    return url_digest(canonical_url)[:24]


def validate_article_id(value: str) -> str:
    """Return ``value`` if it has the shape of an article id, else raise InvalidKey."""
    if not isinstance(value, str) or not _ARTICLE_ID_PATTERN.fullmatch(value):
        raise InvalidKey(f"invalid article id {value!r}")
    return value


@dataclass(frozen=True)
class ArticleKeys:
    """The archive-relative keys of one article's objects."""

    prefix: str
    """``articles/<site>/<YYYY>/<MM>/<DD>/<id>/``"""
    raw: str
    """The raw response body, gzip-compressed."""
    text: str
    """The cleaned article text, UTF-8."""
    meta: str
    """The record (JSON); written last, so its presence means the article is complete."""

    @property
    def screenshot(self) -> str:
        """The full-page PNG screenshot of the page as it looked, beside ``raw``: written
        only for sites with ``screenshot = true``, and only when the rendering succeeded."""
        return self.prefix + SCREENSHOT_NAME


def article_keys(site: str, day: date, article_id_: str) -> ArticleKeys:
    """Keys of an article of ``site`` dated ``day`` (publication date, else fetch date, UTC)."""
    validate_site_name(site)
    validate_day(day)
    validate_article_id(article_id_)
    prefix = f"{ARTICLES_ROOT}/{site}/{day:%Y/%m/%d}/{article_id_}/"
    return ArticleKeys(
        prefix=prefix,
        raw=prefix + "raw.html.gz",
        text=prefix + "text.txt",
        meta=prefix + "meta.json",
    )


def keys_of_meta(meta_key: str) -> ArticleKeys:
    """The keys of the article whose record is at ``meta_key`` (archive-relative)."""
    if not is_meta_key(meta_key):
        raise InvalidKey(f"not the key of an article's record: {meta_key!r}")
    prefix = meta_key[: -len("meta.json")]
    return ArticleKeys(prefix=prefix, raw=prefix + "raw.html.gz", text=prefix + "text.txt",
                       meta=meta_key)


def url_index_key(canonical_url: str) -> str:
    """Key of the dedup marker claimed by the first writer of a canonical URL.

    The two-character fan-out keeps any one listing small on a local file system.
    """
    digest = url_digest(canonical_url)
    return f"{URL_INDEX_ROOT}/{digest[:2]}/{digest}.json"


def content_index_key(fingerprint: str) -> str:
    """Key of the marker naming the article that first had this text fingerprint
    (see :func:`storage.dedup.text_fingerprint`)."""
    _check_hex(fingerprint, 64, "text fingerprint")
    return f"{CONTENT_INDEX_ROOT}/{fingerprint[:2]}/{fingerprint}.json"


def version_keys(keys: ArticleKeys, content_sha256: str) -> ArticleKeys:
    """Keys of a later version of an article: ``<prefix>versions/<sha256[:16]>/``.

    Named by content, so two writers that see the same update write the same objects.
    ``meta`` stays the article's one record, which lists every version.
    """
    _check_hex(content_sha256, 64, "content hash")
    prefix = f"{keys.prefix}versions/{content_sha256[:16]}/"
    return ArticleKeys(prefix=prefix, raw=prefix + "raw.html.gz", text=prefix + "text.txt",
                       meta=keys.meta)


def _check_hex(value: str, length: int, what: str) -> None:
    if not isinstance(value, str) or len(value) != length or value.strip("0123456789abcdef"):
        raise InvalidKey(f"invalid {what} {value!r}")


def is_meta_key(key: str) -> bool:
    """True for ``articles/<site>/<YYYY>/<MM>/<DD>/<id>/meta.json``."""
    parts = key.split("/")
    return len(parts) == 7 and parts[0] == ARTICLES_ROOT and parts[-1] == "meta.json"


def day_of_meta_key(key: str) -> date:
    """The date folder of a meta key (see :func:`is_meta_key`)."""
    parts = key.split("/")
    return date(int(parts[2]), int(parts[3]), int(parts[4]))


def site_state_key(site: str, name: str) -> str:
    """Key of a site's learned state (e.g. its boilerplate lines): ``_index/sites/<site>/<name>.json``."""
    validate_site_name(site)
    if not _STATE_NAME_PATTERN.fullmatch(name):
        raise InvalidKey(f"invalid state name {name!r}")
    return f"{SITE_STATE_ROOT}/{site}/{name}.json"


def warc_key(site: str, day: date, run_id: str, sequence: int) -> str:
    """Key of WARC file number ``sequence`` written by run ``run_id`` for ``site``:
    ``warc/<site>/<YYYY>/<MM>/<DD>/<run_id>-<sequence:05d>.warc.gz``, ``day`` being the
    day the run started (UTC).

    The sequence is zero-padded so that a run's files list in the order they were written
    (up to 99999 files; later ones are still valid keys, only longer)."""
    validate_site_name(site)
    validate_day(day)
    validate_run_id(run_id)
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise InvalidKey(f"invalid WARC sequence number {sequence!r}")
    return f"{WARC_ROOT}/{site}/{day:%Y/%m/%d}/{run_id}-{sequence:05d}.warc.gz"


RUNS_ROOT = "runs"


def run_manifest_key(site: str, day: date, run_id: str) -> str:
    """Key of a run's manifest: ``runs/<site>/<YYYY>/<MM>/<DD>/<run_id>.json`` (the day the
    run started, UTC)."""
    return (f"{RUNS_ROOT}/{validate_site_name(site)}/{validate_day(day):%Y/%m/%d}/"
            f"{validate_run_id(run_id)}.json")


def day_of_run_manifest_key(key: str) -> date | None:
    """The date folder of a run manifest's key (see :func:`run_manifest_key`), or None for
    a key that is not one (a stray object under ``runs/``)."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != RUNS_ROOT or not parts[-1].endswith(".json"):
        return None
    try:
        return date(int(parts[2]), int(parts[3]), int(parts[4]))
    except ValueError:
        return None


def run_manifest_prefixes(site: str | None, since: date | None, until: date | None) -> list[str]:
    """The key prefixes to list for the manifests of ``site``'s runs started within
    [since, until]."""
    return _dated_prefixes(RUNS_ROOT, site, since, until)


def date_prefixes(since: date, until: date) -> list[str]:
    """The fewest ``YYYY/``, ``YYYY/MM/`` and ``YYYY/MM/DD/`` folders that hold exactly the
    days from ``since`` to ``until`` (inclusive)."""
    out: list[str] = []
    day = since
    while day <= until:
        if day.month == 1 and day.day == 1 and date(day.year, 12, 31) <= until:
            out.append(f"{day:%Y}/")
            day = date(day.year + 1, 1, 1)
            continue
        month_end = date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
        if day.day == 1 and month_end <= until:
            out.append(f"{day:%Y/%m}/")
            day = month_end + timedelta(days=1)
            continue
        out.append(f"{day:%Y/%m/%d}/")
        day += timedelta(days=1)
    return out


def meta_key_prefixes(site: str | None, since: date | None, until: date | None) -> list[str]:
    """The key prefixes to list for the records of ``site`` dated within [since, until]."""
    return _dated_prefixes(ARTICLES_ROOT, site, since, until)


def _dated_prefixes(top: str, site: str | None, since: date | None,
                    until: date | None) -> list[str]:
    """The prefixes to list under ``<top>/<site>/<YYYY>/<MM>/<DD>/`` for the days from
    ``since`` to ``until``: the fewest date folders for one site and a closed range, else
    the site's folder, or ``top``'s."""
    if site is None:
        return [f"{top}/"]
    root = f"{top}/{validate_site_name(site)}/"
    if since is None or until is None:
        # An open range has no last folder we could name without listing the site.
        return [root]
    if since > until:
        return []
    return [root + prefix for prefix in date_prefixes(since, until)]
