"""The browsing commands (``ls``, ``show``, ``cat``, ``search``, ``stats``) over an archive a
real crawl of the local news site left in moto's S3 server, plus a second capture of one
article (as a later crawl archives it). One crawl serves the whole module; the commands run
in-process through ``flows.cli.main``, and on a terminal (a pty) in a real process."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pty
import re
import select
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

import boto3
import pytest

from browse.records import iter_records
from flows.cli import main
from storage import Archive, Record, S3Backend, StoreOutcome, canonicalize_url
from storage.catalog import CatalogWriter, archive_date
from storage.keys import date_prefixes, meta_key_prefixes
from tests.conftest import AWS_TEST_ENV, REPO_ROOT, crawl_site_subprocess, local_site_config
from tests.newssite import NewsSite
from tests.test_cli import run, table

SITE = "localnews"
PREFIX = "news"
# A word no corpus page has: the second capture of one article is about it.
MARKER = "zyzzyva"
NEW_TEXT = (f"The {MARKER} council revised its budget figures on Monday after a long debate.\n"
            "Members said the earlier numbers had left out the cost of the new bridge.")
NEW_TITLE = f"The {MARKER} council revises its budget"
LS_HEADER = ["id", "site", "date", "title", "url"]


@dataclass(frozen=True)
class Crawled:
    """The module's archive and what we know about it from outside the code under test."""

    url: str
    """The archive URL (``s3://bucket/news``)."""
    bucket: str
    """The bucket."""
    client: object
    """A plain boto3 client for the bucket, to check answers against the stored objects."""
    records: dict[str, dict]
    """Every stored ``meta.json``, by id."""
    versioned: dict
    """The record that got a second capture (the aliased one)."""
    old_text: str
    """That record's first text."""
    aliased: dict
    """The record a copy of its page at another URL was added to as an alias."""
    copy_url: str
    """That other URL."""
    manifests: list[dict]
    """The stored run manifests."""

    def get(self, located_key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=located_key)["Body"].read()


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"])


def _stored(client, bucket: str, prefix: str, suffix: str) -> list[bytes]:
    """The objects under ``prefix`` whose keys end with ``suffix``."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            if obj["Key"].endswith(suffix):
                out.append(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return out


@pytest.fixture(scope="module")
def crawled(corpus, moto_endpoint, tmp_path_factory):
    """12 corpus pages, a copy of one at another URL and a broken sitemap entry, crawled
    into a bucket of its own (never reset while the module runs); then one article is
    captured again with other text, its catalog row and run manifest written as the
    crawl pipeline writes them."""
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("NEWSARCHIVE_")]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        client = _client(moto_endpoint)
        bucket = f"browse-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        url = f"s3://{bucket}/{PREFIX}"
        data = tmp_path_factory.mktemp("browse-data")
        pages = corpus[:12]
        with NewsSite(pages, feed_size=0) as site:
            copy_path = "/copies/a-copy-of-the-first-story"
            site.add_route(copy_path, pages[0].html)
            broken = f"{site.base_url}/news/this-story-was-removed"
            copy_url = site.base_url + copy_path
            site.add_route("/extra-sitemap.xml", (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{broken}</loc></url><url><loc>{copy_url}</loc></url></urlset>"
            ).encode(),
                headers={"Content-Type": "application/xml"})
            entry = local_site_config(site, SITE, feeds=[], sitemaps=[
                f"{site.base_url}/robots.txt", f"{site.base_url}/extra-sitemap.xml"])
            report = crawl_site_subprocess(entry, url, {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                                           data, "run-1")
        assert report["finish_reason"] == "finished"

        archive = Archive.open(url)
        metas = _stored(client, bucket, f"{PREFIX}/articles/", "/meta.json")
        records = {r["id"]: r for r in map(json.loads, metas)}
        assert len(records) == len(pages)
        (aliased,) = [r for r in records.values()
                      if canonicalize_url(copy_url) in r["aliases"] or r["url"] == copy_url]
        # The same article gets the second capture: show then has versions and aliases.
        versioned = aliased
        before = Record.from_dict(versioned)
        old_text = archive.read_text(before)
        later = before.fetched_at + timedelta(days=1)
        result = archive.store(
            replace(before, fetched_at=later, title=NEW_TITLE,
                    content_sha256=hashlib.sha256(NEW_TEXT.encode()).hexdigest()),
            raw_body=f"<html><body><p>{NEW_TEXT}</p></body></html>".encode(), charset="utf-8",
            text=NEW_TEXT, run_id="run-2")
        assert result.outcome is StoreOutcome.VERSION
        catalog = CatalogWriter(archive.backend, data / "catalog-run-2", "run-2")
        catalog.add(result.record, NEW_TEXT)
        catalog.close()
        # The run that captured it started now: stats adds up the runs of the days up to
        # today.
        started = datetime.now(timezone.utc)
        archive.put_run_manifest({
            "run_id": "run-2", "site": SITE, "started_at": started.isoformat(),
            "finished_at": started.isoformat(),
            "counts": {"archived": 0, "versions": 1, "duplicates": 0, "errors": 0},
            "errors_by_kind": {}, "errors": []})
        records[versioned["id"]] = json.loads(result.record.to_json())
        manifests = [json.loads(m) for m in _stored(client, bucket, f"{PREFIX}/runs/", ".json")]
        yield Crawled(url=url, bucket=bucket, client=client, records=records,
                      versioned=records[versioned["id"]], old_text=old_text,
                      aliased=records[aliased["id"]], copy_url=canonicalize_url(copy_url),
                      manifests=manifests)


def day_of(record: dict) -> str:
    """The archive date of a stored record: its folder's date."""
    return "-".join(record["meta_key"].split("/")[-5:-2])


# -- ls ----------------------------------------------------------------------------------------


def tsv(out: str) -> list[list[str]]:
    """The lines of a piped ``ls``, split on its tabs."""
    return [line.split("\t") for line in out.rstrip("\n").split("\n")]


def test_ls_lists_every_archived_article(crawled, capsys):
    code, out, err = run(capsys, "ls", "--archive", crawled.url)
    assert code == 0, err
    rows = tsv(out)
    assert rows[0] == LS_HEADER
    by_id = {row[0]: row for row in rows[1:]}
    assert len(by_id) == len(rows) - 1 == len(crawled.records)
    for aid, record in crawled.records.items():
        assert by_id[aid] == [aid, SITE, day_of(record), record["title"] or "", record["url"]]

    code, out, _ = run(capsys, "ls", "--archive", crawled.url, "--json")
    assert code == 0
    listed = [json.loads(line) for line in out.splitlines()]
    assert {record["id"]: record for record in listed} == crawled.records


def test_ls_filters_by_site_date_and_language(crawled, capsys):
    def ids(*args: str) -> set[str]:
        code, out, err = run(capsys, "ls", "--archive", crawled.url, "--json", *args)
        assert code == 0, err
        return {json.loads(line)["id"] for line in out.splitlines()}

    assert ids("--site", SITE) == set(crawled.records)
    assert ids("--site", "elsewhere") == set()
    languages = Counter(r["language"] for r in crawled.records.values())
    assert len(languages) > 1, languages  # the corpus mixes languages
    for language in languages:
        expected = {i for i, r in crawled.records.items() if r["language"] == language}
        assert ids("--lang", language) == expected
    language = languages.most_common(1)[0][0]
    assert ids("--lang", language.upper(), "--site", SITE) == {
        i for i, r in crawled.records.items() if r["language"] == language}
    assert ids("--lang", "xx") == set()
    day = day_of(crawled.aliased)
    expected = {i for i, r in crawled.records.items() if day_of(r) == day}
    assert crawled.aliased["id"] in expected
    assert ids("--site", SITE, "--since", day, "--until", day) == expected
    assert ids("--since", day, "--until", day) == expected
    after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    assert ids("--since", after) == {i for i, r in crawled.records.items() if day_of(r) >= after}


class _RecordingClient:
    """What the S3 client was asked: ListObjectsV2 prefixes (in pages of at most 3 keys, so
    that pagination shows) and GetObject keys. A real boto3 client of the moto server with
    botocore event hooks, not a mock."""

    def __init__(self, endpoint: str) -> None:
        self.client = _client(endpoint)
        self.listed: list[dict] = []
        self.got: list[str] = []
        self.client.meta.events.register("provide-client-params.s3.ListObjectsV2", self._list)
        self.client.meta.events.register("provide-client-params.s3.GetObject", self._get)

    def _list(self, params, **_):
        params["MaxKeys"] = 3
        self.listed.append(dict(params))

    def _get(self, params, **_):
        self.got.append(params["Key"])


def test_ls_of_one_day_lists_only_that_day(crawled, moto_endpoint):
    recording = _RecordingClient(moto_endpoint)
    archive = Archive(S3Backend(crawled.bucket, PREFIX, client=recording.client))
    day = date.fromisoformat(day_of(crawled.aliased))
    found = list(iter_records(archive, site=SITE, since=day, until=day))
    expected = {i for i, r in crawled.records.items() if day_of(r) == day.isoformat()}
    assert {r.id for r in found} == expected
    assert {c["Prefix"] for c in recording.listed} == {f"{PREFIX}/articles/{SITE}/{day:%Y/%m/%d}/"}
    # Three keys per page; an article folder holds three or more objects.
    assert len(recording.listed) >= len(expected)
    assert sorted(recording.got) == sorted(crawled.records[i]["meta_key"] for i in expected)

    recording.listed.clear()
    recording.got.clear()
    everything = list(iter_records(archive, site=SITE))
    assert {r.id for r in everything} == set(crawled.records)
    assert {c["Prefix"] for c in recording.listed} == {f"{PREFIX}/articles/{SITE}/"}
    assert len(recording.listed) > len(crawled.records)  # many pages, all followed
    assert all(key.endswith("/meta.json") for key in recording.got)  # nothing but records read
    assert len(recording.got) == len(crawled.records)


def test_date_prefixes_cover_the_range_exactly():
    assert date_prefixes(date(2024, 5, 3), date(2024, 5, 3)) == ["2024/05/03/"]
    assert date_prefixes(date(2024, 1, 30), date(2024, 3, 2)) == [
        "2024/01/30/", "2024/01/31/", "2024/02/", "2024/03/01/", "2024/03/02/"]
    assert date_prefixes(date(2023, 12, 31), date(2025, 1, 1)) == [
        "2023/12/31/", "2024/", "2025/01/01/"]
    # Every day of a long, ragged range is covered once and nothing else is.
    since, until = date(2023, 11, 17), date(2025, 2, 3)
    covered = []
    day = date(2023, 1, 1)
    while day <= date(2025, 12, 31):
        if any(f"{day:%Y/%m/%d}/".startswith(p) for p in date_prefixes(since, until)):
            covered.append(day)
        day += timedelta(days=1)
    assert covered[0] == since and covered[-1] == until
    assert len(covered) == (until - since).days + 1
    assert meta_key_prefixes(SITE, date(2024, 5, 2), date(2024, 5, 1)) == []
    assert meta_key_prefixes(SITE, None, date(2024, 5, 1)) == [f"articles/{SITE}/"]
    assert meta_key_prefixes(None, date(2024, 5, 1), date(2024, 5, 1)) == ["articles/"]


# -- from a shell: the venv's newsarchive in a subprocess ------------------------------------------


def local_articles(root, articles: list[tuple[str | None, datetime]], *,
                   catalog: bool = True) -> list[Record]:
    """A local archive of ``articles`` (title, publication time) of site ``alpha``, with
    their catalog rows unless ``catalog`` is false; returns the records."""
    from tests.test_cli import store_article

    archive = Archive.open(str(root))
    writer = CatalogWriter(archive.backend, root.parent / "pending", "shell-run")
    stored = []
    for n, (title, published) in enumerate(articles):
        text = f"Story {n} of the harbour town."
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/s-{n}",
                               title=title, published=published, fetched_at=published,
                               text=text, raw=b"<p>x</p>")
        if catalog:
            writer.add(record, text)
        stored.append(record)
    writer.close()
    return stored


def test_piped_ls_prints_whole_fields_separated_by_tabs(tmp_path):
    """Piped, ls cut titles at 70 characters in space-padded columns, which cut and awk
    cannot split when a title holds two spaces: now whole fields, one tab between them."""
    from tests.test_export import NEWSARCHIVE, newsarchive

    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    title = "The harbour council  revises its budget, " * 5 + "\tafter a long debate"
    root = tmp_path / "archive"
    long, untitled = local_articles(root, [(title, when), (None, when)])
    whole = title.replace("\t", " ")  # a tab in a field would split it
    assert len(whole) > 200
    day = "2024-05-01"
    # From the catalog, and from the records of a closed date range.
    for args in ([], ["--site", "alpha"], ["--since", day, "--until", day]):
        done = newsarchive("ls", "--archive", str(root), *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "\t".join(LS_HEADER)
        assert sorted(line.split("\t") for line in lines[1:]) == sorted([
            [long.id, "alpha", day, whole, long.url],
            [untitled.id, "alpha", day, "", untitled.url]])
    # As a script reads it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSARCHIVE_")}
    command = NEWSARCHIVE if NEWSARCHIVE.exists() else f"{sys.executable} -m flows"
    done = subprocess.run(f"{command} ls --archive {root} | cut -f4 | sort", shell=True,
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.splitlines() == ["", whole, "title"]


def test_piped_search_prints_whole_fields_separated_by_tabs(tmp_path):
    """Piped, search cut titles at 60 characters in space-padded columns, as ls did: now
    whole fields (the URL too), one tab between them, one line per hit."""
    from tests.test_export import newsarchive

    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    title = "The harbour council  revises its budget, " * 5
    root = tmp_path / "archive"
    (article,) = local_articles(root, [(title, when)])
    done = newsarchive("search", "harbour", "--archive", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "id\tsite\tdate\ttitle\turl\tsnippet"
    assert len(lines) == 2
    fields = lines[1].split("\t")
    assert fields[:5] == [article.id, "alpha", "2024-05-01", title, article.url]
    assert "harbour" in fields[5]


@pytest.mark.parametrize("argv", [
    ["ls"], ["ls", "--json"], ["ls", "--since", "2024-05-01", "--until", "2024-05-02"],
    ["stats"], ["search", "harbour"], ["show", "0" * 24], ["cat", "0" * 24], ["export"]])
def test_reading_commands_where_there_is_no_archive_say_so(tmp_path, argv):
    """In a directory with no sites.toml and no archive, a reading command printed an empty
    table (or nothing) and exited 0, as if the archive were empty: now one line says where
    it looked, and the exit code is 1."""
    from tests.test_export import newsarchive, our_lines

    done = newsarchive(*argv, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert our_lines(done.stderr) == [
        f"newsarchive: no archive found at {tmp_path / 'archive'} (nothing is stored there): "
        "give --archive URL, or --config FILE whose [archive] url names it"]
    assert not (tmp_path / "archive").exists()  # and nothing made


def test_a_mistyped_archive_is_no_archive_locally_or_in_s3(tmp_path, moto_endpoint):
    from tests.test_export import newsarchive, our_lines

    local_articles(tmp_path / "archive", [("A story", datetime(2024, 5, 1, tzinfo=timezone.utc))])
    # A bucket of its own (s3_archive would reset moto under the module's crawled bucket).
    bucket = f"empty-{uuid.uuid4().hex[:12]}"
    _client(moto_endpoint).create_bucket(Bucket=bucket)
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    for url in (str(tmp_path / "archvie"), f"s3://{bucket}/news"):
        done = newsarchive("ls", "--archive", url, cwd=tmp_path, env=env)
        assert (done.returncode, done.stdout) == (1, "")
        (line,) = our_lines(done.stderr)
        assert line.startswith(f"newsarchive: no archive found at {url}")
    done = newsarchive("ls", "--archive", str(tmp_path / "archive"), cwd=tmp_path)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2


def test_stats_charts_the_calendar_days_up_to_today(tmp_path):
    """The sparkline and the per-day chart showed the N days up to the site's latest
    article, under a header saying "last N days": a site that stopped a week ago looked
    alive. Now they cover the N days (UTC) up to today (or --until), a day without
    articles as 0, and the header names them."""
    from tests.test_export import newsarchive

    now = datetime.now(timezone.utc)
    root = tmp_path / "archive"
    local_articles(root, [(f"Story {n}", now - timedelta(days=days))
                          for n, days in enumerate((1, 1, 3, 30))])
    for _attempt in range(2):  # a run across midnight (UTC) starts again
        today = datetime.now(timezone.utc).date()
        done = newsarchive("stats", "--archive", str(root), "--days", "5", cwd=tmp_path)
        if datetime.now(timezone.utc).date() == today:
            break
    assert done.returncode == 0, done.stderr
    window = [today - timedelta(days=n) for n in range(4, -1, -1)]
    counts = {today - timedelta(days=1): 2, today - timedelta(days=3): 1}
    lines = done.stdout.splitlines()
    assert lines[0].split()[-3:] == ["per", "day", f"{window[0]}..{today}"]
    assert lines[1].split()[-1] == "·▅·█·"  # today-4 ... today
    chart = lines[lines.index(f"alpha: articles per day, {window[0]} to {today} (UTC)") + 2:]
    assert [row.split()[:2] for row in chart] == [[str(d), str(counts.get(d, 0))]
                                                  for d in window]
    done = newsarchive("stats", "--archive", str(root), "--days", "3", "--until",
                       str(today - timedelta(days=1)), cwd=tmp_path)
    assert done.stdout.splitlines()[1].split()[-1] == "▅·█"  # today-3 ... today-1


# -- show and cat ------------------------------------------------------------------------------


def test_show_gives_the_record_with_versions_and_aliases(crawled, capsys):
    for record in (crawled.versioned, crawled.aliased, min(crawled.records.values(),
                                                            key=lambda r: r["id"])):
        code, out, err = run(capsys, "show", record["id"], "--archive", crawled.url)
        assert code == 0, err
        assert json.loads(out) == record
    code, out, _ = run(capsys, "show", crawled.copy_url, "--archive", crawled.url)
    shown = json.loads(out)
    assert code == 0 and shown["id"] == crawled.aliased["id"]
    assert crawled.copy_url in shown["aliases"] or shown["url"] == crawled.copy_url
    code, out, _ = run(capsys, "show", crawled.versioned["id"], "--archive", crawled.url, "--json")
    versions = json.loads(out)["versions"]
    assert len(versions) == 2
    assert versions[1]["content_sha256"] == hashlib.sha256(NEW_TEXT.encode()).hexdigest()


def test_cat_gives_the_text_and_the_exact_raw_page(crawled, capsysbinary):
    def cat(*args: str) -> bytes:
        code = main(["cat", *args, "--archive", crawled.url])
        out, err = capsysbinary.readouterr()
        assert code == 0, err
        return out

    for record in list(crawled.records.values())[:3]:
        assert cat(record["id"]).decode("utf-8") == crawled.get(record["text_key"]).decode() + "\n"
    assert cat(crawled.versioned["id"]).decode("utf-8") == NEW_TEXT + "\n"
    record = crawled.aliased
    raw = cat(record["id"], "--raw")
    assert raw == gzip.decompress(crawled.get(record["raw_key"]))
    assert raw.lstrip()[:1] == b"<"


# -- on a terminal ------------------------------------------------------------------------------


def run_on_terminal(*argv: str, env: dict[str, str]) -> tuple[int, str]:
    """Run ``python -m flows ARGV`` with its stdout on a pseudo-terminal, as a user at a
    terminal does; returns the exit code and what the terminal received."""
    master, slave = pty.openpty()
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200",
                "LINES": "50", "TERM": "xterm-256color"}
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows", *argv], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE, env=full_env, cwd=REPO_ROOT)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert code == 0, stderr[-2000:]
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_tables_are_rich_on_a_terminal_and_plain_when_piped(crawled, capsys):
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}
    _, shown = run_on_terminal("show", crawled.versioned["id"], "--archive", crawled.url, env=env)
    assert "\x1b[" in shown  # styled for a terminal
    assert "│" in shown or "┃" in shown  # rich column rules
    assert "2 version(s)" in shown and "1 alias(es)" in shown and crawled.copy_url in shown
    for version in crawled.versioned["versions"]:
        assert version["content_sha256"][:16] in shown
    code, piped, _ = run(capsys, "show", crawled.versioned["id"], "--archive", crawled.url)
    assert json.loads(piped) == crawled.versioned
    code, piped, _ = run(capsys, "ls", "--archive", crawled.url)
    assert "\x1b" not in piped and "│" not in piped


# -- search ----------------------------------------------------------------------------------------


def search_ids(capsys, crawled: Crawled, *args: str) -> list[str]:
    code, out, err = run(capsys, "search", *args, "--archive", crawled.url, "--json",
                         "--limit", "100")
    assert code == 0, err
    return [json.loads(line)["id"] for line in out.splitlines()]


def test_search_finds_articles_with_every_word(crawled, capsys):
    versioned = crawled.versioned["id"]
    assert search_ids(capsys, crawled, MARKER) == [versioned]
    assert search_ids(capsys, crawled, MARKER.upper(), "BRIDGE") == [versioned]
    assert search_ids(capsys, crawled, MARKER, "nonexistentwordxyz") == []
    assert search_ids(capsys, crawled, MARKER, "--site", "elsewhere") == []

    # Words of one article's title find it; every result holds every word.
    target = next(r for r in crawled.records.values()
                  if r["id"] != versioned and len((r["title"] or "").split()) >= 3)
    words = sorted((w.strip(".,:;!?\"'()«»„“”") for w in target["title"].split()),
                   key=len, reverse=True)[:2]
    hits = search_ids(capsys, crawled, *words)
    assert target["id"] in hits
    for aid in hits:
        haystack = " ".join([crawled.records[aid]["title"] or "",
                             crawled.get(crawled.records[aid]["text_key"]).decode()]).casefold()
        assert all(w.casefold() in haystack for w in words), (aid, words)


def test_search_reads_only_the_latest_version(crawled, capsys):
    versioned = crawled.versioned["id"]
    new_words = set(f"{NEW_TEXT} {NEW_TITLE}".casefold().split())
    old_only = [w for w in crawled.old_text.split()
                if w.isalpha() and len(w) > 6 and w.casefold() not in new_words]
    assert old_only
    for word in old_only[:3]:
        assert versioned not in search_ids(capsys, crawled, word)


def test_search_output(crawled, capsys):
    code, out, _ = run(capsys, "search", MARKER, "--archive", crawled.url)
    assert code == 0
    rows = table(out)
    assert rows[0] == ["id", "site", "date", "title", "url", "snippet"]
    assert len(rows) == 2 and rows[1][0] == crawled.versioned["id"]
    assert rows[1][2] == day_of(crawled.versioned)
    assert MARKER in rows[1][-1]
    code, out, _ = run(capsys, "search", "the", "--archive", crawled.url, "--limit", "2", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    assert len(hits) == 2
    assert set(hits[0]) == {"id", "site", "date", "title", "url", "published", "snippet"}
    assert hits[0]["date"] >= hits[1]["date"]  # newest first
    assert all(" the " in f" {h['snippet'].casefold()}" or "the" in h["snippet"].casefold()
               for h in hits)


# -- stats -----------------------------------------------------------------------------------------


def test_stats_counts_articles_per_day_and_rates_from_the_manifests(crawled, capsys):
    code, out, err = run(capsys, "stats", "--archive", crawled.url, "--json")
    assert code == 0, err
    (site,) = json.loads(out)["sites"]
    assert site["site"] == SITE
    per_day = Counter(day_of(r) for r in crawled.records.values())
    assert site["articles"] == len(crawled.records)
    assert {d["day"]: d["articles"] for d in site["per_day"]} == per_day
    assert site["days"] == len(per_day)
    assert site["first"] == min(per_day) and site["last"] == max(per_day)
    records = crawled.records.values()
    assert site["with_date"] == sum(r["published"] is not None for r in records)
    assert site["with_author"] == sum(bool(r["authors"]) for r in records)
    assert site["with_title"] == sum(bool(r["title"]) for r in records)

    assert site["runs"] == len(crawled.manifests) == 2
    for name in ("archived", "versions", "duplicates", "errors"):
        assert site[name] == sum(m["counts"][name] for m in crawled.manifests), name
    assert site["duplicates"] >= 1 and site["errors"] >= 1 and site["versions"] == 1
    assert site["errors_by_kind"] == {"http_404": 1}
    outcomes = site["archived"] + site["versions"] + site["duplicates"] + site["errors"]
    assert site["duplicate_rate"] == pytest.approx(site["duplicates"] / outcomes)
    assert site["error_rate"] == pytest.approx(site["errors"] / outcomes)

    day = day_of(crawled.aliased)
    code, out, _ = run(capsys, "stats", "--archive", crawled.url, "--json", "--since", day,
                       "--until", day)
    (one_day,) = json.loads(out)["sites"]
    assert one_day["articles"] == per_day[day]
    assert one_day["runs"] == 0  # no run started that day


def test_stats_of_a_range_lists_only_its_run_folders(crawled, moto_endpoint):
    """stats reads the run manifests through storage's one reader: one site and a closed
    range list only the date folders of runs/ that cover it, and read only manifests."""
    from browse.stats import run_totals

    recording = _RecordingClient(moto_endpoint)
    archive = Archive(S3Backend(crawled.bucket, PREFIX, client=recording.client))
    for manifest in crawled.manifests:
        day = datetime.fromisoformat(manifest["started_at"]).astimezone(timezone.utc).date()
        recording.listed.clear()
        recording.got.clear()
        totals = run_totals(archive, site=SITE, since=day, until=day)
        assert {c["Prefix"] for c in recording.listed} == {
            f"{PREFIX}/runs/{SITE}/{day:%Y/%m/%d}/"}
        started = [m for m in crawled.manifests
                   if datetime.fromisoformat(m["started_at"]).astimezone(timezone.utc).date()
                   == day]
        assert totals[SITE].runs == len(started) == len(recording.got)
        assert all(key.startswith(f"{PREFIX}/runs/") for key in recording.got)


def test_percent_is_one_function_for_the_terminal_and_the_web():
    from browse.listing import percent

    assert percent(1, 8) == "12.5%" and percent(0, 3) == "0.0%" and percent(5, 0) == "-"
    assert percent(1, 8, decimals=0) == "12%" and percent(2, 3, decimals=0) == "67%"
    assert percent(1, 200, decimals=0) == "0%"
    from browse.web import make_templates

    web_percent = make_templates().globals["percent"]  # the web UI's tables: whole ones
    assert web_percent(1, 8) == "12%" and web_percent(5, 0) == "-"


def test_stats_prints_a_table_and_charts(crawled, capsys):
    per_day = Counter(day_of(r) for r in crawled.records.values())
    until = max(per_day)
    code, out, err = run(capsys, "stats", "--archive", crawled.url, "--days", "5", "--until",
                         until)
    assert code == 0, err
    window = [(date.fromisoformat(until) - timedelta(days=n)).isoformat()
              for n in range(4, -1, -1)]
    lines = out.splitlines()
    assert lines[0].split() == ["site", "articles", "days", "first", "last", "date", "author",
                                "title", "runs", "duplicates", "errors", "per", "day",
                                f"{window[0]}..{until}"]
    summary = lines[1].split()
    assert summary[:2] == [SITE, str(sum(per_day.values()))]
    assert len(summary[-1]) == 5 and set(summary[-1]) <= set("▁▂▃▄▅▆▇█·")
    assert [c == "·" for c in summary[-1]] == [per_day[d] == 0 for d in window]
    chart = lines[lines.index(f"{SITE}: articles per day, {window[0]} to {until} (UTC)") + 2:]
    assert [row.split()[0] for row in chart] == window  # every day, with articles or not
    for row in chart:
        day, count = row.split()[:2]
        assert int(count) == per_day[day]
        bars = row.split()[2] if per_day[day] else ""
        assert len(bars) == round(per_day[day] / max(per_day[d] for d in window) * 30)
    # The runs are those of the window too: the crawl's, up to today.
    code, out, err = run(capsys, "stats", "--archive", crawled.url, "--days", "5")
    assert code == 0, err
    assert f"{SITE}: errors: http_404 1" in out.splitlines()


# -- a local archive -------------------------------------------------------------------------------


def test_search_and_stats_over_a_local_archive(tmp_path, capsys):
    from tests.test_cli import store_article

    root = tmp_path / "archive"
    archive = Archive.open(str(root))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    writer = CatalogWriter(archive.backend, tmp_path / "pending", "local-run")
    stored = []
    for n, (title, text) in enumerate([
            ("Harbour reopens", "The harbour reopened after the storm. Ferries run again."),
            ("Storm damage counted", "Insurers counted the storm damage in the old town."),
            (None, "A page without a title about the harbour market.")]):
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/story-{n}",
                               title=title, published=when + timedelta(days=n // 2),
                               fetched_at=when, text=text, raw=b"<p>x</p>")
        writer.add(record, text)
        stored.append(record)
    writer.close()

    code, out, err = run(capsys, "search", "HARBOUR", "--archive", str(root), "--json")
    assert code == 0, err
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(
        [stored[0].id, stored[2].id])
    code, out, _ = run(capsys, "search", "storm", "ferries", "--archive", str(root), "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [stored[0].id]

    code, out, err = run(capsys, "stats", "--archive", str(root), "--json")
    assert code == 0, err
    (site,) = json.loads(out)["sites"]
    assert [(d["day"], d["articles"]) for d in site["per_day"]] == [
        (archive_date(stored[0]).isoformat(), 2), (archive_date(stored[2]).isoformat(), 1)]
    assert site["with_title"] == 2 and site["runs"] == 0 and site["error_rate"] is None


@pytest.mark.parametrize("argv", [
    ["search", "x", "--limit", "0"], ["stats", "--since", "2024-02-30"],
    ["browse", "--port", "70000"], ["search"], ["browse", "--allowed-host", "*"],
    ["browse", "--allowed-host", "a*b.example"], ["browse", "--allowed-host", "x/y"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# -- hostile queries and strings -------------------------------------------------------------------


def local_archive(tmp_path, articles: list[tuple[str | None, str]]) -> tuple[str, list[Record]]:
    """A local archive of ``articles`` (title, text) of site ``alpha``, with their catalog
    rows; returns its path and the records."""
    from tests.test_cli import store_article

    root = tmp_path / "archive"
    archive = Archive.open(str(root))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    writer = CatalogWriter(archive.backend, tmp_path / "pending", "local-run")
    stored = []
    for n, (title, text) in enumerate(articles):
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/story-{n}",
                               title=title, published=when + timedelta(hours=n),
                               fetched_at=when, text=text, raw=b"<p>x</p>")
        writer.add(record, text)
        stored.append(record)
    writer.close()
    return str(root), stored


def test_search_takes_a_typed_apostrophe_or_hyphen_for_its_typographic_forms(tmp_path, capsys):
    """News text sets curly apostrophes and Unicode hyphens; a keyboard types ASCII ones."""
    root, stored = local_archive(tmp_path, [
        ("Trump\u2019s plan", "The president\u2019s plan for covid\u201119 tests."),
        ("Plans", "Trumps and trumpets; covid 19 figures."),
        ("Rock \u2018n\u2019 roll", "A night of rock \u02bcn\u02bc roll.")])
    for query, found in (("trump's", [0]), ("president's covid-19", [0]), ("trumps", [1]),
                         ("TRUMP\u2019S", [0]), ("rock 'n' roll", [2])):
        code, out, err = run(capsys, "search", *query.split(), "--archive", root, "--json")
        assert code == 0, err
        assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(
            stored[n].id for n in found), query

def test_search_refuses_queries_beyond_the_bounds(tmp_path, capsys):
    from browse import catalog

    root, (record,) = local_archive(tmp_path, [
        ("Harbour reopens", "The harbour reopened after the storm.")])
    # 7,000 one-letter words: refused with the reason, nothing searched.
    many = ["abcdefghijklmnopqrstuvwxyz"[n % 26] for n in range(7000)]
    code, out, err = run(capsys, "search", *many, "--archive", root)
    assert (code, out) == (2, "")
    MAX_QUERY_WORDS, MAX_QUERY_CHARS = catalog.MAX_QUERY_WORDS, catalog.MAX_QUERY_CHARS
    assert err == (f"newsarchive: search: a search takes at most {MAX_QUERY_WORDS} words and "
                   f"{MAX_QUERY_CHARS} characters; this one has 7000 words and 13999 "
                   "characters\n")
    code, _, err = run(capsys, "search", *["harbour"] * (MAX_QUERY_WORDS + 1), "--archive", root)
    assert code == 2 and "this one has 33 words" in err
    code, _, err = run(capsys, "search", "h" * (MAX_QUERY_CHARS + 1), "--archive", root)
    assert code == 2 and "this one has 1 words and 501 characters" in err
    # The most words allowed: searched.
    words = ("The harbour reopened after the storm".split() * 6)[:MAX_QUERY_WORDS]
    code, out, err = run(capsys, "search", *words, "--archive", root, "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [record.id]


class CountingPattern:
    """A compiled pattern that counts its uses and the characters it was given."""

    def __init__(self, pattern) -> None:
        self.pattern = pattern
        self.calls: list[tuple[str, int]] = []

    def finditer(self, text: str):
        self.calls.append(("finditer", len(text)))
        return self.pattern.finditer(text)

    def search(self, text: str):
        self.calls.append(("search", len(text)))
        return self.pattern.search(text)


def test_search_matches_every_word_in_one_pass(tmp_path, capsys, monkeypatch):
    """The work of a search: one regex in the scan, whatever the number of words, then one
    pattern for all the words, run once over each row the scan lets through."""
    from browse import catalog

    articles = [
        ("Harbour reopens", "The harbour reopened after the storm. Ferries run again."),
        ("Storm damage counted", "Insurers counted the storm damage in the harbour town."),
        ("Market day", "Farmers sold apples at the harbour market on Saturday."),
        ("Election called", "The mayor called an election for June."),
        ("New-York ferries", "Ferries to new-york sail again after the storm."),
    ]
    root, stored = local_archive(tmp_path, articles)
    built: list[catalog.WordMatcher] = []

    class CountedMatcher(catalog.WordMatcher):
        def __init__(self, words) -> None:
            super().__init__(words)
            self.pattern = CountingPattern(self.pattern)
            built.append(self)

    monkeypatch.setattr(catalog, "WordMatcher", CountedMatcher)

    def search(*words: str) -> tuple[list[str], list[tuple[str, int]]]:
        built.clear()
        hits = catalog.search(root, " ".join(words), limit=None)
        (matcher,) = built  # one matcher, one pattern, per search
        return [h.id for h in hits], matcher.pattern.calls

    # The scan's filter: one regex for the title and one for the text, however many words.
    for words in (["harbour"], [f"word{n}" for n in range(catalog.MAX_QUERY_WORDS)]):
        assert str(catalog.scan_filter(words)).count("match_substring_regex") == 2, words

    # "harbour" (the longest word) is in 3 articles: each goes through the matcher once,
    # title and text in one string; with 1 word or with 32, the same characters are read.
    with_harbour = [f"{t}\n{x}" for t, x in articles if "harbour" in f"{t} {x}".lower()]
    one_word, calls = search("harbour")
    assert sorted(one_word) == sorted(r.id for r in stored[:3])
    scans = sorted(n for kind, n in calls if kind == "finditer")
    assert scans == sorted(len(s) for s in with_harbour)
    many = ["harbour", "the", "storm", "reopen", "after", "ferri", "run", "again"] * 4
    assert len(many) == catalog.MAX_QUERY_WORDS and max(many, key=len) == "harbour"
    hits, calls = search(*many)
    assert hits == [stored[0].id]
    # A substring test first: of the three, only the first holds every word, the others
    # (no "reopen", no "storm") never reach the pattern.
    assert [n for kind, n in calls if kind == "finditer"] == [len(with_harbour[0])]
    # The snippet: one more search, in the one hit's text.
    assert [kind for kind, _ in calls].count("search") == 1

    # What matches: every word, each at the start of a word, in the title or the text.
    assert search("ELECT", "mayor")[0] == [stored[3].id]  # "election"
    assert search("lection")[0] == []
    assert search("reopens", "ferries")[0] == [stored[0].id]  # one in the title, one in text
    assert search("new-york", "york")[0] == [stored[4].id]  # "york" inside "new-york"
    assert search("harbour", "apples", "insurers")[0] == []


HOSTILE_STRING = ("Budget \u009b31mred\u009b0m \x1b]0;pwned\x07 \x7f "
                  "\u202eevil\u202c \u2066isolated\u2069 \u200fmark \u2028line \U000e0041tag")
"""A title or text with a C1 CSI sequence, an OSC sequence, DEL, bidi overrides and
isolates, a bidi mark, a line separator and a tag character."""

TERMINAL_UNSAFE = ["\u009b", "\x1b", "\x07", "\x7f", "\u202e", "\u202c", "\u2066", "\u2069",
                   "\u200f", "\u2028", "\U000e0041"]


def assert_terminal_safe(output: str, what: str) -> None:
    found = [f"U+{ord(c):04X}" for c in TERMINAL_UNSAFE if c in output]
    assert not found, (what, found)


def test_output_never_gives_the_terminal_a_control_character(tmp_path, capsys):
    root, (record,) = local_archive(tmp_path, [
        (HOSTILE_STRING, f"Budget text: {HOSTILE_STRING}\nA second line.")])
    for argv in (["show", record.id, "--json"], ["show", record.id]):  # piped: JSON too
        code, out, err = run(capsys, *argv, "--archive", root)
        assert code == 0, err
        assert_terminal_safe(out, argv)
        assert "\\u009b31mred" in out and "\\u202eevil" in out and "\\udb40\\udc41tag" in out
        assert json.loads(out)["title"] == HOSTILE_STRING  # valid JSON, the same string
    code, out, _ = run(capsys, "ls", "--json", "--archive", root)
    assert_terminal_safe(out, "ls --json")
    assert json.loads(out)["title"] == HOSTILE_STRING
    code, out, _ = run(capsys, "search", "budget", "--json", "--archive", root)
    assert_terminal_safe(out, "search --json")
    (hit,) = map(json.loads, out.splitlines())
    assert hit["title"] == HOSTILE_STRING and "\u202eevil" in hit["snippet"]
    code, out, _ = run(capsys, "stats", "--json", "--archive", root)
    assert_terminal_safe(out, "stats --json")
    # Plain columns: the same characters replaced by spaces.
    for argv in (["ls"], ["search", "budget"]):
        code, out, _ = run(capsys, *argv, "--archive", root)
        assert_terminal_safe(out, argv)
        assert "Budget  31mred 0m" in out, argv
    # cat: piped, the text as archived; on a terminal, without them.
    code, out, _ = run(capsys, "cat", record.id, "--archive", root)
    assert out == f"Budget text: {HOSTILE_STRING}\nA second line.\n"
    for argv in (["cat", record.id], ["show", record.id], ["ls"], ["search", "budget"]):
        _, shown = run_on_terminal(*argv, "--archive", root, env={})
        # rich styles its tables with escape sequences of its own: take those out first.
        assert_terminal_safe(re.sub(r"\x1b\[[0-9;]*m", "", shown), ("terminal", argv))
    assert "A second line." in run_on_terminal("cat", record.id, "--archive", root, env={})[1]


def test_json_escapes_every_control_and_format_character():
    """Every character of the categories JSON output escapes, in Python's Unicode database,
    is escaped; the JSON reads back to the same string."""
    import unicodedata

    from browse.listing import to_json

    unsafe = [chr(c) for c in range(0x20, sys.maxunicode + 1)
              if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert {"\u009b", "\u202e", "\u2066", "\ud800"} <= set(unsafe)
    # Each between letters: JSON would read two surrogates side by side as one character.
    value = {"s": "é".join(unsafe) + " 日本"}
    out = to_json(value)
    assert "é" in out and "日本" in out  # letters stay as they are
    assert [c for c in out if c in set(unsafe)] == []
    assert json.loads(out) == value


# -- requests that do not grow with the archive ----------------------------------------------------


class _CountingBackend:
    """Wraps a local backend's reads, counting what S3 would bill as requests: each GET and
    each listing started (one LIST at least). A real backend, not a mock."""

    def __new__(cls, root):
        from storage.backends import LocalBackend

        class Counting(LocalBackend):
            def __init__(self, root) -> None:
                super().__init__(root)
                self.requests: Counter[str] = Counter()

            def get(self, key: str) -> bytes:
                self.requests[f"GET {key.split('/')[0]}/"] += 1
                return super().get(key)

            def iter_keys(self, prefix: str = ""):
                self.requests[f"LIST {prefix.split('/')[0]}/"] += 1
                return super().iter_keys(prefix)

        return Counting(root)


def grown_archive(tmp_path, articles: int, days_of_runs: int) -> Archive:
    """A local archive of ``articles`` articles of site ``alpha`` (with their catalog rows)
    and three run manifests a day for the ``days_of_runs`` days up to today."""
    from tests.test_cli import store_article

    archive = Archive(_CountingBackend(tmp_path / "archive"))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    writer = CatalogWriter(archive.backend, tmp_path / "pending", "grown-run")
    for n in range(articles):
        text = f"Story number {n} of the harbour town, told at length. " * 3
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/s-{n}",
                               title=f"Story {n}", published=when + timedelta(hours=n),
                               fetched_at=when, text=text, raw=b"<p>x</p>")
        writer.add(record, text)
    writer.close()
    now = datetime.now(timezone.utc)
    for day in range(days_of_runs):
        for hour in (1, 9, 17):
            started = (now - timedelta(days=day)).replace(hour=hour, minute=0)
            archive.put_run_manifest({
                "run_id": f"run-{day}-{hour}", "site": "alpha", "started_at": started.isoformat(),
                "counts": {"archived": 1, "versions": 0, "duplicates": 2, "errors": 1},
                "errors_by_kind": {"http_404": 1}})
    archive.backend.requests.clear()
    return archive


def requests_of(archive: Archive, command, **args) -> Counter:
    """The requests one browsing command (``browse.cli.cmd_*``) made of ``archive``."""
    import argparse

    archive.backend.requests.clear()
    command(argparse.Namespace(**args), archive)
    return Counter(archive.backend.requests)


def test_stats_and_show_make_as_many_requests_however_long_the_history(tmp_path, capsys):
    """stats adds up the runs of a window of days (--days up to today, or --since/--until),
    listed by their date folders; show and cat of an unknown URL or id ask the URL index.
    Ten times the articles and twenty times the runs cost not one request more."""
    from browse import cli

    small = grown_archive(tmp_path / "small", articles=10, days_of_runs=20)
    large = grown_archive(tmp_path / "large", articles=100, days_of_runs=400)
    stats = {"site": None, "since": None, "until": None, "days": 14, "json": True}
    unknown_url = "https://alpha.example/news/never-archived?utm_source=x"
    unknown_id = "0" * 24
    costs = {}
    for name, archive in (("small", small), ("large", large)):
        costs[name] = {
            "stats": requests_of(archive, cli.cmd_stats, **stats),
            "stats --site": requests_of(archive, cli.cmd_stats, **{**stats, "site": "alpha"}),
            "show url": requests_of(archive, cli.cmd_show, ref=unknown_url, json=True),
            "show id": requests_of(archive, cli.cmd_show, ref=unknown_id, json=True),
            "cat url": requests_of(archive, cli.cmd_cat, ref=unknown_url, raw=False),
        }
        first, _ = json.JSONDecoder().raw_decode(capsys.readouterr().out)  # stats --json
        (site,) = first["sites"]
        assert site["runs"] == 14 * 3 and site["errors_by_kind"] == {"http_404": 14 * 3}
        assert site["articles"] == (10 if name == "small" else 100)
    assert costs["large"] == costs["small"], costs
    # The window's manifests are read, nothing else of runs/; show asks two markers at most.
    assert costs["small"]["stats"]["GET runs/"] == 14 * 3
    assert sum(costs["small"]["show url"].values()) <= 2
    assert sum(costs["small"]["show id"].values()) <= 1


# -- S3 requests, counted at the server -------------------------------------------------------------


@pytest.fixture
def s3_counters(s3_archive, monkeypatch):
    """A counter in front of moto for each archive of the bucket a test makes (by prefix);
    the AWS_* variables (boto3's and pyarrow's endpoint) point at the first one made."""
    from urllib.parse import urlsplit

    from tests.s3counter import S3Counter

    host, port = urlsplit(s3_archive.endpoint).netloc.split(":")
    made = []

    def counter(prefix: str) -> S3Counter:
        made.append(S3Counter((host, int(port)), s3_archive.bucket, prefix).start())
        return made[-1]

    yield counter
    for each in made:
        each.stop()


def counted_archive(s3_archive, counter, prefix: str, monkeypatch, tmp_path, *, articles: int,
                    days_of_runs: int) -> Archive:
    """An archive in the bucket, under ``prefix``, reached through ``counter``:
    ``articles`` articles of site ``alpha`` published over the same five days whatever
    their number (so the catalog has as many files), their catalog rows, and three run
    manifests a day for the ``days_of_runs`` days up to today."""
    from storage.backends import make_s3_client
    from tests.test_cli import store_article

    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
    archive = Archive(S3Backend(s3_archive.bucket, prefix, make_s3_client()))
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    writer = CatalogWriter(archive.backend, tmp_path / f"pending-{prefix}", "counted-run")
    for n in range(articles):
        text = f"Story number {n} of the harbour town, told at length. " * 3
        record = store_article(archive, site="alpha", url=f"https://alpha.example/news/s-{n}",
                               title=f"Story {n}", published=when + timedelta(days=n % 5),
                               fetched_at=when, text=text, raw=b"<p>x</p>")
        writer.add(record, text)
    writer.close()
    now = datetime.now(timezone.utc)
    for day in range(days_of_runs):
        for hour in (1, 9, 17):
            started = (now - timedelta(days=day)).replace(hour=hour, minute=0)
            archive.put_run_manifest({
                "run_id": f"run-{day}-{hour}", "site": "alpha", "started_at": started.isoformat(),
                "counts": {"archived": 1, "versions": 0, "duplicates": 2, "errors": 1},
                "errors_by_kind": {"http_404": 1}})
    return archive


def requests_at_the_server(counter, archive: Archive, command, **args) -> Counter:
    """The S3 requests, by method and prefix, of one browsing command (``cmd_*``)."""
    import argparse

    counter.reset()
    command(argparse.Namespace(**args), archive)
    return Counter({f"{method} {prefix}": n for (method, prefix), n in counter.counts.items()})


def test_show_of_an_unknown_url_stats_and_ls_cost_the_same_requests_at_any_size(
        s3_archive, s3_counters, monkeypatch, tmp_path, capsys):
    """Counted at the server: ten times the articles (and three times the run history) cost
    not one request more to show an unknown URL or id, to add up the stats, or to list a
    site without a closed date range (ls reads the catalog, not every meta.json)."""
    from browse import cli

    sizes = {"small": (5, 20), "large": (50, 60)}
    stats = {"site": None, "since": None, "until": None, "days": 14, "json": True}
    ls = {"site": "alpha", "since": None, "until": None, "lang": None, "json": False}
    unknown_url = "https://alpha.example/news/never-archived?utm_source=x"
    costs = {}
    for name, (articles, days_of_runs) in sizes.items():
        counter = s3_counters(f"news-{name}")
        archive = counted_archive(s3_archive, counter, f"news-{name}", monkeypatch, tmp_path,
                                  articles=articles, days_of_runs=days_of_runs)
        costs[name] = {
            "show url": requests_at_the_server(counter, archive, cli.cmd_show, ref=unknown_url,
                                               json=True),
            "show id": requests_at_the_server(counter, archive, cli.cmd_show, ref="0" * 24,
                                              json=True),
            "stats": requests_at_the_server(counter, archive, cli.cmd_stats, **stats),
            "ls --site": requests_at_the_server(counter, archive, cli.cmd_ls, **ls),
            "ls --site --json": requests_at_the_server(counter, archive, cli.cmd_ls,
                                                       **{**ls, "json": True}),
            "ls --since": requests_at_the_server(counter, archive, cli.cmd_ls,
                                                 **{**ls, "site": None,
                                                    "since": date(2024, 5, 2)}),
        }
        out = capsys.readouterr().out
        assert f"s-{articles - 1}" in out  # ls listed them all
    assert costs["large"] == costs["small"], costs
    small = costs["small"]
    assert sum(small["show url"].values()) <= 2 and sum(small["show id"].values()) <= 1
    assert small["stats"]["GET runs/"] == 14 * 3
    for name in ("ls --site", "ls --site --json", "ls --since"):
        assert small[name]["GET articles/"] == 0, small[name]


def test_search_reads_each_catalog_file_once(s3_archive, s3_counters, monkeypatch, tmp_path):
    """Counted at the server: a search of every day asks for each catalog file what one read
    of the catalog asks (before, it read every file twice: its matches, then the latest
    rows of the articles found), and still answers with latest rows only; one limited to
    the newest results reads only the newest days."""
    from browse.catalog import search
    from storage.backends import make_s3_client
    from storage.catalog import read_catalog
    from tests.test_catalog import catalog_record, newer_version, write_run

    counter = s3_counters("news")
    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
    backend = S3Backend(s3_archive.bucket, "news", make_s3_client())
    archive = Archive(backend)
    url = f"s3://{s3_archive.bucket}/news"
    when = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)

    # Four days of two sites, then a second run rewrites two of the harbour stories without
    # the word: their latest rows do not have it, and they must not be found.
    first = []
    for n in range(16):
        text = f"Story {n} of the harbour town."
        first.append((catalog_record(archive, n, site=("alpha", "beta")[n % 2],
                                     published=when + timedelta(days=n // 2 % 4), text=text),
                      text))
    write_run(backend, tmp_path, "20240506T000000Z-one", first)
    write_run(backend, tmp_path, "20240507T000000Z-two",
              [newer_version(record, "A story of the hills.", 1) for record, _ in first[:2]])
    expected = {record.id for record, _ in first[2:]}

    counter.reset()
    read_catalog(url, columns=["id", "title", "text"])
    one_read = Counter(key for method, key in counter.keys if method == "GET")
    assert len(one_read) == 2 * 4 + 2  # the files: 2 sites x 4 days, and run two's two

    counter.reset()
    hits = search(url, "harbour", limit=None)
    searched = Counter(key for method, key in counter.keys if method == "GET")
    assert {hit.id for hit in hits} == expected
    assert searched == one_read

    counter.reset()
    newest = search(url, "harbour", limit=2)
    assert [h.day for h in newest] == [date(2024, 5, 4)] * 2
    read = {key.split("/")[2] for method, key in counter.keys if method == "GET"}
    assert read == {"date=2024-05-04"}


def test_the_substring_test_never_rejects_what_the_pattern_finds():
    """The matcher's cheap test lower-cases texts that :func:`browse.catalog.foldable`
    accepts: within its ranges (every pair of characters, on this Python's Unicode
    database), two characters ``re.IGNORECASE`` takes for one another are equal
    lower-cased, one character each; texts with others (Turkish ``İ``/``ı``, Greek sigmas)
    go straight to the pattern, which finds what it found before."""
    from browse.catalog import FOLD_EXCEPTIONS, FOLDABLE_RANGES, WordMatcher, foldable

    ranges = re.findall(r"(.)-(.)", FOLDABLE_RANGES)
    chars = [chr(c) for low, high in ranges for c in range(ord(low), ord(high) + 1)
             if chr(c) not in FOLD_EXCEPTIONS]
    assert all(foldable(c) for c in chars) and not any(foldable(c) for c in FOLD_EXCEPTIONS)
    wrong = []
    for a in chars:
        pattern = re.compile(re.escape(a), re.IGNORECASE)
        wrong += [(a, b) for b in chars
                  if pattern.fullmatch(b) and (a.lower() != b.lower() or len(a.lower()) != 1)]
    assert not wrong, wrong[:20]

    for words, text in ((["istanbul"], "Flights to İSTANBUL resume"),
                        (["kirmizi"], "kırmızı"), (["ΟΔΥΣΣΕΑΣ"], "ο οδυσσεας"),
                        (["straße"], "Die Straße"), (["ſun"], "the sun"),
                        (["élection"], "L'ÉLECTION présidentielle")):
        expected = bool(re.search(rf"(?<![^\W_]){re.escape(words[0])}", text, re.IGNORECASE))
        assert expected, (words, text)  # each is a match for the pattern alone...
        assert WordMatcher(words).has_every_word(text), (words, text)  # ...and still found
    assert not WordMatcher(["harbour", "ferry"]).may_have_every_word("The HARBOUR reopened")


def test_day_counts_read_no_compacted_day_but_from_its_sites_summary(
        s3_archive, s3_counters, monkeypatch, tmp_path):
    """stats and the web UI's per-day counts: a closed day that is one compacted file is
    not read, its figures come from its site's summary (one small read per site); a day a
    late run wrote to since is read, and a damaged summary only costs reading the files."""
    from browse.catalog import day_counts, read_day_counts
    from storage.backends import make_s3_client
    from storage.catalog import compact_catalog, read_catalog
    from tests.test_catalog import CLOSED, expected_date, newer_version, write_history, write_run

    counter = s3_counters("news")
    monkeypatch.setenv("AWS_ENDPOINT_URL", counter.url)
    backend = S3Backend(s3_archive.bucket, "news", make_s3_client())
    url = f"s3://{s3_archive.bucket}/news"
    latest = write_history(backend, tmp_path)
    compact_catalog(backend, before=CLOSED)

    def counts_and_files_read():
        counter.reset()
        counts = read_day_counts(url)
        read = {key for method, key in counter.keys
                if method == "GET" and key.endswith(".parquet")}
        return counts, read

    def from_every_row():
        return day_counts(read_catalog(url, columns=["site", "date", "title", "authors",
                                                     "published"]))

    counts, read = counts_and_files_read()
    assert counts == from_every_row() and len(counts) == 6
    open_day = {key for key in backend.iter_keys("catalog/") if "date=2024-05-21" in key}
    assert read == open_day  # the open day's files only
    assert read_day_counts(url, site="alpha") == [c for c in counts if c.site == "alpha"]

    # A late run writes to a closed day: that day is read again, the others still not.
    record, _ = next(v for v in latest.values()
                     if v[0].site == "alpha" and expected_date(v[0]) < CLOSED)
    write_run(backend, tmp_path, "20240524T080000Z-late",
              [newer_version(replace(record, title=None), "a late version", 3)])
    counts, read = counts_and_files_read()
    assert counts == from_every_row()
    day = f"date={expected_date(record):%Y-%m-%d}"
    assert {key for key in read if "date=2024-05-21" not in key} == {
        key for key in backend.iter_keys("catalog/site=alpha/") if day in key}

    # A damaged summary: every file is read, the figures stay right.
    backend.put("catalog/site=beta/_days.json", b"{not json")
    counts, read = counts_and_files_read()
    assert counts == from_every_row()
    assert {key for key in read if "site=beta" in key} == {
        key for key in backend.iter_keys("catalog/site=beta/") if key.endswith(".parquet")}
