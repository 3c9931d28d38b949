"""CC-NEWS scan rate: our scanner (FastWARC, the site filter on the WARC headers) against
warcio's plain iteration of the same file, in the same run.

    .venv/bin/python bench/ccnews.py [--size-mb 1024] [--file PATH] [--keep-share 0.005]

Builds (once; kept at ``--file``) a synthetic CC-NEWS-like file of ``--size-mb`` MB of
compressed input: a gzip member per record as CC-NEWS writes them, a request, a response and
a metadata record per capture, the responses being real news pages (the Fundus corpus and,
beside the clone, WCXB's) under target URIs of 2,000 hosts, of which the wanted site holds
``--keep-share`` of the captures. A base block of unique captures is written with warcio,
then repeated up to the size (repeating costs the readers the same as new records).

Then, one after the other on the same file, each on one core (one process):
- ``warcio``: warcio's plain iteration: every record's headers read, nothing filtered, no
  body read (the cheapest pass warcio offers: it still inflates every record to skip it);
- ``warcio+filter``: what a warcio scanner has to do: filter response records on
  ``WARC-Target-URI``, read the kept bodies;
- ``fastwarc``: FastWARC alone over the whole stream (response records only, the filter on
  the WARC headers, kept bodies read): what the library gives, every body still inflated;
- ``ours``: :func:`spiders.ccnews.iter_captures`: a member per record inflated only as far
  as its WARC headers, a left-out record's member skipped, kept records parsed by FastWARC.
Prints MB/s of compressed input per core, records/s, records kept/s, and the ratios against
warcio, plus the peak RSS of the process. With ``--pipeline``, then the whole path of the
kept records too (:class:`spiders.ccnews.Scanner` into a local archive in a temporary
directory: extraction in the pool, dedup, store, WARC, catalog): kept records per second.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import io
import json
import random
import resource
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spiders.ccnews import SiteFilter, _fastwarc_captures, iter_captures  # noqa: E402

SHARED = ROOT.parent / "shared" / "corpus"
WANTED_DOMAIN = "wanted-news.example"


def corpus_pages() -> list[bytes]:
    """Real news pages: the Fundus pages in the repo, and WCXB's beside the clone if there."""
    pages = [gzip.decompress(p.read_bytes())
             for p in sorted((ROOT / "tests" / "data" / "fundus").rglob("*.html.gz"))]
    wcxb = SHARED / "wcxb" / "pages"
    if wcxb.is_dir():
        for path in sorted(wcxb.glob("*.html.gz"))[:700]:
            data = path.read_bytes()
            pages.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    return pages


def build(path: Path, size_mb: int, keep_share: float) -> dict:
    """Write the synthetic file; returns what it holds."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(7)
    pages = corpus_pages()
    hosts = [f"www.news{n}.example" for n in range(2000)]
    block = io.BytesIO()
    writer = WARCWriter(block, gzip=True)
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    captures = kept = 0
    while block.tell() < min(size_mb, 96) * 1_000_000:
        page = rng.choice(pages)
        wanted = rng.random() < keep_share
        host = f"www.{WANTED_DOMAIN}" if wanted else rng.choice(hosts)
        url = f"https://{host}/{rng.randrange(10**9)}/article-{captures}.html"
        when = (start + timedelta(seconds=captures)).strftime("%Y-%m-%dT%H:%M:%SZ")
        writer.write_record(writer.create_warc_record(
            url, "request", payload=io.BytesIO(b""), warc_headers_dict={"WARC-Date": when},
            http_headers=StatusAndHeaders(f"GET {url} HTTP/1.1", [("Accept", "*/*")],
                                          is_http_request=True)))
        writer.write_record(writer.create_warc_record(
            url, "response", payload=io.BytesIO(page), warc_headers_dict={"WARC-Date": when},
            http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                          protocol="HTTP/1.1")))
        writer.write_record(writer.create_warc_record(
            url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 120\r\n"),
            warc_content_type="application/warc-fields", warc_headers_dict={"WARC-Date": when}))
        captures += 1
        kept += wanted
    data = block.getvalue()
    repeats = max(1, round(size_mb * 1_000_000 / len(data)))
    with open(path, "wb") as out:
        for _ in range(repeats):
            out.write(data)
    info = {"captures": captures * repeats, "wanted": kept * repeats,
            "bytes": len(data) * repeats, "size_mb": size_mb, "keep_share": keep_share}
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


def warcio_scan(path: Path, *, filtered: bool) -> Counter:
    """warcio's iteration: every record's headers; with ``filtered``, the kept response
    records' bodies read too (what a warcio scanner has to do)."""
    from warcio.archiveiterator import ArchiveIterator

    wanted = SiteFilter((WANTED_DOMAIN,)).matcher()
    counts: Counter = Counter()
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            counts["records"] += 1
            uri = record.rec_headers.get_header("WARC-Target-URI") or ""
            if filtered and record.rec_type == "response" and wanted(uri):
                record.content_stream().read()
                counts["kept"] += 1
    return counts


def captures_scan(path: Path, *, reader) -> Counter:
    """Our readers (``reader``: :func:`spiders.ccnews.iter_captures`, or FastWARC alone over
    the whole stream) with the site's filter: the kept captures, bodies read."""
    wanted = SiteFilter((WANTED_DOMAIN,)).matcher()
    counts: Counter = Counter()
    with open(path, "rb") as stream:
        for _capture in reader(stream, wanted, counts):
            pass
    return counts


def pipeline(path: Path) -> None:
    """The kept records through the whole path, into a local archive: kept records/s."""
    import tempfile
    from datetime import date

    from spiders.ccnews import Scanner, ScanTarget, Source, WarcFile
    from storage import Archive

    with tempfile.TemporaryDirectory(prefix="ccnews-bench-") as tmp:
        archive = Archive.open(str(Path(tmp) / "archive"), run_id="bench")
        target = ScanTarget("wanted", SiteFilter((WANTED_DOMAIN,)), date(1990, 1, 1),
                            date(2100, 1, 1))
        work = Path(tmp) / "work"
        scanner = Scanner(archive, target, run_id="bench", work_dir=work)
        started = time.perf_counter()
        scan = scanner.scan(Source(str(path.parent)),
                            WarcFile(path.name, datetime(2024, 5, 1, tzinfo=timezone.utc)))
        scanner.close()
        wall = time.perf_counter() - started
    counts = scan.counts
    print(f"  pipeline: {counts['kept']:,} kept records in {wall:.1f} s wall: "
          f"{counts['kept'] / wall:,.1f} kept/s through extraction and storing "
          f"({counts['archived']:,} archived, {counts['duplicates']:,} duplicates, "
          f"{counts['undated']:,} undated, {counts['no_text']:,} without text, "
          f"{counts['errors']:,} errors); {path.stat().st_size / 1e6 / wall:.0f} MB/s of the "
          f"file end to end")


def measure(name: str, scan, path: Path) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    counts = scan(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    size = path.stat().st_size / 1e6
    return {"name": name, "seconds": wall, "cpu": cpu, "mb_per_s": size / cpu,
            "records": counts["records"], "kept": counts["kept"],
            "kept_per_s": counts["kept"] / cpu if counts["kept"] else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--file", type=Path, default=Path("/tmp/newsarchive-ccnews-bench.warc.gz"))
    parser.add_argument("--keep-share", type=float, default=0.005,
                        help="share of captures that are the wanted site's (default 0.005)")
    parser.add_argument("--runs", type=int, default=1, help="passes of each reader (best kept)")
    parser.add_argument("--pipeline", action="store_true",
                        help="then the whole path of the kept records, into a local archive")
    args = parser.parse_args(argv)
    info_file = args.file.with_suffix(".json")
    info = json.loads(info_file.read_text()) if info_file.exists() and args.file.exists() else None
    if not info or info["size_mb"] != args.size_mb or info["keep_share"] != args.keep_share:
        print(f"building {args.file} ({args.size_mb} MB) ...", flush=True)
        started = time.perf_counter()
        info = build(args.file, args.size_mb, args.keep_share)
        print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"file: {args.file}, {args.file.stat().st_size / 1e6:.0f} MB compressed, "
          f"{info['captures']:,} captures (3 records each), {info['wanted']:,} of the wanted site")
    results = []
    for name, scan in (("warcio", functools.partial(warcio_scan, filtered=False)),
                       ("warcio+filter", functools.partial(warcio_scan, filtered=True)),
                       ("fastwarc", functools.partial(captures_scan, reader=_fastwarc_captures)),
                       ("ours", functools.partial(captures_scan, reader=iter_captures))):
        best = min((measure(name, scan, args.file) for _ in range(args.runs)),
                   key=lambda r: r["cpu"])
        results.append(best)
        print(f"  {name:14} {best['mb_per_s']:7.1f} MB/s per core  "
              f"{best['records'] / best['cpu']:9,.0f} records/s  "
              f"{best['kept_per_s']:7,.0f} kept/s  ({best['cpu']:.1f} s CPU, "
              f"{best['seconds']:.1f} s wall, {best['records']:,} records, {best['kept']:,} kept)",
              flush=True)
    base = {r["name"]: r for r in results}
    mine = base["ours"]
    assert mine["kept"] == info["wanted"] == base["warcio+filter"]["kept"], \
        "the readers disagree on the records kept"
    print(f"ours / warcio plain iteration: {mine['mb_per_s'] / base['warcio']['mb_per_s']:.2f}x; "
          f"ours / warcio with the filter: "
          f"{mine['mb_per_s'] / base['warcio+filter']['mb_per_s']:.2f}x; FastWARC alone / "
          f"warcio plain iteration: {base['fastwarc']['mb_per_s'] / base['warcio']['mb_per_s']:.2f}x")
    print(f"peak RSS of the scans: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.pipeline:
        pipeline(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
