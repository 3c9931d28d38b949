"""The sites file and the settings object: what loads, and the one-line reasons for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import Settings
from spiders.config import Config, ConfigError, SiteConfig, load_config
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


# -- security: schedules, hosts and URLs (issue 9) ---------------------------------------------


@pytest.mark.parametrize(("schedule", "says"), [
    ("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day of month"),
    ("* * 32 * *", "day of month"), ("* * * 13 *", "month"), ("* * * * 8", "day of week"),
    ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"), ("* * * foo *", "month"),
    ("a b c d e", "minute"), ("1,,2 * * * *", "minute"), ("0 0 L * *", "day of month"),
    ("*/-5 * * * *", "minute"),
])
def test_schedule_must_be_valid_cron(tmp_path, schedule, says):
    message = _error(_write(tmp_path, [_site(schedule=schedule)]))
    assert message.startswith("sites.0.schedule: ") and says in message, message


GOOD_SCHEDULES = ["*/30 * * * *", "0 * * * *", "15,45 6-22 * * *", "0 9-17/2 * jan-mar mon-fri",
                  "0 0 1 */3 *", "30 4 * * 0", "30 4 * * 7", "5/15 * * * *", "0 0 29 feb *",
                  "59 23 31 dec sun"]


@pytest.mark.parametrize("schedule", GOOD_SCHEDULES)
def test_valid_schedules_load(tmp_path, schedule):
    assert load_config(_write(tmp_path, [_site(schedule=schedule)])).sites[0].schedule == schedule


def test_schedules_we_accept_are_the_ones_prefect_accepts():
    """`serve` hands schedules to Prefect: what loads must be what Prefect can schedule."""
    from prefect.client.schemas.schedules import CronSchedule

    from spiders.config import check_cron

    # (A backwards range, which we refuse, Prefect reads as one that wraps around.)
    bad = ["61 * * * *", "* 24 * * *", "* * 32 * *", "* * * 13 *", "* * * * 8", "* * * foo *",
           "a b c d e", "* * * *", "*/0 * * * *"]
    for schedule in GOOD_SCHEDULES:
        check_cron(schedule)
        CronSchedule(cron=schedule)
    for schedule in bad:
        with pytest.raises(ValueError):
            check_cron(schedule)
        with pytest.raises(ValueError):
            CronSchedule(cron=schedule)


@pytest.mark.parametrize("domain", ["https://example.com", "example.com/news", "example.com:8080",
                                    "exa mple.com", "", "-example.com", "example..com",
                                    "user@example.com"])
def test_allowed_domains_must_be_host_names(tmp_path, domain):
    message = _error(_write(tmp_path, [_site(allowed_domains=[domain])]))
    assert message.startswith("sites.0.allowed_domains: ") and "host name" in message, message


def test_hosts_are_normalised(tmp_path):
    config = load_config(_write(tmp_path, [_site(
        allowed_domains=["Example.COM.", "Bücher.de", "127.0.0.1", "::1"],
        allow_private_hosts=["Intranet.Local", "[::1]"])]))
    site = config.sites[0]
    assert site.allowed_domains == ("example.com", "xn--bcher-kva.de", "127.0.0.1", "::1")
    assert site.allow_private_hosts == ("intranet.local", "::1")


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "http://127.0.0.1", "10.0.0.0/8"])
def test_allow_private_hosts_must_be_hosts(tmp_path, host):
    message = _error(_write(tmp_path, [_site(allow_private_hosts=[host])]))
    assert message.startswith("sites.0.allow_private_hosts: ") and "host name" in message


@pytest.mark.parametrize(("key", "url"), [
    ("feeds", "file:///etc/passwd"), ("sitemaps", "ftp://example.com/sitemap.xml"),
    ("start_urls", "/news"), ("feeds", "http://"), ("sitemaps", "example.com/sitemap.xml"),
    ("start_urls", "http://example.com:99999/"), ("feeds", "s3://bucket/feed.xml"),
])
def test_source_urls_must_be_http(tmp_path, key, url):
    message = _error(_write(tmp_path, [_site(**{key: [url]})]))
    assert message.startswith(f"sites.0.{key}: ") and url in message, message


@pytest.mark.parametrize(("key", "value"), [
    ("max_redirects", -1), ("max_redirects", 21), ("max_sitemap_depth", -1),
    ("max_sitemap_depth", 21), ("max_sitemap_bytes", 10), ("max_page_bytes", 10),
])
def test_limits_are_bounded(tmp_path, key, value):
    assert _error(_write(tmp_path, [_site(**{key: value})])).startswith(f"sites.0.{key}: ")


def test_limit_defaults():
    site = SiteConfig(name="x", allowed_domains=["example.com"], feeds=["https://example.com/f"])
    assert (site.max_redirects, site.max_sitemap_depth) == (5, 5)
    assert site.max_sitemap_bytes == 50 * 2 ** 20
    assert site.max_page_bytes == 20 * 2 ** 20 and site.allow_private_hosts == ()


# -- config holes (issue 17, point 4.10) ------------------------------------------------------


@pytest.mark.parametrize("schedule", ["0 0 31 2 *", "0 0 30 feb *", "0 0 31 apr,jun,sep,nov *"])
def test_a_schedule_that_never_fires_is_refused(tmp_path, schedule):
    """Every field is in range, yet no date matches: `serve` would register a site that is
    never crawled, and say nothing."""
    message = _error(_write(tmp_path, [_site(schedule=schedule)]))
    assert message.startswith("sites.0.schedule: ") and "never fires" in message, message


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 601, 1e300])
def test_an_endless_download_delay_is_refused(tmp_path, delay):
    """`download_delay = inf` was accepted, and the crawl never ended."""
    path = tmp_path / "sites.toml"
    value = {float("inf"): "inf", 601: "601"}.get(delay, repr(delay))
    value = "nan" if delay != delay else value
    path.write_text('[[sites]]\nname = "x"\nallowed_domains = ["example.com"]\n'
                    f'feeds = ["https://example.com/rss.xml"]\ndownload_delay = {value}\n')
    message = _error(path)
    assert message.startswith("sites.0.download_delay: "), message


@pytest.mark.parametrize(("pattern", "says"), [
    (r"(\w+)/\1", "backreferences"), (r"/news/(?=\d)", "look-arounds"), ("(", "missing )"),
])
def test_an_article_pattern_re2_cannot_run_is_refused_in_one_line(tmp_path, pattern, says,
                                                                   capfd):
    message = _error(_write(tmp_path, [_site(article_pattern=pattern)]))
    assert message.startswith("sites.0.article_pattern: ") and says in message, message
    assert not capfd.readouterr().err  # RE2 would print its own error too


def test_a_catastrophic_article_pattern_matches_in_linear_time():
    """`(a+)+$` against a long URL: exponential in Python's re (it would not return in this
    test's lifetime), linear in RE2. The bound is work, not a clock: the match must end."""
    from spiders.config import compile_user_pattern

    pattern = compile_user_pattern(r"^https://x/(a+)+$")
    assert pattern.search("https://x/" + "a" * 50_000 + "!") is None
    assert pattern.search("https://x/" + "a" * 50_000)


def test_an_archive_url_with_credentials_is_refused_without_repeating_them(tmp_path):
    message = _error(_write(tmp_path, [_site()], archive_url="s3://AKIAEXAMPLE:s3cr3t@bucket/p"))
    assert message.startswith("archive.url: ") and "credentials" in message, message
    assert "s3cr3t" not in message and "AKIAEXAMPLE" not in message
