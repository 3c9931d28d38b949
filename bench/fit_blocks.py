"""Fit the block model (normalize/block_model.py) and report its cross-validated scores.

    .venv/bin/python bench/fit_blocks.py [--limit N] [--threshold T] [--write]

Runs our extraction over both development corpora (Fundus and WCXB, see bench/extraction.py)
with the block model off, and collects the candidates of ``normalize.blocks`` (text blocks of
the pruned page that the text does not hold) with their features. A candidate is content
when at least half of its word 4-grams are in the page's reference text; it weighs as many
words as it has (the scores are over words).

The model is a small gradient-boosted ensemble of depth-3 trees on binned features, fitted
here with numpy (no dependency beyond the extraction's own), on both corpora together:
nothing fitted to one corpus only. The report gives, per threshold, the text scores when
the candidates scored at or above it are put back: held out by domain (5 folds over the
sites of both corpora: a site's pages are never both fitted and tested), and across corpora
(fitted on WCXB and tested on Fundus, and the other way round). ``--write`` writes the model
fitted on all pages, with ``--threshold``, into normalize/block_model.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.extraction import (  # noqa: E402
    FUNDUS,
    WCXB,
    fundus_text,
    load_fundus,
    load_wcxb,
    shingle_scores,
    shingles,
    snippet_rate,
    word_scores,
    words,
)
from normalize import blocks, extract_article  # noqa: E402

FOLDS = 5
THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)
# The ensemble: rounds of depth-3 trees, shrunk by the learning rate; leaves need this much
# (word) weight; features cut into this many quantile bins.
ROUNDS, DEPTH, RATE, MIN_WEIGHT, L2, BINS = 100, 3, 0.1, 50.0, 1.0, 32


def collect(kind: str, pages, domains: dict[str, str]) -> list[dict]:
    """Per page: the text without the model, the candidates, their labels and weights."""
    seen: dict = {}

    def record(tree, text, article_body, keep=lambda line: True):
        seen["candidates"] = blocks.candidates(blocks.text_blocks(tree), text, article_body, keep)
        return text

    blocks.recover_blocks = record  # what normalize.text calls, read at each call
    out = []
    for page in pages:
        seen.clear()
        article = extract_article(gzip.decompress(page.html), page.url, detect_language=False)
        truth = fundus_text(page.truth) if kind == "fundus" else page.truth.get("main_content") or ""
        reference = shingles(truth)
        found = seen.get("candidates", [])
        labels, weights = [], []
        for c in found:
            mine = shingles(c.block.text)
            labels.append(float(len(mine & reference) >= 0.5 * len(mine)))
            weights.append(float(len(words(c.block.text))))
        out.append({
            "kind": kind, "id": page.id, "domain": domains.get(page.id) or urlsplit(page.url).hostname,
            "text": article.text, "truth": truth, "with": page.truth.get("with"),
            "without": page.truth.get("without"), "candidates": found,
            "X": np.array([c.vector for c in found], float).reshape(-1, len(blocks.FEATURES)),
            "y": np.array(labels), "w": np.array(weights),
        })
    return out


# The ensemble

def fit(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, list]:
    """Gradient boosting of the logistic loss; trees as nested tuples
    ``(feature, threshold, left if x < threshold, right)`` with float leaves."""
    edges = [np.unique(np.quantile(X[:, j], np.linspace(0, 1, BINS + 1)[1:-1])) for j in range(X.shape[1])]
    binned = np.stack([np.searchsorted(e, X[:, j], side="right") for j, e in enumerate(edges)], 1)
    prior = min(max(float(np.average(y, weights=w)), 1e-3), 1 - 1e-3)
    base = float(np.log(prior / (1 - prior)))
    margin = np.full(len(y), base)
    trees = []
    for _ in range(ROUNDS):
        p = 1 / (1 + np.exp(-margin))
        tree = _grow(np.arange(len(y)), 0, w * (p - y), w * p * (1 - p), binned, edges)
        trees.append(tree)
        margin += np.array([_leaf(tree, x) for x in X])
    return base, trees


def _grow(rows: np.ndarray, depth: int, g: np.ndarray, h: np.ndarray, binned: np.ndarray,
          edges: list[np.ndarray]):
    """One (sub)tree over ``rows``, from the loss' gradients ``g`` and hessians ``h``: the
    split of most gain, until ``DEPTH`` or too little weight."""
    G, H = g[rows].sum(), h[rows].sum()
    leaf = float(-G / (H + L2) * RATE)
    if depth == DEPTH or H < 2 * MIN_WEIGHT:
        return leaf
    best, parent = (0.0, None, None), G * G / (H + L2)
    for j in range(binned.shape[1]):
        gs = np.cumsum(np.bincount(binned[rows, j], weights=g[rows], minlength=BINS + 1))[:-1]
        hs = np.cumsum(np.bincount(binned[rows, j], weights=h[rows], minlength=BINS + 1))[:-1]
        ok = (hs >= MIN_WEIGHT) & (H - hs >= MIN_WEIGHT)
        if not ok.any():
            continue
        gain = np.where(ok, gs ** 2 / (hs + L2) + (G - gs) ** 2 / (H - hs + L2) - parent, -1.0)
        k = int(np.argmax(gain))
        if gain[k] > best[0] and k < len(edges[j]):
            best = (gain[k], j, k)
    if best[1] is None:
        return leaf
    _, j, k = best
    go_left = binned[rows, j] <= k
    return (j, float(edges[j][k]), _grow(rows[go_left], depth + 1, g, h, binned, edges),
            _grow(rows[~go_left], depth + 1, g, h, binned, edges))


def _leaf(tree, x) -> float:
    while isinstance(tree, tuple):
        tree = tree[2] if x[tree[0]] < tree[1] else tree[3]
    return tree


def predict(model: tuple[float, list], X: np.ndarray) -> np.ndarray:
    base, trees = model
    return np.array([1 / (1 + np.exp(-(base + sum(_leaf(t, x) for t in trees)))) for x in X])


def stacked(pages: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.vstack([p["X"] for p in pages]), np.concatenate([p["y"] for p in pages]),
            np.concatenate([p["w"] for p in pages]))


# Scores

def scores(pages: list[dict], threshold: float | None) -> dict[str, float]:
    """The corpus' text scores with the candidates scored at or above ``threshold`` put back
    (None: the text as it is), from each page's held-out ``scored``."""
    p_sum = r_sum = 0.0
    with_, without = [], []
    for page in pages:
        text = page["text"]
        if threshold is not None and len(page["candidates"]):
            text = blocks.insert(text, [c for c, s in zip(page["candidates"], page["scored"])
                                        if s >= threshold])
        s = (shingle_scores if page["kind"] == "fundus" else word_scores)(text, page["truth"])
        p_sum, r_sum = p_sum + s["precision"], r_sum + s["recall"]
        for rates, key in ((with_, "with"), (without, "without")):
            rate = snippet_rate(text, page[key] or [])
            if rate is not None:
                rates.append(rate)
    p, r = p_sum / len(pages), r_sum / len(pages)
    out = {"f1": 2 * p * r / (p + r) if p + r else 0.0, "precision": p, "recall": r}
    if with_:
        out.update(with_=sum(with_) / len(with_), without=sum(without) / len(without))
    return out


def report(title: str, pages: list[dict]) -> None:
    print(f"\n{title} ({len(pages)} pages)")
    rows = [("as is", scores(pages, None))] + [(f">= {t}", scores(pages, t)) for t in THRESHOLDS]
    columns = list(rows[0][1])
    print(f"{'':>10}" + "".join(f"{c.rstrip('_'):>11}" for c in columns))
    for name, row in rows:
        print(f"{name:>10}" + "".join(f"{row[c]:>11.4f}" for c in columns))


def score_with(model, pages: list[dict]) -> None:
    for page in pages:
        page["scored"] = predict(model, page["X"]) if len(page["y"]) else np.array([])


def write_model(model: tuple[float, list], threshold: float, n: int) -> None:
    base, trees = model
    path = ROOT / "normalize" / "block_model.py"
    path.write_text(
        '"""The block model\'s trees: written by bench/fit_blocks.py (do not edit), fitted on\n'
        f"{n} candidate blocks of the development corpora (Fundus and WCXB). A tree is\n"
        "``(feature, threshold, subtree if feature < threshold, subtree otherwise)``, a leaf a\n"
        'float; a candidate\'s log-odds are BASE plus its leaf in each tree (normalize.blocks)."""\n\n'
        f"FEATURES = {blocks.FEATURES!r}\n"
        f"BASE = {base!r}\n"
        f"THRESHOLD = {threshold!r}\n"
        "TREES = (\n" + "".join(f"    {t!r},\n" for t in trees) + ")\n")
    print(f"\nwrote {path} ({len(trees)} trees, threshold {threshold})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--wcxb-dir", type=Path, default=WCXB)
    parser.add_argument("--threshold", type=float, default=0.75)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    index = json.loads((args.wcxb_dir / "index.json").read_text())
    domains = {e["id"]: e["domain"] for e in index}
    fundus = collect("fundus", load_fundus(FUNDUS, args.limit), {})
    wcxb = collect("wcxb", load_wcxb(args.wcxb_dir, args.limit), domains)
    pages = fundus + wcxb
    n = sum(len(p["y"]) for p in pages)
    print(f"{n} candidates; content: {sum(float(p['y'] @ p['w']) for p in pages):.0f} of "
          f"{sum(float(p['w'].sum()) for p in pages):.0f} words")
    folds = [zlib.crc32(p["domain"].encode()) % FOLDS for p in pages]
    for fold in range(FOLDS):
        score_with(fit(*stacked([p for p, f in zip(pages, folds) if f != fold])),
                   [p for p, f in zip(pages, folds) if f == fold])
    report("Held out by domain, 5 folds over both corpora: Fundus", fundus)
    report("Held out by domain, 5 folds over both corpora: WCXB", wcxb)
    score_with(fit(*stacked(wcxb)), fundus)
    report("Fitted on WCXB, tested on Fundus", fundus)
    score_with(fit(*stacked(fundus)), wcxb)
    report("Fitted on Fundus, tested on WCXB", wcxb)
    if args.write:
        write_model(fit(*stacked(pages)), args.threshold, n)


if __name__ == "__main__":
    main()
