"""What a scheduled crawl of a site with nothing new costs, against a baseline tree.

    .venv/bin/python bench/unchanged_crawl.py --baseline-tree /tmp/wt_base [--rounds 5]
        [--pages 3]

Most scheduled runs of a site find nothing new, yet each is a crawl process of its own.
A local site (``tests.newssite``, the first ``--pages`` pages of the test corpus) is crawled
once into a local archive; then, in turn (``--rounds`` times, the two orders alternating),
this tree and the baseline tree crawl it again (``python -m spiders.run``, as ``crawl`` and
``serve`` start it). Each measured crawl fetches robots.txt, the sitemaps and the feed, and
no article. Printed per tree: the median, least and greatest CPU seconds of the crawl's whole
process tree (the crawl, its forkserver and workers when it starts them: this process is a
child subreaper, bench/throughput.py's ``measure``) and wall seconds.

A baseline tree is a worktree with its own ``.venv``: ``git worktree add /tmp/wt_base REV``,
then ``make install`` in it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput import _become_subreaper, measure  # noqa: E402
from spiders.config import SiteConfig  # noqa: E402
from spiders.interface import crawl_command  # noqa: E402
from tests.conftest import local_site_config  # noqa: E402
from tests.newssite import NewsSite, load_corpus  # noqa: E402


def tree_crawl_command(tree: Path, site: SiteConfig, work: Path) -> list[str]:
    """The crawl subprocess's command line, as the flows make it (``crawl_command``), run by
    ``tree``'s own interpreter."""
    command = crawl_command(site, str(work / "archive"), user_agent="newsarchive-bench",
                            log_level="WARNING",
                            options=["--run-id", uuid.uuid4().hex,
                                     "--stats-file", str(work / "stats.json"),
                                     "--data-dir", str(work / "data")])
    return [str(tree / ".venv" / "bin" / "python"), *command[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=3)
    args = parser.parse_args()
    trees = {"newsarchive": ROOT, "baseline": args.baseline_tree.resolve()}
    _become_subreaper()
    work = Path(tempfile.mkdtemp(prefix="unchanged-crawl-"))
    # Both trees read the language model from the same cache (README, "Configuration").
    env = {**os.environ, "XDG_CACHE_HOME": str(ROOT / ".newsarchive" / "cache")}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    wall: dict[str, list[float]] = {name: [] for name in trees}
    with NewsSite(load_corpus()[:args.pages]) as site:
        config = SiteConfig.model_validate(local_site_config(site))
        first = measure("first", tree_crawl_command(ROOT, config, work), env, ROOT, set(),
                        work / "first.log")
        if first.returncode:
            sys.exit(f"the first crawl failed; see {work / 'first.log'}")
        for turn in range(args.rounds):
            order = list(trees.items()) if turn % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                log = work / f"{name}-{turn}.log"
                run = measure(name, tree_crawl_command(tree, config, work), env, tree, set(), log)
                if run.returncode:
                    sys.exit(f"a {name} crawl failed; see {log}")
                cpu[name].append(run.cpu)
                wall[name].append(run.wall)
    print(f"a crawl that finds nothing new ({args.pages}-page site, {args.rounds} rounds, "
          f"in turn; baseline {trees['baseline']})")
    for name in trees:
        print(f"  {name:12s} CPU s median {statistics.median(cpu[name]):.2f} "
              f"(least {min(cpu[name]):.2f}, most {max(cpu[name]):.2f}); "
              f"wall s median {statistics.median(wall[name]):.2f}")


if __name__ == "__main__":
    main()
