"""Real servers for the tests, all on 127.0.0.1 and port 0: the local news site, moto's S3
server (one fresh bucket per test), and a Prefect API server for CLI runs."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from bench.s3_counting import make_s3_server
from flows.server import DATABASE_FILE
from storage import Archive, LocalBackend, S3Backend
from tests.newssite import NewsSite, load_corpus

if TYPE_CHECKING:
    from normalize import Article

REPO_ROOT = Path(__file__).resolve().parents[1]

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}

# What the crawls of the tests keep in the user's cache directory (the language model's
# decompressed copy) goes to the checkout's working directory instead, shared by the
# workers and kept between runs, never to the home directory of whoever runs the tests.
os.environ["XDG_CACHE_HOME"] = str(REPO_ROOT / ".newsarchive" / "cache")


# The files that take longest (minutes of cron ticks, Prefect servers, whole crawls), run
# first: pytest-xdist hands whole files to its workers in collection order, and a long file
# taken up last would keep one worker busy long after the others are done.
SLOWEST_FIRST = ("test_signals.py", "test_orchestration.py", "test_concurrency.py",
                 "test_e2e.py", "test_incremental.py", "test_recovery.py", "test_browse_cli.py",
                 "test_archive_run.py", "test_throughput.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope="session")
def corpus():
    """Every page of the corpus (``tests/data/fundus``)."""
    return load_corpus()


@pytest.fixture(scope="session")
def corpus_extractions(corpus, tmp_path_factory) -> dict[str, Article]:
    """Every corpus page extracted (``extract_article(html, url)``), by original URL, once
    for the whole run: four tests and fixtures in three files read every page's extraction,
    6-8 s of CPU each. The first xdist worker to ask extracts and leaves a pickle in the
    run's temporary directory; the others read it. Nothing is kept between runs."""
    from normalize import extract_article

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's directory, above each worker's own

    def extract_all(pickled: Path) -> None:
        pickled.write_bytes(pickle.dumps({page.original_url: extract_article(
            page.html, page.original_url) for page in corpus}))
    return pickle.loads(made_once(shared / "corpus-extractions.pickle", extract_all).read_bytes())


def made_once(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make(file)`` unless it exists: by one xdist worker, while the others
    wait on a lock beside it, and whole or not at all (``make`` writes a temporary file,
    renamed to ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=path.parent) as work:
                made = Path(work) / path.name
                make(made)
                os.replace(made, path)
    return path


@pytest.fixture(scope="session")
def news_site(corpus) -> Iterator[NewsSite]:
    """The local news site serving the whole corpus, with robots.txt, sitemaps and a feed."""
    site = NewsSite(corpus)
    site.start()
    yield site
    site.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode), reached over HTTP."""
    server = make_s3_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@dataclass(frozen=True)
class S3Archive:
    """A fresh bucket on the moto server, and how to reach it."""

    endpoint: str
    bucket: str
    prefix: str
    client: object
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def listing(self) -> dict[str, tuple[str, object]]:
        """Every object in the bucket: key -> (ETag, LastModified)."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", ()):
                out[obj["Key"]] = (obj["ETag"], obj["LastModified"])
        return out

    def archive_listing(self) -> dict[str, tuple[str, object]]:
        """:meth:`listing` without the run manifests (``runs/``): every run writes its own
        manifest by design, so "a re-run writes nothing" means nothing else."""
        return {k: v for k, v in self.listing().items()
                if not k.startswith(f"{self.prefix}/runs/")}

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture
def s3_archive(moto_endpoint, monkeypatch) -> S3Archive:
    """An empty bucket on a freshly reset moto server; AWS_* variables point boto3 at it."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_endpoint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Archive(endpoint=moto_endpoint, bucket=bucket, prefix="news", client=client, env=env)


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory) -> Iterator[str]:
    """A real Prefect API server shared by the CLI runs of the session (Prefect's own test
    server, as ``prefect_test_harness`` runs it, on a copy of :func:`seed_prefect_database`)."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    database = seed_prefect_database(home)
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    with temporary_settings(updates={
            PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}"}):
        server = SubprocessASGIServer(port=free_port())
        server.start(timeout=300)
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                yield server.api_url
        finally:
            server.stop()


def seed_prefect_database(home: Path) -> Path:
    """Give the Prefect server that will keep its state under ``home`` (in
    :data:`flows.server.DATABASE_FILE`, as ``serve`` and Prefect's temporary servers do) an
    empty database already migrated to this Prefect's schema; returns its path. Migrating a new SQLite database costs a server
    14 s of CPU at its first start: the tests' dozen servers would spend minutes on it, so it
    is done once per checkout and Prefect version (a template under ``.newsarchive/cache``),
    and copied. A server's first start on an empty directory is still tested (test_e2e)."""
    home.mkdir(parents=True, exist_ok=True)
    database = home / DATABASE_FILE
    shutil.copyfile(prefect_template(), database)
    return database


def prefect_template() -> Path:
    """The migrated empty database that :func:`seed_prefect_database` copies, made if
    missing."""
    import importlib.metadata

    return made_once(Path(os.environ["XDG_CACHE_HOME"])
                     / f"prefect-{importlib.metadata.version('prefect')}.db",
                     _build_prefect_template)


_TEMPLATE_MAKER = pytest.StashKey[threading.Thread]()


def pytest_sessionstart(session: pytest.Session) -> None:
    # In a new checkout the Prefect template is missing, and the first test of each of the
    # files that start first waits for one worker to make it (14 s of CPU). xdist's
    # controller, which runs no test, makes it while the workers collect.
    if os.environ.get("PYTEST_XDIST_WORKER") or not session.config.getoption("numprocesses", None):
        return

    def make() -> None:
        try:
            prefect_template()
        except Exception:  # noqa: BLE001 - the worker that needs it tries again, and says why
            pass

    session.config.stash[_TEMPLATE_MAKER] = maker = threading.Thread(
        target=make, name="prefect-template", daemon=True)
    maker.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    maker = session.config.stash.get(_TEMPLATE_MAKER, None)
    if maker is not None:
        maker.join()


def _build_prefect_template(building: Path) -> None:
    """Migrate a new SQLite database at ``building`` (in a directory of its own: the
    server's home while it runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(building.parent), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{building}")
    subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                   env=env, cwd=building.parent, check=True, capture_output=True, timeout=600)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def run_cli(prefect_api_url, tmp_path):
    """Run ``python -m flows ARGS`` in a subprocess, as a user would, against the test
    Prefect server; returns the CompletedProcess."""
    workdir = tmp_path / "work"
    workdir.mkdir()

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            binary: bool = False):
        full_env = {
            **os.environ,
            "PREFECT_API_URL": prefect_api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "NEWSARCHIVE_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": str(REPO_ROOT),
            **(env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "flows", *args], cwd=workdir, env=full_env,
            capture_output=True, text=not binary, timeout=timeout, check=False,
        )

    run.workdir = workdir
    return run


def write_sites_file(path: Path, archive_url: str, sites: list[dict]) -> Path:
    """Write a sites.toml (tests build their configs with this, never by string pasting)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = ["[archive]", f"url = {value(archive_url)}", ""]
    for site in sites:
        lines.append("[[sites]]")
        lines += [f"{k} = {value(v)}" for k, v in site.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def crawl_site_subprocess(site_entry: dict, archive_url: str, env: dict, data_dir: Path,
                          run_id: str, *extra: str, timeout: float = 300) -> dict:
    """One crawl subprocess (``python -m spiders.run``), as the crawl flow starts it, without
    Prefect (``extra``: more options); returns the stats report it writes."""
    from spiders.config import SiteConfig

    site = SiteConfig.model_validate(site_entry)
    stats_file = Path(data_dir) / "crawls" / f"{run_id}.json"
    done = subprocess.run(
        [sys.executable, "-m", "spiders.run", "--site-json", site.model_dump_json(),
         "--archive", archive_url, "--run-id", run_id, "--stats-file", str(stats_file),
         "--data-dir", str(data_dir), "--user-agent", "newsarchive-test",
         "--log-level", "WARNING", *extra],
        cwd=REPO_ROOT, env=env, timeout=timeout, capture_output=True, text=True,
    )
    assert done.returncode == 0, f"crawl exited {done.returncode}: {done.stderr[-4000:]}"
    report = json.loads(stats_file.read_text())
    # A bug of ours in a callback or the pipeline must fail the test that meets it.
    bugs = {k: v for k, v in report["stats"].items()
            if k.startswith("spider_exceptions/") or k == "newsarchive/errors/internal"}
    assert not bugs, (bugs, done.stderr[-4000:])
    return report


def local_site_config(site: NewsSite, name: str = "localnews", **overrides) -> dict:
    """A site entry for the local news site, with the benchmark's impolite-but-fast settings.
    The site is on 127.0.0.1, a loopback address, which a crawl refuses unless allowed."""
    return {
        "name": name,
        "allowed_domains": ["127.0.0.1"],
        "allow_private_hosts": ["127.0.0.1"],
        "sitemaps": [f"{site.base_url}/robots.txt"],
        "feeds": [f"{site.base_url}/rss.xml"],
        "download_delay": 0,
        "concurrent_requests": 16,
        "autothrottle": False,
        **overrides,
    }


# -- archives on both backends ------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path):
    """The same archive surface on a local directory and on a fresh moto bucket."""
    if request.param == "local":
        return LocalBackend(tmp_path / "archive")
    s3 = request.getfixturevalue("s3_archive")
    return S3Backend(s3.bucket, s3.prefix)


@pytest.fixture
def archive(backend) -> Archive:
    """An archive over :func:`backend`."""
    return Archive(backend)


@pytest.fixture
def raw_state(backend, request):
    """A callable giving everything physically stored, bypassing the backend under test:
    every file under the local root (temp files included) with its inode and mtime, or
    every object in the bucket with its ETag and LastModified. Equal snapshots mean
    nothing was written, rewritten or left behind."""
    if isinstance(backend, LocalBackend):
        def state() -> dict:
            out = {}
            for dirpath, _dirs, files in os.walk(backend.root):
                for name in files:
                    path = Path(dirpath, name)
                    st = path.stat()
                    out[path.relative_to(backend.root).as_posix()] = (
                        path.read_bytes(), st.st_ino, st.st_mtime_ns)
            return out
    else:
        s3 = request.getfixturevalue("s3_archive")

        def state() -> dict:
            return {key: (s3.get(key), *meta) for key, meta in s3.listing().items()}
    return state
