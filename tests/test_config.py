"""The sites file and the settings object: what loads, and the one-line reasons for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiders.config import Config, ConfigError, Settings, SiteConfig, load_config
from tests.conftest import write_sites_file

EXAMPLE = Path(__file__).resolve().parents[1] / "sites.toml"


def _site(**overrides) -> dict:
    return {
        "name": "example",
        "allowed_domains": ["example.com"],
        "feeds": ["https://example.com/rss.xml"],
        **overrides,
    }


def _write(tmp_path: Path, sites: list[dict], archive_url: str = "./archive") -> Path:
    return write_sites_file(tmp_path / "sites.toml", archive_url, sites)


def _error(path: Path, **kwargs) -> str:
    """The one-line message of loading ``path``, after the path it starts with."""
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    reason = message[len(f"{path}: "):]
    assert reason.strip(), message
    return reason


# -- the example file ------------------------------------------------------------------------


def test_example_sites_file_loads():
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    assert len(config.sites) >= 2
    globe = config.site("globeandmail")
    assert "theglobeandmail.com" in globe.allowed_domains
    for site in config.sites:
        assert site.sitemaps or site.feeds or site.start_urls, site.name
    assert len({s.name for s in config.sites}) == len(config.sites)
    assert config.archive.url == "./archive"


def test_a_valid_file_round_trips_its_values(tmp_path):
    path = _write(tmp_path, [
        _site(name="one", sitemaps=["https://example.com/sitemap.xml"], feeds=[],
              article_pattern=r"/\d{4}/", schedule="0 * * * *", download_delay=0,
              concurrent_requests=32, autothrottle=False),
        _site(name="two_2-b", allowed_domains=["a.org", "b.org"], start_urls=["https://a.org/"]),
    ], archive_url="s3://bucket/prefix")
    config = load_config(path)
    assert config.archive.url == "s3://bucket/prefix"
    one, two = config.sites
    assert one == SiteConfig(
        name="one", allowed_domains=("example.com",), sitemaps=("https://example.com/sitemap.xml",),
        feeds=(), start_urls=(), article_pattern=r"/\d{4}/", schedule="0 * * * *",
        download_delay=0.0, concurrent_requests=32, autothrottle=False,
    )
    assert two.allowed_domains == ("a.org", "b.org")
    # Defaults are the polite ones.
    assert (two.download_delay, two.concurrent_requests, two.autothrottle) == (1.0, 4, True)
    assert two.schedule == "*/30 * * * *"


def test_site_lookup_names_the_configured_sites():
    config = load_config(EXAMPLE)
    with pytest.raises(ConfigError) as info:
        config.site("nosuch")
    message = str(info.value)
    assert "nosuch" in message and "globeandmail" in message and "\n" not in message


# -- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    assert "no such" in _error(tmp_path / "missing.toml")


def test_invalid_toml(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_text('[archive\nurl = "./a"\n[[sites]]\nname = \n', encoding="utf-8")
    assert "TOML" in _error(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_bytes(b"\xff\xfe[archive]\n")
    assert "cannot read" in _error(path)
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    assert "cannot read" in _error(directory)


def test_unknown_key_in_a_site_is_named(tmp_path):
    message = _error(_write(tmp_path, [_site(colour="red")]))
    assert message.startswith("sites.0.colour: ")


def test_unknown_key_in_archive_is_named(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_text('[archive]\nurl = "./a"\nbucket = "x"\n', encoding="utf-8")
    assert "bucket" in _error(path)


@pytest.mark.parametrize("name", ["../../etc", "Upper", "has space", "a/b", "", "x" * 65, "é"])
def test_bad_site_name_is_rejected(tmp_path, name):
    assert _error(_write(tmp_path, [_site(name=name)])).startswith("sites.0.name: ")


def test_duplicate_site_names(tmp_path):
    message = _error(_write(tmp_path, [_site(name="twice"), _site(name="once"), _site(name="twice")]))
    assert "duplicate" in message and "twice" in message and "once" not in message


def test_bad_article_pattern(tmp_path):
    message = _error(_write(tmp_path, [_site(article_pattern="/article-(")]))
    assert "article_pattern" in message and "regular expression" in message


def test_site_without_a_source(tmp_path):
    site = {"name": "nosource", "allowed_domains": ["example.com"]}
    message = _error(_write(tmp_path, [site]))
    assert "sitemaps" in message and "feeds" in message and "start_urls" in message


def test_site_with_empty_sources(tmp_path):
    message = _error(_write(tmp_path, [_site(feeds=[], sitemaps=[], start_urls=[])]))
    assert "sitemaps" in message


def test_site_without_allowed_domains(tmp_path):
    assert "allowed_domains" in _error(_write(tmp_path, [_site(allowed_domains=[])]))


@pytest.mark.parametrize("schedule", ["* * * *", "* * * * * *", ""])
def test_cron_schedule_needs_five_fields(tmp_path, schedule):
    message = _error(_write(tmp_path, [_site(schedule=schedule)]))
    assert "schedule" in message and "five fields" in message


@pytest.mark.parametrize(("key", "value"), [
    ("concurrent_requests", 0), ("concurrent_requests", -1), ("download_delay", -0.5),
])
def test_politeness_bounds(tmp_path, key, value):
    assert key in _error(_write(tmp_path, [_site(**{key: value})]))


def test_several_errors_still_give_one_line(tmp_path):
    message = _error(_write(tmp_path, [_site(name="../x", concurrent_requests=0, colour="red")]))
    assert "more" in message


# -- archive_only ----------------------------------------------------------------------------


def test_archive_only_missing_file_gives_defaults(tmp_path):
    config = load_config(tmp_path / "missing.toml", archive_only=True)
    assert config.archive.url == "./archive"
    assert config.sites == ()


def test_archive_only_ignores_broken_sites(tmp_path):
    path = _write(tmp_path, [_site(name="../../etc", colour="red")], archive_url="/data/archive")
    _error(path)  # broken for a crawl ...
    config = load_config(path, archive_only=True)  # ... fine for reading the archive
    assert config.archive.url == "/data/archive"
    assert config.sites == ()


def test_archive_only_still_validates_archive(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_text('[archive]\nurl = 3\n\n[[sites]]\nname = "../x"\n', encoding="utf-8")
    message = _error(path, archive_only=True)
    assert "archive.url" in message
    path.write_text('[archive]\nurl = "./a"\nregion = "x"\n', encoding="utf-8")
    assert "region" in _error(path, archive_only=True)


def test_archive_only_still_rejects_invalid_toml(tmp_path):
    path = tmp_path / "sites.toml"
    path.write_text("[archive\n", encoding="utf-8")
    assert "TOML" in _error(path, archive_only=True)


# -- settings from the environment -------------------------------------------------------------


def test_settings_defaults(monkeypatch):
    for var in ("NEWSARCHIVE_CONFIG", "NEWSARCHIVE_ARCHIVE_URL", "NEWSARCHIVE_MAX_PARALLEL_SITES"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.config == Path("sites.toml")
    assert settings.archive_url is None
    assert settings.max_parallel_sites >= 1
    assert "newsarchive" in settings.user_agent


def test_settings_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSARCHIVE_ARCHIVE_URL", "s3://bucket/from-env")
    monkeypatch.setenv("NEWSARCHIVE_CONFIG", str(tmp_path / "other.toml"))
    monkeypatch.setenv("NEWSARCHIVE_MAX_PARALLEL_SITES", "5")
    settings = Settings()
    assert settings.archive_url == "s3://bucket/from-env"
    assert settings.config == tmp_path / "other.toml"
    assert settings.max_parallel_sites == 5


def test_settings_reject_bad_values(monkeypatch):
    monkeypatch.setenv("NEWSARCHIVE_MAX_PARALLEL_SITES", "0")
    with pytest.raises(ValueError):
        Settings()
