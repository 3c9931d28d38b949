"""The repository's promises: docs, config, CLI and packaging agree with each other and
with docs/ARCHITECTURE.md, the design the code is built to. (No Docker engine runs here, so the Dockerfile is checked
by reading it against the tree.)"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tomllib
from datetime import date
from pathlib import Path

import pytest

from flows.cli import build_parser
from spiders.config import SiteConfig
from storage import RECORD_FIELDS, article_keys

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def architecture() -> str:
    return ARCHITECTURE.read_text(encoding="utf-8")


def _architecture_site_keys(text: str) -> set[str]:
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    return set(tomllib.loads(block)["sites"][0])


# Site keys the issues ask for (discovery depth, per-site limits) beyond the example in
# ARCHITECTURE.md, which stays the contract for the keys it names.
SITE_KEYS_BEYOND_THE_CONTRACT = {"follow_depth", "max_link_pages", "download_timeout",
                                 "max_page_bytes",
                                 "extract_timeout",  # issue 10: a time bound per page
                                 # issue 9: reach and limits
                                 "allow_private_hosts", "max_sitemap_bytes",
                                 "max_sitemap_depth", "max_redirects",
                                 "full_read_every_days",
                                 # issue 22: the page as it looked
                                 "screenshot", "screenshot_timeout"}


def test_site_keys_match_the_architecture_and_the_readme(architecture):
    ours = set(SiteConfig.model_fields)
    assert ours - SITE_KEYS_BEYOND_THE_CONTRACT == _architecture_site_keys(architecture)
    for key in ours:
        assert f"| `{key}` |" in README, f"README does not document site key {key}"


def test_record_fields_cover_the_contract_and_are_documented(architecture):
    paragraph = architecture[architecture.index("A record (`meta.json`"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    contract = set(re.findall(r"`([a-z_0-9]+)`", paragraph)) - {"meta", "json", "ls"}
    assert contract <= set(RECORD_FIELDS), contract - set(RECORD_FIELDS)
    for name in RECORD_FIELDS:
        assert f"`{name}`" in README, f"README does not document record field {name}"


# Commands an issue asks for that ARCHITECTURE.md's command table does not list (yet).
COMMANDS_BEYOND_THE_CONTRACT = {"reprocess",  # issue 5
                                "deploy",  # issue 7: scale-out on a Prefect work pool
                                "search", "stats",  # issue 8: browse the archive
                                "compact"}  # issue 20: a catalog that stays small


def test_cli_commands_are_the_documented_ones(architecture):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert f"`newsarchive {name}" in README
        if name not in COMMANDS_BEYOND_THE_CONTRACT:
            assert f"`newsarchive {name}" in architecture, f"{name} is not in the contract"
        options = {opt for a in commands[name]._actions for opt in a.option_strings}
        assert {"--config", "--archive"} <= options, name
    readme_commands = set(re.findall(r"^\| `newsarchive (\w+)", README, re.M))
    assert readme_commands == set(commands)


def test_archive_layout_matches_the_contract(architecture):
    keys = article_keys("site", date(2024, 5, 3), "0" * 24)
    assert keys.raw == "articles/site/2024/05/03/" + "0" * 24 + "/raw.html.gz"
    for line in ("articles/<site>/<YYYY>/<MM>/<DD>/<id>/raw.html.gz", "/text.txt", "/meta.json"):
        assert line in architecture and line in README


def test_run_manifest_keys_follow_the_documented_layout(architecture):
    """``runs/`` keys are what the README's "Archive layout" and ARCHITECTURE.md's contract
    say they are: the layout line of each, read from the text, filled in, is the key the
    code makes."""
    from storage.keys import run_manifest_key

    for text, heading in ((README, "## Archive layout"),
                          (architecture, "## Contract: the archive")):
        layout = re.search(r"```\n(.*?)```", text[text.index(heading):], re.S).group(1)
        (documented,) = re.findall(r"^(runs/\S+)", layout, re.M)
        assert documented == "runs/<site>/<YYYY>/<MM>/<DD>/<run_id>.json"
        filled = (documented.replace("<site>", "lemonde").replace("<YYYY>", "2024")
                  .replace("<MM>", "05").replace("<DD>", "07").replace("<run_id>", "run-1"))
        assert run_manifest_key("lemonde", date(2024, 5, 7), "run-1") == filled


def test_example_sites_file_names_the_globe_and_mail():
    sites = tomllib.loads((ROOT / "sites.toml").read_text(encoding="utf-8"))["sites"]
    assert any("theglobeandmail.com" in s["allowed_domains"] for s in sites)
    assert len(sites) >= 2


def _locked(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\\n]+)", path.read_text(), re.M))


def test_lock_files_pin_every_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime, dev = _locked(ROOT / "requirements.lock"), _locked(ROOT / "requirements-dev.lock")

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    for requirement in project["project"]["dependencies"]:
        assert name(requirement) in {k.lower() for k in runtime}, requirement
    for requirement in project["dependency-groups"]["dev"]:
        assert name(requirement) in {k.lower() for k in dev}, requirement
    # The image and the dev environment run the same versions.
    assert {k: v for k, v in dev.items() if k in runtime} == runtime
    for lock in ("requirements.lock", "requirements-dev.lock"):
        blocks = re.split(r"\n(?=[A-Za-z])", (ROOT / lock).read_text())
        requirements = [b for b in blocks if re.match(r"[A-Za-z]", b)]
        assert requirements
        for block in requirements:
            assert re.match(r"[A-Za-z0-9_.-]+==\S", block), block.splitlines()[0]
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_dockerfile_installs_the_locked_project_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies missing {item}"
    for package in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), package
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    entrypoint = re.search(r'^ENTRYPOINT \["(\S+)"\]', dockerfile, re.M).group(1)
    assert entrypoint in project["project"]["scripts"]
    assert "HEALTHCHECK" in dockerfile


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("install:", "lint: install", "test: lint", "run: install"):
        assert target in makefile


def test_install_makes_the_venv_with_the_systems_python_when_it_is_the_same_version(tmp_path):
    """`make install` prefers the system's Python (a distribution's optimised build) for
    .venv, but only when it is the version of ``$(PYTHON)``; else ``$(PYTHON)`` itself."""
    def venv_python(system_python: Path) -> str:
        # A make that runs this test passes its command-line variables down, in MAKEFLAGS
        # and in the environment (`make test VENV_PYTHON=...`): none of them here.
        env = {k: v for k, v in os.environ.items() if k not in (
            "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHON", "VENV_PYTHON", "SYSTEM_PYTHON", "VENV")}
        shown = subprocess.run(
            ["make", "-n", "install", "PYTHON=python3", f"VENV={tmp_path / 'venv'}",
             f"SYSTEM_PYTHON={system_python}"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60).stdout
        return re.search(r"uv venv .*--python (\S+) ", shown).group(1)

    def script(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    same = script("same-version", 'exec python3 "$@"')
    other = script("other-version", "echo '(3, 99)'")
    assert venv_python(same) == str(same)
    assert venv_python(other) == "python3"
    assert venv_python(tmp_path / "missing") == "python3"


def test_compose_runs_s3_a_prefect_server_serve_and_browse():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"s3", "prefect-server", "serve", "browse"} <= set(services)
    serve = services["serve"]
    assert serve["command"] == ["serve"] and serve["build"] == "."
    env = serve["environment"]
    # serve talks to the compose Prefect server and archives into the S3 server's bucket
    # (tests/test_compose.py checks the rest of the file, and runs the bucket's creation).
    server_port = services["prefect-server"]["entrypoint"][-1]
    assert env["PREFECT_API_URL"] == f"http://prefect-server:{server_port}/api"
    s3_port = services["s3"]["command"][services["s3"]["command"].index("--port") + 1]
    assert env["AWS_ENDPOINT_URL"] == f"http://s3{s3_port}"
    assert env["NEWSARCHIVE_ARCHIVE_URL"].startswith("s3://news/")
    assert 'Bucket="news"' in services["create-bucket"]["command"][0]
    assert set(serve["depends_on"]) == {"create-bucket", "prefect-server"}
    # docker stop's SIGKILL must not come before serve's SIGTERM grace (60 s) is over.
    grace = serve["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 60, grace
    # Every service built from this repo runs the image's non-root user; none runs privileged.
    assert not any(s.get("privileged") or s.get("user") in ("root", "0") for s in services.values())
    # Ports are published on loopback only.
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_the_suite_reads_nothing_beside_the_repository():
    """A user's clone has nothing beside it: no test, fixture, Makefile rule or CI step may
    reach outside the repository (the development corpora's folder beside it, or any parent
    of the repository's root)."""
    # The folder beside the working copy that a user's clone lacks; spelled in two parts so
    # that this file, which only looks for the name, is not itself found by a search for it.
    beside = "sha" + "red"
    outside = re.compile(rf"\.\./{beside}|[\"']{beside}[\"']|parents\[[2-9]\]|ROOT\.parent"
                         r"|REPO_ROOT\.parent")
    this_file = Path(__file__).resolve()  # it names the pattern it looks for
    files = [*(p for p in sorted((ROOT / "tests").rglob("*.py")) if p != this_file),
             ROOT / "Makefile", ROOT / ".ci" / "run"]
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in files
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if outside.search(line)]
    assert not offenders, offenders
    # What the tests read instead: the corpus, its licence and the sample article.
    for path in ("fundus/index.json", "fundus/LICENSE", "sample-article.txt", "README.md"):
        assert (ROOT / "tests" / "data" / path).is_file(), path


@pytest.mark.parametrize("bench", sorted(p.stem for p in (ROOT / "bench").glob("*.py")
                                         if p.stem != "__init__"))
def test_every_benchmark_imports(bench):
    """Benchmarks run by hand, not by the suite: a name one of them imports from another
    (or from the project) that a change renamed would otherwise go unnoticed until then."""
    importlib.import_module(f"bench.{bench}")
