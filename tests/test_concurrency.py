"""Dedup that holds across processes: crawls started at the same moment into one bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT, local_site_config, write_sites_file


def test_two_simultaneous_crawls_archive_every_article_once(news_site, s3_archive,
                                                          prefect_api_url, tmp_path):
    config = write_sites_file(tmp_path / "sites.toml", s3_archive.url, [local_site_config(news_site)])
    env = {**os.environ, **s3_archive.env, "PREFECT_API_URL": prefect_api_url,
           "PYTHONPATH": str(REPO_ROOT)}
    crawls = [
        subprocess.Popen([sys.executable, "-m", "flows", "crawl", "--config", str(config)],
                         cwd=tmp_path, env={**env, "NEWSARCHIVE_DATA_DIR": str(tmp_path / f"d{i}")},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [crawl.communicate(timeout=600) for crawl in crawls]
    for crawl, (_, err) in zip(crawls, outputs):
        assert crawl.returncode == 0, err[-3000:]

    keys = s3_archive.listing()
    metas = [k for k in keys if k.endswith("/meta.json")]
    records = [json.loads(s3_archive.get(k)) for k in metas]
    assert len(records) == len(news_site.pages)
    assert len({r["canonical_url"] for r in records}) == len(records)
    # No article has a second folder: every object sits in a folder that has a record.
    folders = {k.rsplit("/", 1)[0] for k in metas}
    article_objects = [k for k in keys if "/articles/" in f"/{k}"]
    assert {k.rsplit("/", 1)[0] for k in article_objects} == folders
    assert len(article_objects) == 3 * len(records)

    # Between them the two crawls archived each article once; the rest were duplicates
    # or skipped before fetching.
    archived = sum(int(line.split()[5]) for out, _ in outputs
                   for line in out.splitlines() if line.startswith("localnews"))
    assert archived == len(news_site.pages)
