"""The settings object and the sites file: one place where configuration is read and checked.

``Settings`` comes from the environment (``NEWSARCHIVE_`` prefix); the sites file
(``sites.toml``) declares the archive and each site. S3 endpoint and credentials are not
ours to read: boto3 takes them from the standard ``AWS_*`` variables.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_USER_AGENT = "newsarchive/0.1 (+https://github.com/newsarchive/newsarchive; news archiving bot)"


class ConfigError(Exception):
    """The sites file is missing, unreadable or invalid; the message is one line for the user."""


class Settings(BaseSettings):
    """Process-wide settings, from ``NEWSARCHIVE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="NEWSARCHIVE_", extra="ignore")

    config: Path = Field(Path("sites.toml"), description="Path of the sites file.")
    archive_url: str | None = Field(
        None, description="Archive URL overriding the sites file's [archive] url."
    )
    data_dir: Path = Field(
        Path(".newsarchive"),
        description="Local working directory: crawl stats files and logs.",
    )
    user_agent: str = Field(
        DEFAULT_USER_AGENT, description="User-Agent of every request; name the bot and a contact URL."
    )
    log_level: str = Field("INFO", description="Log level of the crawl subprocesses.")
    max_parallel_sites: int = Field(2, ge=1, description="Sites crawled at the same time.")


class ArchiveConfig(BaseModel):
    """The ``[archive]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("./archive", description="A local directory, or s3://bucket/prefix.")


class SiteConfig(BaseModel):
    """One ``[[sites]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$", description="Site name, used in archive keys.")
    allowed_domains: tuple[str, ...] = Field(
        min_length=1, description="Domains the crawler may fetch from (subdomains included)."
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
    max_page_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=1024 ** 3,
        description="Largest response (after decompression) that is downloaded, in bytes."
    )
    schedule: str = Field("*/30 * * * *", description="Cron schedule for `newsarchive serve`.")
    download_delay: float = Field(1.0, ge=0, description="Seconds between requests to the site.")
    concurrent_requests: int = Field(4, ge=1, le=256, description="Parallel requests to the site.")
    autothrottle: bool = Field(True, description="Adapt the delay to the site's response times.")

    @field_validator("article_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("schedule")
    @classmethod
    def _cron_shape(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("a cron schedule has five fields, e.g. '*/30 * * * *'")
        return value

    @model_validator(mode="after")
    def _has_a_source(self) -> SiteConfig:
        if not (self.sitemaps or self.feeds or self.start_urls):
            raise ValueError("give at least one of sitemaps, feeds or start_urls")
        return self


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
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None
