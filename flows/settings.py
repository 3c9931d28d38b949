"""The process's settings, from ``NEWSARCHIVE_*`` environment variables: built once where a
process starts (the ``newsarchive`` command, or a flow run a Prefect worker or ``serve``
starts) and passed down from there.

The sites file (``sites.toml``) is the other half of the configuration: see
:mod:`spiders.config`. S3 endpoint and credentials are not ours to read: boto3 takes them
from the standard ``AWS_*`` variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage import InvalidArchiveURL, check_archive_url

DEFAULT_USER_AGENT = "newsarchive/0.1 (+https://github.com/newsarchive/newsarchive; news archiving bot)"


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
    ccnews_url: str = Field(
        "https://data.commoncrawl.org/",
        description="Where `backfill --source ccnews` reads Common Crawl News: its public "
        "HTTPS endpoint, an s3:// URL (the usual AWS_* settings), or a local directory with "
        "the same layout (crawl-data/CC-NEWS/<YYYY>/<MM>/warc.paths.gz and the files).",
    )
    prefect_port: int = Field(
        4200, ge=1, le=65535,
        description="Port of the Prefect server `serve` starts on 127.0.0.1 when PREFECT_API_URL is unset.",
    )

    @field_validator("archive_url")
    @classmethod
    def _archive_url_checks(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_archive_url(value)  # the archive's own rule: no credentials in it
            except InvalidArchiveURL as exc:
                raise ValueError(str(exc)) from None
        return value
