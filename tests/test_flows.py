"""The crawl flow on a real Prefect server: each run publishes its summary as a Prefect
markdown artifact."""

from __future__ import annotations

from prefect.client.orchestration import get_client

from tests.conftest import local_site_config, write_sites_file
from tests.newssite import NewsSite


def test_a_crawl_run_publishes_its_summary_as_an_artifact(corpus, run_cli, tmp_path):
    with NewsSite(corpus[:3], feed_size=0) as site:
        config = write_sites_file(tmp_path / "sites.toml", str(tmp_path / "archive"),
                                  [local_site_config(site, name="artefacts", feeds=[])])
        done = run_cli("crawl", "--config", str(config))
        assert done.returncode == 0, done.stderr[-3000:]

    with get_client(sync_client=True) as client:
        artifacts = [a for a in client.read_artifacts() if a.key and a.key.startswith("crawl-")
                     and "| artefacts |" in (a.data or "")]
    assert len(artifacts) == 1, [a.key for a in artifacts]
    (artifact,) = artifacts
    assert artifact.type == "markdown"
    rows = [line for line in artifact.data.splitlines() if line.startswith("| artefacts |")]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    header = [c.strip() for c in artifact.data.splitlines()[2].strip("|").split("|")]
    row = dict(zip(header, cells))
    assert row["status"] == "ok"
    assert row["archived"] == "3" and row["fetched"] == "3" and row["errors"] == "0"
