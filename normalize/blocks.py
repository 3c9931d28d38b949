"""The block model: text blocks of the page that the extraction left out, put back when a
small learned model calls them content with high confidence.

trafilatura skips blocks inside an article that its rules do not take for paragraphs (a
``<div>`` of text, list items with bold labels, a subheading in a ``<span>``). After
extraction, every text block of the (pruned) tree that the text does not hold is a
candidate, described by what it is in the page: its link share and tag, its depth against
that of the story's paragraphs, whether it sits in the container holding most of the story
text or beside the blocks the text took, before or after the headline, the class and id
words of its ancestors (Mozilla readability's general lists), its agreement with the
JSON-LD ``articleBody``; and by its length and punctuation. ``normalize.block_model`` (fitted
by ``bench/fit_blocks.py`` on the development corpora, split by domain; see there) scores
it, and the candidates it is sure of go back into the text, in document order. Pure.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

import lxml.etree
from lxml.html import HtmlElement

from normalize import block_model

# The survey's definitions (normalize.text imports this module only when it first extracts).
from normalize.text import (
    _BODY_FILTER_MIN_WORDS,
    _NO_TEXT_TAGS,
    _STORY_BLOCK_LINK_SHARE,
    _STORY_BLOCK_MIN_CHARS,
    _TEXT_BLOCK_TAGS,
    _WORDS,
    _same_article,
)
from normalize.text import _word_shingles as _shingles

# Text blocks, and text no reader sees as text, as the extraction's survey knows them
# (captions are blocks here, for their place among the blocks, though never candidates).
_BLOCK = _TEXT_BLOCK_TAGS
_NO_TEXT = _NO_TEXT_TAGS - {"figcaption"}
# Elements whose blocks are never candidates, by what HTML says they are (navigation, a
# page's or section's footer, a dialog over the page): their subtrees are not walked.
_SKIPPED = _NO_TEXT | {"nav", "footer", "dialog"}
# The same by ARIA: a dialog (a cookie banner, a sign-up or login box) stands over the page,
# not in it, however much text it holds.
_DIALOG_ROLES = frozenset(("dialog", "alertdialog"))
# Mozilla readability's class and id words: its "positive" list, and its "negative" and
# "unlikely candidate" lists together. General by design, not fitted to any corpus.
# Matched against lowercased names (a case-sensitive pattern is faster).
_POSITIVE = re.compile(r"article|body|content|entry|hentry|h-entry|main|page|post|text|blog|story")
_NEGATIVE = re.compile(
    r"-ad-|hidden|banner|combx|comment|com-|contact|foot|footnote|gdpr|masthead|media|meta|"
    r"outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|sponsor|shopping|tags|"
    r"tool|widget|breadcrumb|community|disqus|extra|header|menu|nav|pagination|pager|popup|"
    r"social|supplemental|rss|remark|replies")
# How far up (in block-level ancestors) a class word still counts.
_NEAR = 6
# Blocks shorter than this are neither candidates nor looked for in the text (a label, a
# menu entry: found anywhere, they would say nothing).
_MIN_CHARS = 15
# Candidates have at least this many words, and at least this share of their word 4-grams
# not in the text already (a block the text holds in other words, or split, is no candidate).
_MIN_WORDS = 4
_MIN_NOVEL = 0.5
# Each block is looked for in the text (a search in C, linear in the text): pages whose
# blocks times text characters exceed this are left as they are, so that the step stays
# bounded on hostile pages. The development corpora's largest page comes to 32 million.
_MAX_SEARCH = 100_000_000
# The JSON-LD articleBody is compared with only when it is this long.
_MIN_BODY_CHARS = 200
_SENTENCE_END = tuple('.!?"”»)…:;')

FEATURES = (
    # what the block is in the page
    "link_share", "tag_p", "tag_li", "tag_h", "tag_td", "tag_div", "depth_off", "in_main",
    "main_up", "before_h1", "negative_nearer", "negative_near", "positive_near", "own_negative",
    "log_chars",
    # where it stands against what the text took
    "shares_parent", "shares_grandparent", "in_range", "previous_taken", "next_taken",
    "log_distance", "position", "log_words", "ends_sentence", "novel", "in_body", "has_body",
    "log_text_words",
)
"""The features of a candidate, in the order of its vector (the model's inputs)."""


class Block(NamedTuple):
    """One text block of the tree, in document order. (A named tuple, not a frozen
    dataclass: a page has thousands, and a dataclass' frozen __init__ costs five times as
    much.)"""

    text: str
    """The text it shows itself (not that of nested blocks), whitespace collapsed."""
    tag: str
    """Its element's tag."""
    parent: int
    """The number of its nearest block-level ancestor (-1 for none)."""
    grandparent: int
    """The number of the block-level ancestor above that (-1 for none)."""
    features: tuple[float, ...]
    """The first 15 of ``FEATURES``."""


@dataclass(frozen=True)
class Candidate:
    """A block the text does not hold, with its features and where it would go."""

    block: Block
    """The block."""
    after_line: int
    """The index of the text's line it would follow (-1: before the first)."""
    vector: list[float]
    """Its ``FEATURES``."""


def text_blocks(tree: HtmlElement) -> list[Block]:
    """The text blocks of ``tree`` of at least ``_MIN_CHARS`` characters, in document order,
    in one walk.

    A Python step per element and per end of one: plain lists and tuples, the verdicts on
    class and id names cached, and the subtrees of elements without text skipped."""
    tags: list[str] = []
    parts: list[list[str]] = []
    links: list[int] = []
    depths: list[int] = []
    numbers: list[int] = []
    chains: list[tuple[int, ...]] = []
    negatives: list[int] = []
    positives: list[int] = []
    own_negatives: list[bool] = []
    # Per open element: (its block, inside a link, block depth, block numbers of the
    # block-level ancestors, block steps to the nearest negative / positive class word).
    stack: list[tuple] = [(-1, False, 0, (), 99, 99)]
    headline_at = None
    count = 0
    block_tags, no_text_tags = _BLOCK, _SKIPPED
    walk = lxml.etree.iterwalk(tree, events=("start", "end"))
    for event, el in walk:
        if event == "end":
            stack.pop()
            tail = el.tail
            if tail and not tail.isspace():
                entry = stack[-1]
                block = entry[0]
                if block >= 0:
                    parts[block].append(tail)
                    if entry[1]:
                        links[block] += len(tail.strip())
            continue
        number = count
        count += 1
        entry = stack[-1]
        tag = el.tag
        get = el.get
        if tag.__class__ is not str or tag in no_text_tags or (  # comments, scripts, ...
                get("role") in _DIALOG_ROLES or get("aria-modal") == "true"):
            stack.append(entry)
            walk.skip_subtree()
            continue
        block, link, depth, chain, negative, positive = entry
        own_negative = changed = False
        for name in (get("class"), get("id")):
            if name:
                is_negative, is_positive = _names_verdict(name)
                if is_negative:
                    negative = 0
                    own_negative = changed = True
                if is_positive:
                    positive = 0
                    changed = True
        if tag in block_tags:
            if tag == "h1" and headline_at is None:
                headline_at = number
            chain = chain + (number,)
            depth += 1
            block = len(tags)
            tags.append(tag)
            parts.append([])
            links.append(0)
            depths.append(depth)
            numbers.append(number)
            chains.append(chain)
            negatives.append(negative)
            positives.append(positive)
            own_negatives.append(own_negative)
            negative, positive = negative + 1, positive + 1
            changed = True
        elif tag == "a" and not link:
            link = changed = True
        text = el.text
        if text and block >= 0 and not text.isspace():
            parts[block].append(text)
            if link:
                links[block] += len(text.strip())
        # An inline element that changes nothing shares its parent's entry.
        stack.append((block, link, depth, chain, negative, positive) if changed else entry)
    texts = [" ".join("".join(p).split()) if p else "" for p in parts]
    # The story's container: the block whose child blocks hold the most story text; and the
    # depth at which the story's text stands (weighted median).
    weight: dict[int, int] = {}
    story_depths: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        size = len(text)
        if size >= _STORY_BLOCK_MIN_CHARS and links[i] <= _STORY_BLOCK_LINK_SHARE * size and len(chains[i]) > 1:
            weight[chains[i][-2]] = weight.get(chains[i][-2], 0) + size
            story_depths.append((depths[i], size))
    main = max(weight, key=weight.__getitem__) if weight else None
    main_chain = set(chains[numbers.index(main)]) if main is not None else set()
    main_depth = _weighted_median(story_depths)
    blocks = []
    for i, text in enumerate(texts):
        if len(text) < _MIN_CHARS:
            continue
        chain = chains[i]
        if main is not None and main in main_chain and main in chain:
            in_main, up = 1.0, 0.0
        else:  # steps up from the block to an ancestor of the story's container
            in_main, up = 0.0, 8.0
            for j in range(len(chain) - 1, -1, -1):
                if chain[j] in main_chain:
                    up = float(min(8, len(chain) - 1 - j))
                    break
        tag = tags[i]
        features = (
            min(1.0, links[i] / len(text)),
            float(tag == "p"), float(tag in ("li", "dd", "dt")),
            float(tag[0] == "h" and tag[1:].isdigit()), float(tag in ("td", "th", "tr")),
            float(tag in ("div", "section")),
            min(6.0, abs(depths[i] - main_depth)), in_main, up,
            float(headline_at is not None and numbers[i] < headline_at),
            float(negatives[i] < positives[i]), float(negatives[i] <= _NEAR),
            float(positives[i] <= _NEAR), float(own_negatives[i]), math.log1p(len(text)),
        )
        blocks.append(Block(text, tag, chain[-2] if len(chain) > 1 else -1,
                            chain[-3] if len(chain) > 2 else -1, features))
    return blocks


# A site's pages share their templates' class names: a crawl of one site finds most of them
# here (as normalize.text._names_boilerplate).
@functools.lru_cache(maxsize=1 << 14)
def _names_verdict(name: str) -> tuple[bool, bool]:
    """Whether a class or id holds one of readability's negative words, and one of its
    positive words."""
    name = name.lower()
    return _NEGATIVE.search(name) is not None, _POSITIVE.search(name) is not None


def _weighted_median(pairs: list[tuple[int, int]]) -> int:
    if not pairs:
        return 0
    pairs = sorted(pairs)
    half = sum(w for _, w in pairs) / 2
    running = 0
    for value, w in pairs:
        running += w
        if running >= half:
            return value
    return pairs[-1][0]


def _squash(text: str) -> str:
    return "".join(text.split()).casefold()


def candidates(blocks: list[Block], text: str, article_body: str | None,
               keep=lambda line: True) -> list[Candidate]:
    """The blocks that ``text`` does not hold, as candidates; ``keep`` tells the lines the
    text's own filters would keep (a candidate they would drop is none)."""
    # The text squashed line by line, and where each line starts in it, to place the blocks
    # the text holds.
    squashed_lines = [_squash(line) for line in text.split("\n")]
    starts, at = [], 0
    for line in squashed_lines:
        starts.append(at)
        at += len(line)
    squashed = "".join(squashed_lines)
    find = squashed.find
    taken_line = []  # per block: the line holding it, or -1
    for b in blocks:
        # A block's text has single spaces for whitespace (text_blocks): squashed the cheap way.
        found = find(b.text.replace(" ", "").casefold())
        taken_line.append(-1 if found < 0 else _line_of(starts, found))
    taken = [i for i, line in enumerate(taken_line) if line >= 0]
    if not taken:
        return []
    first, last = taken[0], taken[-1]
    parents = {blocks[i].parent for i in taken}
    grandparents = {blocks[i].grandparent for i in taken}
    text_words = _WORDS.findall(text.lower())
    text_shingles = _shingles(text_words)
    body = (_shingles(_WORDS.findall(article_body.lower()))
            if article_body and len(article_body) >= _MIN_BODY_CHARS else None)
    # The text dropped its lines that an agreeing articleBody lacks, but for short ones
    # (normalize.text._agree_with_article_body): no such candidate goes back either.
    body_agrees = body is not None and _same_article(body, text_shingles)
    found: list[Candidate] = []
    previous = -1  # the index of the last block taken, walking in document order
    next_pos = 0  # index into ``taken`` of the next taken block
    for i, b in enumerate(blocks):
        if taken_line[i] >= 0:
            previous = i
            next_pos += 1
            continue
        # The headline is the record's title, not its text; a picture's caption is left out
        # of the text (README, "What the text keeps"), however much it reads like a paragraph.
        if b.tag == "h1" or b.tag == "figcaption":
            continue
        words = _WORDS.findall(b.text.lower())
        if len(words) < _MIN_WORDS:
            continue
        shingles = _shingles(words)
        novel = len(shingles - text_shingles) / len(shingles)
        if novel <= _MIN_NOVEL or not keep(b.text):
            continue
        following = taken[next_pos] if next_pos < len(taken) else None
        distance = min(i - previous if previous >= 0 else 999,
                       following - i if following is not None else 999)
        in_body = len(shingles & body) / len(shingles) if body is not None else 0.0
        if body_agrees and in_body < 0.5 and len(words) >= _BODY_FILTER_MIN_WORDS:
            continue
        vector = list(b.features) + [
            float(b.parent in parents), float(b.grandparent in grandparents),
            float(first < i < last), float(i > 0 and taken_line[i - 1] >= 0),
            float(i + 1 < len(blocks) and taken_line[i + 1] >= 0), math.log1p(distance),
            i / len(blocks), math.log1p(len(words)), float(b.text.endswith(_SENTENCE_END)),
            novel, in_body, float(body is not None), math.log1p(len(text_words)),
        ]
        found.append(Candidate(b, taken_line[previous] if previous >= 0 else -1, vector))
    return found


def _line_of(starts: list[int], position: int) -> int:
    """The line (by the squashed starts of the lines) that holds ``position``."""
    return bisect.bisect_right(starts, position) - 1


def score(vector: list[float]) -> float:
    """The model's probability that a candidate is content."""
    total = block_model.BASE
    for tree in block_model.TREES:
        while tree.__class__ is tuple:
            tree = tree[2] if vector[tree[0]] < tree[1] else tree[3]
        total += tree
    return 1 / (1 + math.exp(-total))


def recover_blocks(tree: HtmlElement, text: str, article_body: str | None,
                   keep=lambda line: True) -> str:
    """``text`` with the candidate blocks of ``tree`` that the model calls content (with at
    least ``block_model.THRESHOLD``) put back, each after the line of the block before it."""
    if not text or not block_model.TREES:
        return text
    found = text_blocks(tree)
    if len(found) * len(text) > _MAX_SEARCH:
        return text
    chosen = [c for c in candidates(found, text, article_body, keep)
              if score(c.vector) >= block_model.THRESHOLD]
    return insert(text, chosen)


def insert(text: str, chosen: list[Candidate]) -> str:
    """``text`` with the ``chosen`` candidates' blocks, each after its line; a block that
    repeats one put back already (the same box twice on the page) goes back once."""
    if not chosen:
        return text
    lines = text.split("\n")
    after: dict[int, list[str]] = {}
    seen: set[str] = set()
    for c in chosen:
        squashed = _squash(c.block.text)
        if squashed not in seen:
            seen.add(squashed)
            after.setdefault(c.after_line, []).append(c.block.text)
    out = after.get(-1, [])
    for i, line in enumerate(lines):
        out.append(line)
        out += after.get(i, [])
    return "\n".join(out)
