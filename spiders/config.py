"""The sites file (``sites.toml``): the archive and each site, read and checked in one place.

The process's own settings (``NEWSARCHIVE_*`` variables) are :mod:`flows.settings`. S3
endpoint and credentials are not ours to read: boto3 takes them from the standard
``AWS_*`` variables.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storage import InvalidArchiveURL, check_archive_url
from storage.keys import validate_site_name


class ConfigError(Exception):
    """The sites file is missing, unreadable or invalid; the message is one line for the user."""


class ArchiveConfig(BaseModel):
    """The ``[archive]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("./archive", description="A local directory, or s3://bucket/prefix.")

    @field_validator("url")
    @classmethod
    def _url_checks(cls, value: str) -> str:
        return _archive_url(value)


def _archive_url(value: str) -> str:
    """``value`` if it can name an archive (storage's own check: no credentials in it);
    ValueError with storage's one-line reason otherwise."""
    try:
        check_archive_url(value)
    except InvalidArchiveURL as exc:
        raise ValueError(str(exc)) from None
    return value


class SiteConfig(BaseModel):
    """One ``[[sites]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Site name, 1-64 characters of a-z, 0-9, _ and -; used in "
                      "archive keys.")
    allowed_domains: tuple[str, ...] = Field(
        min_length=1, description="Domains the crawler may fetch from (subdomains included)."
    )
    allow_private_hosts: tuple[str, ...] = Field(
        (), description="Hosts (exact names or IP addresses) this site may reach at loopback, "
        "private or link-local addresses; any other host at such an address is refused."
    )
    sitemaps: tuple[str, ...] = Field((), description="Sitemap, sitemap index or robots.txt URLs.")
    feeds: tuple[str, ...] = Field((), description="RSS or Atom feed URLs.")
    start_urls: tuple[str, ...] = Field(
        (), description="Section fronts whose links are followed (see `follow_depth`)."
    )
    article_pattern: str = Field("", description="Regex an article URL must match (search).")
    follow_depth: int = Field(
        1, ge=1, le=5, description="Link depth from `start_urls`: 1 fetches their article "
        "links; N also follows other links on the site as fronts, N-1 levels deep."
    )
    max_link_pages: int = Field(
        200, ge=0, le=100_000, description="Most pages fetched as fronts when following links."
    )
    download_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for a response.")
    extract_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one page's extraction may take; a page that "
        "takes longer is recorded as an `extract_timeout` error and its worker is replaced."
    )
    max_page_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=1024 ** 3,
        description="Largest response (after decompression) that is downloaded, in bytes."
    )
    max_sitemap_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, le=1024 ** 3,
        description="Largest sitemap, as downloaded and after decompression, in bytes."
    )
    max_sitemap_depth: int = Field(
        5, ge=0, le=20, description="Levels of sitemap indexes (robots.txt counts as one) "
        "followed below a configured URL."
    )
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed for one request.")
    schedule: str = Field("*/30 * * * *", description="Cron schedule for `newsarchive serve`.")
    download_delay: float = Field(
        1.0, ge=0, le=600, description="Seconds between requests to the site (at most 600).")
    concurrent_requests: int = Field(4, ge=1, le=256, description="Parallel requests to the site.")
    autothrottle: bool = Field(True, description="Adapt the delay to the site's response times.")
    full_read_every_days: int = Field(
        7, ge=0, le=366, description="Days after which a crawl reads every sitemap and feed "
        "in full, not only those that changed since the last crawl (some publishers never "
        "update `<lastmod>`); 0: every crawl."
    )
    screenshot: bool = Field(
        False, description="Archive a full-page PNG screenshot of each new article or "
        "version, rendered by headless Chromium from the archived page (`screenshot.png` "
        "beside `raw.html.gz`)."
    )
    screenshot_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one page's rendering may take (loading it, "
        "with its subresources from the site, and capturing it); a page that takes longer "
        "gets no screenshot and a `screenshot_timeout` warning."
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_key_part(cls, value: str) -> str:
        # The archive's own check: a name that passes can be nothing but one key segment.
        return validate_site_name(value)

    @field_validator("article_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        compile_user_pattern(value)
        return value

    @field_validator("schedule")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        check_cron(value)
        return value

    @field_validator("allowed_domains", "allow_private_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_host(v) for v in value)

    @field_validator("sitemaps", "feeds", "start_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            _check_url(url)
        return value

    @model_validator(mode="after")
    def _has_a_source(self) -> SiteConfig:
        if not (self.sitemaps or self.feeds or self.start_urls):
            raise ValueError("give at least one of sitemaps, feeds or start_urls")
        return self


def compile_user_pattern(pattern: str):
    """A user's regular expression (``article_pattern``), compiled with RE2: it runs on
    every URL a crawl meets, on the crawl's event loop, and RE2 matches in time linear in
    the URL whatever the pattern (Python's ``re`` took 7 s per URL on a crafted one). RE2
    has no backreferences or look-arounds; ValueError with a one-line reason for those and
    for anything else it cannot compile."""
    import re2  # google-re2

    options = re2.Options()
    options.log_errors = False  # RE2 would also print the error to stderr
    options.max_mem = 8 << 20  # a pattern that needs more is not a URL pattern
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a regular expression RE2 can run (RE2 has no backreferences "
                         f"or look-arounds): {reason}") from None


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def _host(value: str) -> str:
    """A host name or IP address as the crawler compares hosts (lower case, IDNA-encoded,
    no trailing dot); ValueError for anything else, such as a URL or a host with a port."""
    host = value.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host.strip("[]")
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = ""
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r} is not a host name: give a bare name such as 'example.com' "
                         "(no scheme, port or path)")
    return host


def _check_url(url: str) -> None:
    """ValueError unless ``url`` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")


_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                      "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>[0-9]+))?")


def check_cron(expression: str) -> None:
    """ValueError, naming the field, unless ``expression`` is a standard five-field cron
    schedule: minute, hour, day of month, month (1-12 or jan-dec), day of week (0-7 or
    sun-sat); each a list of ``*``, values or ranges, with an optional ``/step``."""
    # The message layer, not the authority: :func:`check_schedule_fires` asks the cron
    # library of Prefect's scheduler, which decides what ``serve`` can run. This check is
    # kept beside it because that library says neither which field is wrong nor why (all
    # it says is "[61 * * * *] is not acceptable, out of range"), and accepts more than
    # the standard schedule a user should write here ("5-1" wraps round, "L" is the last
    # day); and because a crawl subprocess validates its site with it, without importing
    # Prefect (most of a second). What this accepts, Prefect accepts: tests/test_config.py.
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has five fields, e.g. '*/30 * * * *'")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.lower().split(","):
            match = _CRON_ITEM.fullmatch(item)
            if not match:
                raise ValueError(f"cron {name} field {text!r}: cannot read {item!r}")
            if match["step"] is not None and int(match["step"]) < 1:
                raise ValueError(f"cron {name} field {text!r}: a step must be at least 1")
            if match["range"] == "*":
                continue
            bounds = []
            for part in match["range"].split("-"):
                if part.isdigit():
                    number = int(part)
                elif part in names:
                    number = names.index(part) + (1 if name == "month" else 0)
                else:
                    raise ValueError(f"cron {name} field {text!r}: {part!r} is not a {name}")
                if not low <= number <= high:
                    raise ValueError(
                        f"cron {name} field {text!r}: {number} is outside {low}-{high}")
                bounds.append(number)
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                raise ValueError(f"cron {name} field {text!r}: range {item!r} runs backwards")


class Config(BaseModel):
    """A whole sites file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archive: ArchiveConfig = ArchiveConfig()
    sites: tuple[SiteConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        names = [s.name for s in self.sites]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate site names: {', '.join(duplicates)}")
        return self

    def site(self, name: str) -> SiteConfig:
        """The site called ``name``; ConfigError if there is none."""
        for site in self.sites:
            if site.name == name:
                return site
        known = ", ".join(s.name for s in self.sites) or "none"
        raise ConfigError(f"no site named {name!r} in the config (configured: {known})")


def load_config(path: Path, *, archive_only: bool = False) -> Config:
    """Read and validate a sites file. With ``archive_only``, a missing file means defaults and
    only ``[archive]`` is checked, for commands that merely read the archive."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if archive_only:
            return Config()
        raise ConfigError(f"{path}: no such config file (use --config or NEWSARCHIVE_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if archive_only:
        raw = {"archive": raw.get("archive", {})}
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        # Our validators' ValueErrors read as sentences already, without pydantic's prefix.
        reason = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {where}: {reason}{more}") from None
    # Here, not in SiteConfig: a crawl subprocess validates its site again, and needs no
    # Prefect (whose import costs it most of a second).
    for number, site in enumerate(config.sites):
        try:
            check_schedule_fires(site.schedule)
        except ValueError as exc:
            raise ConfigError(f"{path}: sites.{number}.schedule: {exc}") from None
    return config


def check_schedule_fires(expression: str) -> None:
    """ValueError unless Prefect's scheduler accepts ``expression`` and will fire it: a
    schedule such as ``0 0 31 2 *`` (31 February) passes every field's check and never runs.
    Asked of the cron library Prefect's scheduler itself uses (vendored in Prefect), so
    what loads here is exactly what ``serve`` can schedule."""
    from datetime import datetime, timezone

    from prefect._vendor.croniter import croniter  # what Prefect's scheduler computes with
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expression)
    except ValidationError as exc:
        raise ValueError(f"Prefect's scheduler cannot read {expression!r}: "
                         f"{exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    try:
        croniter(expression, datetime.now(timezone.utc)).get_next(datetime)
    except Exception as exc:  # croniter's CroniterBadDateError: no date it names exists
        raise ValueError(f"{expression!r} never fires (no date matches it: "
                         f"{exc.__class__.__name__})") from None
