"""The article body as plain text, one paragraph per line; what it keeps is written down
in the README ("What the text keeps").

trafilatura does the extraction; around it this module

- surveys the page's text blocks once (``_Survey``): the text each block-level element
  shows, whatever its tag, and which of it is story text (long enough, not mostly links);
- makes plain containers of the menus, headers, footers, asides and buttons that hold the
  page's ``<main>`` (markup left unclosed, which the parser wraps around the page);
- prunes boilerplate containers from the tree first (ad slots, share bars, newsletter
  boxes, recommendation widgets, calls to action, fact boxes, captions and credits,
  embedded posts, cookie banners and dialogs, ...), recognised by the words in their
  ``class``/``id`` and kept when they hold the story (the headline, or a good share of the
  page's story text), and never inside code, where class names are a syntax highlighter's;
- removes sign-up boxes (the short text around an e-mail field), link-only paragraphs and
  list items ("READ MORE: ...") that lead to the site's own pages, teaser cards (a link
  around a heading) and teasers' titles (subheadings that are each one link to another page
  of the site);
- runs trafilatura's fallbacks only when its main extractor found less than half the story
  text, or ran a container's text together into one line, and reads the page with jusText
  when even they found less than a quarter (or one line again);
- after extraction, drops the headline repeated as the first line, a leading byline, and
  lines that are boilerplate wherever they stand ("Story continues below advertisement",
  "Report an error", share prompts, copyright and photo-credit lines, reading times,
  credits and datelines standing alone);
- cross-checks against the JSON-LD ``articleBody`` when the page has one that agrees, and
  takes it when the markup holds far less (a body rendered by a script);
- puts back the standfirst (the lead paragraph under the headline), which trafilatura
  often skips, when the page shows it and describes itself with it;
- drops the short lines that end the text without ending a sentence (headings and labels
  left of the boxes after the article: "Tags", "Follow us");
- puts back the blocks of the page that trafilatura left out and the block model
  (``normalize.blocks``) calls content;
- bounds the time: trees are cut after ``MAX_ELEMENTS`` elements, and on trees with many
  blocks trafilatura's fallbacks (jusText, readability), quadratic in the number of
  blocks, are skipped.

Every step is general: no rule names a site. Pure and deterministic.
"""

from __future__ import annotations

import bisect
import copy
import functools
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import lxml.etree
import trafilatura
from courlan import extract_domain
from justext.core import ParagraphMaker, classify_paragraphs, revise_paragraph_classification
from justext.utils import get_stoplist, get_stoplists
from lxml.html import HtmlElement

from normalize.layout import BLOCK_TAGS as _BLOCK_TAGS
from normalize.layout import TEXT_BLOCK_TAGS as _TEXT_BLOCK_TAGS
from normalize.metadata import listed_names, meta_tags

# Shortest embedded HTML string worth treating as an article body in the second look, in
# characters, an escape sequence (\") counting as one.
_MIN_EMBEDDED_BODY = 400
# A page whose markup gave less text than this share of its JSON-LD articleBody renders its
# body with a script: what the markup gave is a standfirst or a menu, and the articleBody is
# the article.
_MARKUP_SHORT_OF_BODY = 0.3
# What follows the opening quote of a JSON string, up to its closing quote (see
# _json_strings). Possessive: a string without an end is read once, not backtracked over.
_JSON_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)

# trafilatura's fallbacks (jusText, readability) compare text blocks with each other: an
# article followed by 10,000 short blocks takes seconds, 20,000 close to a minute. Above
# this many blocks we run its main extractor only (``fast``). The corpus' largest page has
# 1,383 blocks (3,319 elements), so real pages keep the fallbacks.
MAX_BLOCKS_FOR_FALLBACKS = 4_000
# Even the main extractor (and htmldate, for the metadata) grows faster than linearly:
# 20,000 elements take about 2 s, 40,000 about 8 s. A tree is cut after this many elements
# in document order; the article comes first on any page we would want to archive.
MAX_ELEMENTS = 20_000
# trafilatura's fallbacks (its comparison with readability and jusText) cost a third of its
# time and, on most pages, change nothing: they run only when the main extractor found less
# than this share of the page's story text (``_Survey.story_chars``, what pruning left of it)
# (README).
FALLBACK_BELOW_SHARE = 0.5
# When trafilatura, fallbacks included, found less than this share of the story text, it took
# a fragment: the lead, the first item of a list article, or nothing. jusText's reading of
# the page's paragraphs (trafilatura's own last resort, which it keeps for short results) is
# taken instead, when it finds more, and no more than _RESCUE_MAX_SHARE of the story text:
# beyond that it reads text that is no story (code, templates).
_RESCUE_BELOW_SHARE = 0.25
_RESCUE_MAX_SHARE = 1.25
# Text that is no story text: code, styles, form controls, and captions (README, "What the
# text keeps"); comments' too. Hidden elements count: pages hide the rest of a story behind
# a "read more" button.
_NO_TEXT_TAGS = frozenset((
    "head", "script", "style", "noscript", "template", "textarea", "select", "option", "button",
    "svg", "math", "figcaption",
))
# A text block is story text when it has at least this many characters (shorter ones are
# captions, teasers, labels and menu entries as often as text) and at most this share of them
# in links (a list of links is navigation, however long).
_STORY_BLOCK_MIN_CHARS = 60
_STORY_BLOCK_LINK_SHARE = 0.5

# Words in class/id/data-component naming boilerplate containers, matched as whole
# segments between spaces, hyphens and underscores (so "ad" matches "ad-slot" and
# "is-ad" but not "head" or "download"). "teaser" is not here: German sites call the
# lead paragraph the Teaser.
_BOILERPLATE_WORDS = "|".join((
    # recommendation widgets and "read also" boxes
    r"recommend\w*", r"related", r"outbrain", r"taboola", r"read[-_]*also", r"readmore",
    r"more[-_]*stories", r"plista", r"rail",
    # ad slots
    r"ad", r"ads", r"adslot", r"adunit", r"advert\w*", r"dfp", r"gpt", r"leaderboard",
    r"billboard", r"sponsor\w*", r"commercial",
    # share and follow bars
    r"share\w*", r"sharing", r"social\w*",
    # newsletter and subscription boxes
    r"newsletter\w*", r"subscribe", r"subscription", r"sign[-_]*up", r"opt[-_]*in",
    # "most read" lists
    r"most[-_]*(read|popular|viewed)", r"mostread", r"popular", r"trending", r"top[-_]*stories",
    # comment sections
    r"comments?", r"disqus",
    # author bio boxes
    r"author[-_]*bio", r"bio", r"about[-_]*(the[-_]*)?author", r"author[-_]*box", r"author[-_]*info",
    # captions and credits of pictures and galleries
    r"caption", r"credits?", r"copyright", r"figcaption",
    # consent placeholders standing in for blocked embeds
    r"consent", r"placeholder", r"privacy",
    # cookie banners and dialogs (a consent form, a newsletter or login popup)
    r"cookie\w*", r"modal",
    # fact and info boxes beside the story
    r"fact[-_]*box", r"info[-_]*box",
    # calls to action (the site's own product, a demo, a quote) and affiliate or advertiser
    # disclosures
    r"cta", r"disclaimers?", r"disclosures?",
    # text meant for screen readers only
    r"sr[-_]*only", r"visually[-_]*hidden", r"screen[-_]*reader([-_]*(text|only))?", r"element[-_]*invisible",
    r"offscreen",
    # embedded social posts
    # (the platforms' own embed markup)
    r"twitter[-_]*tweet", r"instagram[-_]*media", r"tiktok[-_]*embed", r"fb[-_]*post", r"fb[-_]*video",
    r"embed[-_]*twitter", r"tweet", r"bluesky[-_]*embed", r"text[-_]*post[-_]*media",
    r"reddit[-_]*embed[-_]*bq", r"reddit[-_]*card",
))
_BOILERPLATE_CLASS = re.compile(r"(?:^|[\s_-])(?:%s)(?=$|[\s_-])" % _BOILERPLATE_WORDS, re.I)
# The same, for lowercase ASCII: three times faster, as a case-sensitive alternation passes
# over a word by its first letter where a case-insensitive one tries it (see _names_boilerplate).
_BOILERPLATE_CLASS_LOWER = re.compile(_BOILERPLATE_CLASS.pattern)
# A matched container is spared when it holds the story, whatever tags carry it: the
# headline, or at least this share of the page's story text in several text blocks, or the
# larger share alone (WordPress, for one, puts the post's tags into the class of the element
# that wraps the whole article; other sites call the column that holds the article a
# "rail"). A box beside the story (a fact box, teasers with their summaries, an author's
# bio) holds a small share, however many paragraphs; a caption or a blurb is one block,
# which on a short article may come to a third of its text.
_STORY_SHARE = 0.3
_STORY_SHARE_ALONE = 0.5
# Boilerplate boxes are small; a container with more elements than this is a layout
# wrapper. The bound also keeps the check linear on pathological nesting.
_MAX_BOX_ELEMENTS = 2_000

# A paragraph or list item this short whose text is nearly all link text is a teaser.
_LINK_BLOCK_MAX_CHARS = 300
_LINK_BLOCK_SHARE = 0.8
# The longest label before a teaser's link ("Read also:", "Lesen Sie auch |").
_LINK_LABEL_MAX_CHARS = 30
# What sets a label off from the link after it, at its end or at its start.
_LABEL_SEPARATORS = frozenset(":|»>–—-•/")
_LABEL_POINTERS = frozenset(">»▶►→")
# Elements that may be teasers when they hold links, and the headings that make a link around
# them a teaser card.
_LINKING_BLOCK_TAGS = frozenset(("p", "li"))
_SUBHEADING_TAGS = ("h2", "h3", "h4", "h5", "h6")
# The host of an absolute (or scheme-relative) http(s) link.
_ABSOLUTE_URL = re.compile(r"\s*(?:https?:)?//(?:[^/?#@]*@)?([^/?#:\s]+)", re.I)

# Lines that are boilerplate wherever they stand, compared case-insensitively after
# stripping punctuation at both ends.
_BOILERPLATE_LINE = re.compile(r"^(?:%s)$" % "|".join((
    # ad labels and slugs
    r"advertisements?", r"advert", r"ads?", r"sponsored(?: content)?", r"anzeige", r"werbung",
    r"publicidad", r"publicit[ée]", r"pubblicit[àa]", r"reklame", r"reklama", r"annons",
    r"annonse", r"annonce", r"mainos", r"광고", r"広告",
    r"(?:story|article) continues below(?: this)? advertisement",
    r"(?:story|article) continues below", r"continue reading below",
    r"passer la publicit[ée]", r"skip (?:advertisement|ad)", r"weiter nach der anzeige",
    r"la suite après cette publicité",
    # correction prompts
    r"report an? (?:error|typo|correction)", r"report this (?:article|ad)", r"fehler melden",
    r"signaler une erreur",
    # "read more" links left alone on a line
    r"read more", r"czytaj (?:więcej|też|także)", r"lesen sie auch", r"see also", r"also read",
    r"read also", r"related(?: articles| stories)?", r"mehr zum thema", r"(?:à )?lire aussi",
    r"leer más", r"lee también", r"leggi anche", r"läs också", r"læs også", r"les også",
    r"se også",
    # share and follow prompts
    r"share(?: this(?: article| story)?)?", r"share on (?:facebook|twitter|x|whatsapp|linkedin)",
    r"tweet", r"copy link", r"link copied", r"artikel teilen", r"teilen", r"follow us",
    r"기사 url이 복사되었습니다",
    # navigation and calls to action left alone on a line: back links, a table of contents
    # heading (its entries lead within the page), a pager, account and sales buttons
    r"back to (?:the )?(?:blogs?|articles?|news|posts?|stories|top|home|overview)", r"home",
    r"table of contents", r"contents", r"inhaltsverzeichnis", r"sommaire", r"índice",
    r"page \d+ of \d+", r"seite \d+ von \d+",
    r"sign up", r"sign in", r"log ?in", r"register", r"subscribe(?: now)?",
    r"book a demo", r"request a (?:demo|quote)", r"get started(?: today| now| for free)?",
    # the page's estimate of the reading time ("6 min read", "Lesezeit: 4 Min.")
    r"\d+\s*(?:min(?:ute)?s?|min\.)\s*(?:read|reading|de lecture|de lectura|di lettura)",
    r"(?:reading time|lesezeit|temps de lecture|tiempo de lectura|tempo di lettura)\W*\d+\s*(?:min\w*)?",
)), re.I)
# Short lines that are boilerplate by their start or their shape.
_SHORT_LINE_MAX = 200
_BOILERPLATE_SHORT_LINE = re.compile("|".join((
    # "READ MORE: <headline>", "Les også: <headline>"
    r"^(?:read more|more|also read|read also|see also|related|les også|lesen sie auch|"
    r"czytaj (?:też|także|więcej)|à lire aussi|lire aussi|leer más|lee también|leggi anche|"
    r"läs också|læs også|se også)\s*[:：]\s*\S",
    # copyright and licence notices, of the page or of a picture, wherever the sign stands in
    # the line ("Text and photos © Example Media 2024")
    r"^\W*(?:\(c\)\s*\d{4}|copyright\s*(?:©|ⓒ|\(c\)|:|\d{4}))", r"[©ⓒ]",
    r"\bcopyright\s*(?:©|ⓒ|\(c\)\s*)?\d{4}\b", r"all rights reserved",
    # photo credits: "Photo: ...", "Name/REUTERS", "... via Getty Images"
    r"^(?:foto|photo|bild|image|credit|fotó|zdjęcie|фото|kuva|billede|bilde|picture)s?\s*:",
    r"^[^.!?:]{0,60}/\s*(?:getty images|reuters|afp|ap(?: photo)?|epa(?:-efe)?|dpa|shutterstock|"
    r"istock(?:photo)?|imago(?: images)?|picture[- ]alliance|bloomberg|anadolu|xinhua|"
    r"the canadian press|nurphoto|sipa(?: usa)?|alamy)$",
    r"via getty images$",
    # follow prompts, and a line that announces a newsletter box
    r"^(?:follow|folg\w*|suivez|siga|segui)\s.{0,80}\b(?:twitter|facebook|instagram|google news|"
    r"whatsapp|threads|bluesky|tiktok|linkedin|youtube|telegram)\b",
    r"^newsletters?\s*[:：]",
    # a credit standing alone ("Written by Jane Doe"): the record's authors, not its text
    r"^\W*(?:written|posted|reviewed|medically reviewed|fact[- ]?checked|edited|reported) by\b"
    r"\W*(?:\S+\s+){0,5}\S*$",
)), re.I)
# A dateline standing alone ("Last updated: May 2, 2025 at 9:27 am", "Stand: 22.04.2024, 06:00
# Uhr"): the record's dates, not its text. Its label, then a date: digits and separators, and
# at most _DATELINE_WORDS words (a month, "at", "pm", a zone), or nothing.
_DATELINE = re.compile(
    r"^\W*(?:last )?(?:updated|published|posted|modified|stand|aktualisiert|ver[öo]ffentlicht|"
    r"publi[ée]|mis à jour|actualizado|publicado|aggiornato|pubblicato)\b(?: (?:on|at|am|le|el|il))?"
    r"\W*(.{0,50})$", re.I)
_DATELINE_WORDS = 3
# How a line that states something ends: closing punctuation, a quote or bracket, a figure.
_SENTENCE_END = re.compile(r"[.!?…\"'”’»)\]0-9。！？」』）]$")
# How trafilatura (and a page's own text) starts an item of a list.
_LIST_ITEM_MARKS = ("- ", "• ")
_LETTER_WORD = re.compile(r"\b[^\W\d_]+\b")
# Contact prompts ("Got a story? Email us at ...") stand at the start or the end of a text.
# Tried only where a run of address characters starts, ``(?<!...)``: from each character of
# a long run, the pattern would read the rest of the run again (quadratic).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+")
_EDGE_LINES = 3
# A byline among the first lines ("By Jane Doe", "Von Nina Magoley").
_BYLINE = re.compile(r"^(?:by|von|par|por|di|door|av|af|przez|от)\s+\S", re.I)
_BYLINE_MAX = 60
# How far from the top the headline and the byline are looked for.
_HEADER_LINES = 5

# The JSON-LD articleBody is trusted as a filter only when it is the same text: this share
# of our shingles and of its own must be common to both.
_BODY_AGREEMENT = 0.8
# Lines shorter than this (headings, datelines) are kept: articleBody often omits them.
_BODY_FILTER_MIN_WORDS = 8

_SPACE = re.compile(r"\s+")
_WORDS = re.compile(r"\w+")
_DESCRIPTION_META = ("og:description", "description", "twitter:description")
_TITLE_META = ("og:title", "twitter:title")
# How much may stand before the description in the standfirst ("Berlin. ", "PARIS (AP) — ").
_DATELINE_MAX = 40
# Descriptions looked for in the page, each a search of the whole body: a page states one
# (in two or three tags), and one that repeats the tag thousands of times is not a page
# whose standfirst matters.
_MAX_DESCRIPTIONS = 5
# Elements that can carry a standfirst.
_TEXT_BLOCKS = {"p", "div", "h2", "h3", "section", "header", "li", "td"}


def extract_body(tree: HtmlElement, url: str | None, article_body: str | None = None,
                 tags: dict[str, list[str]] | None = None,
                 with_metadata: bool = True, authors: tuple[str, ...] = ()) -> tuple[str, Any]:
    """The article text of a parsed page (the tree is pruned in place), and trafilatura's
    document, whose metadata serves as the last resort of the metadata cascade.

    ``article_body`` is the JSON-LD ``articleBody``, if the page has one; ``tags`` the
    page's :func:`normalize.metadata.meta_tags`, when the caller has read them already;
    ``with_metadata`` false leaves trafilatura's metadata out of the document (it costs
    about a third of the extraction: the caller asks for it only when it has gaps to fill);
    ``authors``, the names the metadata found: a line of them alone by the headline is a
    byline, not the body's."""
    if tags is None:
        tags = meta_tags(tree)
    # Read what pruning and trafilatura remove first: scripts (for the second look), the
    # headlines and the standfirst.
    scripts = [s.text or "" for s in tree.iter("script")]
    headlines = _headlines(tree, tags)
    lead = _standfirst(tree, tags)
    _flatten_ruby(tree)
    _unwrap_misnested_landmarks(tree)
    survey = _prune_boilerplate_containers(tree)
    large = survey.blocks > MAX_BLOCKS_FOR_FALLBACKS
    _prune_link_blocks(survey, url)
    _prune_teaser_headings(tree, url)
    options = {"url": url, "with_metadata": with_metadata, "include_comments": False,
               "include_tables": True, "deduplicate": False}
    # trafilatura's main extractor alone first (it copies the tree, so ours stays intact); its
    # fallbacks, a third of its cost, only when that misses much of the page's story text;
    # jusText when even they found a fragment of it.
    doc = trafilatura.bare_extraction(tree, fast=True, **options)
    text = (getattr(doc, "text", None) or "").strip()
    if not large and (len(text) < FALLBACK_BELOW_SHARE * survey.story_chars
                      or _run_together(text, survey)):
        doc = trafilatura.bare_extraction(tree, fast=False, **options)
        text = (getattr(doc, "text", None) or "").strip()
        if len(text) < _RESCUE_BELOW_SHARE * survey.story_chars or _run_together(text, survey):
            rescued = _justext_paragraphs(tree)
            if ((len(text) < len(rescued) or _run_together(text, survey))
                    and _RESCUE_BELOW_SHARE * survey.story_chars <= len(rescued)
                    <= _RESCUE_MAX_SHARE * survey.story_chars):
                text = rescued
    text = _tables_as_tab_separated(text)
    text = _drop_header_lines(text, headlines, authors)
    text = drop_boilerplate_lines(text)
    if text and article_body:
        text = _agree_with_article_body(text, article_body)
    from_markup = True
    if not text or _markup_falls_short(text, article_body):
        text = drop_boilerplate_lines(_second_look(scripts, article_body))
        from_markup = False
    # The standfirst opens the text, however the body was found (README, "What the text keeps").
    if text and lead and _squash(lead)[:80] not in _squash(text):
        text = f"{lead}\n{text}"
    text = _drop_dangling_lines(text.strip())
    if from_markup:
        # Blocks of the page the text left out and the block model calls content.
        from normalize.blocks import recover_blocks  # it reads this module's definitions

        # What the text's own edges are trimmed of, blocks put back at its end are too.
        text = _drop_dangling_lines(recover_blocks(
            tree, text, article_body,
            keep=lambda line: _kept_line(line) and not _names_only(line, authors)))
    return text, doc


def _tables_as_tab_separated(text: str) -> str:
    """trafilatura's tables (Markdown's pipes: ``| cell | cell |``, a ``|---|`` rule under
    the header) as the text keeps them: a row a line, its cells separated by tabs, as a
    reader reads a table's row and as a spreadsheet reads tab-separated values (README,
    "What the text keeps"); a row with no text in any cell is left out."""
    if "\n|" not in text and not text.startswith("|"):
        return text
    lines = []
    for line in text.split("\n"):
        row = _TABLE_ROW.match(line)
        if row is None:
            lines.append(line)
        elif not _TABLE_RULE.match(line):
            cells = [cell.strip().replace("\\|", "|") for cell in _CELL_BORDER.split(row[1])]
            if any(cells):
                lines.append("\t".join(cells))
    return "\n".join(lines)


# A row of trafilatura's tables, its header's rule, and the border between two cells (a "|"
# in a cell is escaped, "\|").
_TABLE_ROW = re.compile(r"^\|(.*)\|\s*$")
_TABLE_RULE = re.compile(r"^\|(?:-+\|)+\s*$")
_CELL_BORDER = re.compile(r"(?<!\\)\|")


def _kept_line(line: str) -> bool:
    """Whether ``drop_boilerplate_lines`` keeps ``line`` standing alone."""
    return bool(drop_boilerplate_lines(line).strip())


def _names_only(line: str, authors: tuple[str, ...]) -> bool:
    """Whether ``line`` names the ``authors`` and nothing else: a byline."""
    if not authors:
        return False
    names = listed_names(line)
    return bool(names) and set(names) <= set(authors)


def _run_together(text: str, survey: _Survey) -> bool:
    """Whether ``text`` is one line longer than any text block of the page: the text of a
    whole container run together (trafilatura's last resort, its baseline, when its
    extractor found too little), the article's paragraphs lost with the boxes between them."""
    return "\n" not in text and len(text) > survey.longest_block > 0


def _justext_paragraphs(tree: HtmlElement) -> str:
    """The paragraphs of the (pruned) page that jusText classifies as text, one a line, with
    the stop words of every language it knows and the thresholds trafilatura's own rescue
    uses, read from a copy of the tree. Not after trafilatura's basic cleaning, which takes
    list articles' items (each an ``<article>`` of its own) for teasers. jusText's public
    functions, not trafilatura's ``try_justext``, which is no part of its API."""
    try:
        paragraphs = ParagraphMaker.make_paragraphs(copy.deepcopy(tree))
        classify_paragraphs(paragraphs, _justext_stoplist(), 50, 150, 0.1, 0.2, 0.25, True)
        revise_paragraph_classification(paragraphs, 150)
    except Exception:  # noqa: BLE001 - a last resort: the page keeps what trafilatura found
        return ""
    return "\n".join(line for line in ((p.text or "").strip() for p in paragraphs
                                        if not p.is_boilerplate) if line)


@functools.cache
def _justext_stoplist() -> frozenset[str]:
    """Every language's stop words (154,000), for a page whose language is not known yet:
    read from jusText's hundred files once a process, not once a page."""
    return frozenset(word for language in get_stoplists() for word in get_stoplist(language))


def drop_boilerplate_lines(text: str) -> str:
    """``text`` without the lines that are boilerplate on any site: ad labels and slugs
    ("Story continues below advertisement"), "Report an error", lone "Read more" and share
    prompts, "READ MORE: <headline>" teasers, copyright notices, photo credits, follow and
    newsletter prompts, and contact prompts with an e-mail address at the start or end."""
    lines = text.split("\n")
    kept = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        core = _SPACE.sub(" ", _without_edge_punctuation(stripped))
        if _BOILERPLATE_LINE.match(core):
            continue
        if len(stripped) <= _SHORT_LINE_MAX and (
            _BOILERPLATE_SHORT_LINE.search(stripped) or _is_dateline(stripped)
            or ((i < _EDGE_LINES or i >= len(lines) - _EDGE_LINES) and _EMAIL.search(stripped))
        ):
            continue
        kept.append(line)
    return "\n".join(kept)


def _drop_dangling_lines(text: str) -> str:
    """``text`` without the short lines that end it without ending a sentence: a heading or a
    label that introduces nothing ("Tags", "Share", "Follow us", "Blog index", "Pin for later")
    or links to other pages ("Next article: ..."), what is left of a box after the article
    once its content is gone. Short is shorter than a story block (``_STORY_BLOCK_MIN_CHARS``);
    a line ending with a full stop, a quote, a bracket or a figure is a statement (a
    signature, a source, a date) and stops the trimming, as does an item of a list (the
    list's own content, however short)."""
    lines = text.split("\n")
    while len(lines) > 1:
        last = lines[-1].strip()
        if last and (len(last) >= _STORY_BLOCK_MIN_CHARS or _SENTENCE_END.search(last)
                     or last.startswith(_LIST_ITEM_MARKS)):
            break
        lines.pop()
    return "\n".join(lines)


def _without_edge_punctuation(line: str) -> str:
    """``line`` without the runs of punctuation (``[\\W_]``: neither letter nor digit) at its
    start and at its end. Read from both ends to the first letter or digit, each character
    once: a regular expression searching for the trailing run tries it from every position
    of every line, a third of the time of dropping boilerplate lines."""
    start, end = 0, len(line)
    while start < end and not line[start].isalnum():
        start += 1
    while end > start and not line[end - 1].isalnum():
        end -= 1
    return line[start:end]


def _is_dateline(line: str) -> bool:
    """Whether ``line`` is a dateline standing alone (see ``_DATELINE``)."""
    match = _DATELINE.match(line)
    if match is None:
        return False
    date = match.group(1)
    return not date.strip() or (any(c.isdigit() for c in date)
                                and len(_LETTER_WORD.findall(date)) <= _DATELINE_WORDS)


# -- before extraction: the tree ----------------------------------------------------------


def _prune_boilerplate_containers(tree: HtmlElement) -> _Survey:
    """Remove containers whose class, id or data-component names boilerplate (see
    ``_BOILERPLATE_WORDS``) unless they hold the story (see ``_holds_story``), and cut the
    tree after ``MAX_ELEMENTS`` elements. Returns the survey of the tree's text blocks, with
    the story text that pruning left."""
    survey = _survey(tree)
    doomed: list[HtmlElement] = []
    doomed_until = -1
    for start, end, el in survey.boxes:
        if start <= doomed_until:  # inside a box already doomed
            continue
        if not _holds_story(survey, start, end):
            doomed.append(el)
            doomed_until = end
            survey.story_chars -= survey.story_chars_in(start, end)
    if survey.cut_at is not None:
        # Before removing the doomed boxes: the element must still be in the tree.
        _cut_from(survey.cut_at)
    # Before removing the doomed boxes too: a sign-up box is told by its field, which a box
    # named "newsletter" may hold without its prompt.
    _prune_signup_boxes(tree)
    for el in doomed:
        _remove(el)
    return survey


def _prune_signup_boxes(tree: HtmlElement) -> None:
    """Remove sign-up boxes: the largest element around an e-mail address field whose text
    is short (``_SIGNUP_BOX_MAX_CHARS``): its prompt ("Join our newsletter", "Get the best of
    ... in your inbox"), the field's label and the fine print beside it. A form that asks for
    a reader's address is a newsletter or account box, whatever the site names it; the
    bound keeps an article that happens to hold a form (and a page wrapped in one)."""
    for field in _EMAIL_FIELD(tree):
        box = None
        for el in field.iterancestors():
            if el.tag in ("body", "html") or _text_up_to(el, _SIGNUP_BOX_MAX_CHARS) is None:
                break
            box = el
        if box is not None and box.getparent() is not None and next(box.iter("h1"), None) is None:
            _remove(box)


# An input for an e-mail address, by its type or its name.
_EMAIL_FIELD = lxml.etree.XPath(
    "//input[translate(@type, 'EMAIL', 'email') = 'email' or contains(translate(@name, 'EMAIL', "
    "'email'), 'email')]")
# The longest text a sign-up box shows: a prompt, a sentence of promise, the fine print.
_SIGNUP_BOX_MAX_CHARS = 400


def _cut_from(el: HtmlElement) -> None:
    """Remove ``el`` and everything after it in document order."""
    node = el
    while (parent := node.getparent()) is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    el.tail = None
    if el.getparent() is not None:
        el.getparent().remove(el)


def _holds_story(survey: _Survey, start: int, end: int) -> bool:
    """Whether the container made of elements ``start`` to ``end`` (in document order), matched
    by its name, is in fact (part of) the article: it holds the headline, or a good share of
    the page's story text (see ``_STORY_SHARE``), or is too big to be a box. Text, not tags,
    decides: a story's paragraphs may be ``<p>``, ``<div>``, ``<li>`` or bare text."""
    if end - start + 1 > _MAX_BOX_ELEMENTS:
        return True
    h1 = bisect.bisect_left(survey.headline_at, start)
    if h1 < len(survey.headline_at) and survey.headline_at[h1] <= end:
        return True
    total = survey.page_story_chars
    held = survey.story_chars_in(start, end)
    if total == 0 or held < _STORY_SHARE * total:
        return False
    blocks = (bisect.bisect_right(survey.story_block_at, end)
              - bisect.bisect_left(survey.story_block_at, start))
    return blocks > 1 or held >= _STORY_SHARE_ALONE * total


def _prune_link_blocks(survey: _Survey, url: str | None) -> None:
    """Remove short paragraphs and list items that are (nearly) all link text or a label and
    a link (``_labelled_link``), lists left empty by that, and links wrapping a heading:
    teasers for other articles. A block whose
    links all lead to other sites stays: teasers promote the site's own pages, and a list of
    links elsewhere is the article's sources or recommendations ("Further reading"); so does
    one whose links all lead within the page (anchors: "Jump to the list").

    The candidates are the survey's, found before the boxes were pruned: pruning may have
    taken their links or headings away (looked at again here), or the candidates themselves
    (removing them from a removed box changes nothing)."""
    site = extract_domain(url) if url else None
    domains: dict[str, str | None] = {}  # host -> its registered domain, looked up once
    doomed = []
    for el, size in survey.linking_blocks:
        text = _text_up_to(el, _LINK_BLOCK_MAX_CHARS, size)
        if text is None or not text:
            continue
        # The text is short (and so is that of its links): serialising it in C is cheaper
        # than joining the pieces of itertext().
        linked = sum(len(_SPACE.sub(" ", _text_of(a)).strip()) for a in el.iter("a"))
        teaser = linked >= _LINK_BLOCK_SHARE * len(text) or _labelled_link(el, text)
        if linked and teaser and not _links_within_page(el) \
                and not (site and _links_elsewhere(el, site, domains)):
            doomed.append(el)
    # A link around a heading is a teaser card ("<a><h3>Other story</h3><p>...</p></a>").
    doomed += [a for a in survey.linked_headings if next(a.iter(*_SUBHEADING_TAGS), None) is not None]
    for el in doomed:
        if el.getparent() is not None:
            _remove(el)
    for lst in [el for el in survey.lists if len(el) == 0 and not (el.text or "").strip()]:
        _remove(lst)


def _links_within_page(el: HtmlElement) -> bool:
    """Whether every link in ``el`` is an anchor of the page itself ("Jump to the full
    list"): a way through the article, not a teaser for another page."""
    return all((a.get("href") or "").lstrip().startswith("#") for a in el.iter("a"))


def _labelled_link(el: HtmlElement, text: str) -> bool:
    """Whether paragraph ``el`` (whose shown text is ``text``) is a label and one link that
    ends it ("Read also: <a>Other story</a>", "MORE | <a>Other story</a>", ">> <a>...</a>"):
    a teaser, however its label is worded. A label is short and set off by a separator
    after it or a pointer before it; a sentence that ends with a link is not, nor is a
    paragraph in a table's cell or a list's item."""
    links = list(el.iter("a"))
    if el.tag != "p" or len(links) != 1:
        return False
    shown = _SPACE.sub(" ", _text_of(links[0])).strip()
    if not shown or not text.endswith(shown) or len(shown) < len(text) / 2:
        return False
    # In a table's cell or a list's item, it is a part of that row or item ("Review: <a>").
    if next(el.iterancestors("td", "th", "li"), None) is not None:
        return False
    label = text[:len(text) - len(shown)].strip()
    return 0 < len(label) <= _LINK_LABEL_MAX_CHARS and (
        label[-1] in _LABEL_SEPARATORS or label[0] in _LABEL_POINTERS)


def _prune_teaser_headings(tree: HtmlElement, url: str | None) -> None:
    """Remove subheadings that are, whole, one link to another page of the same site, when
    the page has several: the titles of teasers ("More like this", "Read next", a list of
    the site's latest stories). An article's own subheadings introduce its sections and link
    nowhere, or to the thing they name on another site (a product, a place, a source); a
    link within the page (an anchor) is a table of contents, and stays. One such heading
    alone is as often the author's name over a bio, which the metadata still reads."""
    site = extract_domain(url) if url else None
    domains: dict[str, str | None] = {}  # host -> its registered domain, looked up once
    doomed = []
    # Walked with lxml's tag filter, in C: an XPath over every element costs three times as
    # much on a news page.
    for heading in tree.iter(*_SUBHEADING_TAGS):
        links = list(heading.iter("a"))
        if len(links) != 1:
            continue
        href = (links[0].get("href") or "").strip()
        if not href or href.startswith("#") or _OTHER_SCHEME.match(href):
            continue  # an anchor, a script ("javascript:", an FAQ's toggle), an address
        shown = _SPACE.sub(" ", _text_of(heading)).strip()
        if not shown or _SPACE.sub(" ", _text_of(links[0])).strip() != shown:
            continue
        # Without the page's address, only a relative link is known to stay on the site.
        if (_links_elsewhere(heading, site, domains) if site
                else _ABSOLUTE_URL.match(href) is not None):
            continue
        doomed.append(heading)
    if len(doomed) < 2:
        return
    for heading in doomed:
        _remove(heading)


# A link's scheme other than http(s): "javascript:", "mailto:", "tel:".
_OTHER_SCHEME = re.compile(r"^(?!https?:)[a-z][a-z0-9+.-]*:", re.I)


def _links_elsewhere(el: HtmlElement, site: str, domains: dict[str, str | None]) -> bool:
    """Whether every link in ``el`` leads to a site other than ``site`` (registered domains,
    so that a site's subdomains are the site). ``domains`` caches the look-ups by host."""
    for a in el.iter("a"):
        match = _ABSOLUTE_URL.match(a.get("href") or "")
        if match is None:  # a relative link, an anchor, mailto: or javascript:
            return False
        host = match.group(1).lower()
        if host not in domains:
            domains[host] = extract_domain(f"https://{host}/")
        if domains[host] is None or domains[host] == site:
            return False
    return True


def _flatten_ruby(tree: HtmlElement) -> None:
    """Replace ``<ruby>`` annotations (Japanese and Chinese readings) by their text as a
    browser without ruby support shows it, "弾劾（だんがい）": trafilatura would otherwise
    break the sentence into three lines around it."""
    for ruby in list(tree.iter("ruby")):
        if ruby.getparent() is not None:
            ruby.tail = "".join(ruby.itertext()) + (ruby.tail or "")
            _remove(ruby)


# Elements that may not hold the page's <main> (the HTML standard: no <main> inside the
# landmarks, and nothing but phrasing content inside a button).
_NOT_AROUND_MAIN = ("nav", "header", "footer", "aside", "button")


def _unwrap_misnested_landmarks(tree: HtmlElement) -> None:
    """Make plain containers (``<div>``) of the navigation bars, headers, footers, asides and
    buttons that hold the page's ``<main>``: markup that leaves an element of its menu
    unclosed (a menu's toggle button, a list of links) puts the rest of the page, the article
    with it, inside the menu, where every step that drops navigation and controls (ours,
    trafilatura's) would drop the article too. The standard allows no ``<main>`` there, so
    such an element is an artefact of the parse, not the page's."""
    for main in tree.iter("main"):
        for landmark in main.iterancestors(*_NOT_AROUND_MAIN):
            landmark.tag = "div"


def _remove(el: HtmlElement) -> None:
    """Remove an element but keep its tail, the text after it, which belongs to the parent."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail and el.tail.strip():
        previous = el.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


class _Survey:
    """The text blocks of a tree, and its boxes (elements named like boilerplate), from one
    walk in document order.

    Elements are numbered in document order; an element's subtree is the range from its
    number to its last descendant's. A text block is the text that a block-level element
    shows itself (its own text and that of its inline descendants, not that of nested
    blocks), as a browser lays it out; it is story text when it is at least
    ``_STORY_BLOCK_MIN_CHARS`` long and not mostly link text. Only the first
    ``MAX_ELEMENTS`` elements are walked."""

    def __init__(self) -> None:
        self.blocks = 0
        """Elements with a block-level tag (``_BLOCK_TAGS``)."""
        self.boxes: list[list[Any]] = []
        """[number, number of its last descendant, element] for each element outside
        ``<head>`` (and other than ``<html>`` and ``<body>``) whose class, id or
        data-component names boilerplate (``_names_boilerplate``), in document order."""
        self.headline_at: list[int] = []
        """The numbers of the ``<h1>`` elements, ascending."""
        self.story_block_at: list[int] = []
        """The numbers of the elements whose own text block is story text, ascending."""
        self.story_chars_before: list[int] = [0]
        """Running total: characters of story text in the first i of those blocks."""
        self.page_story_chars = 0
        """Characters of story text in the page."""
        self.story_chars = 0
        """Characters of story text left in the tree (pruning lowers it)."""
        self.longest_block = 0
        """Characters of the page's longest text block."""
        self.cut_at: HtmlElement | None = None
        """The first element beyond ``MAX_ELEMENTS``, where the tree is to be cut."""
        self.linking_blocks: list[tuple[HtmlElement, int]] = []
        """The ``<p>`` and ``<li>`` elements with a link inside, in document order, each with
        the number of elements in its subtree."""
        self.linked_headings: list[HtmlElement] = []
        """The links with a subheading (``<h2>`` to ``<h6>``) inside, in document order."""
        self.lists: list[HtmlElement] = []
        """The ``<ul>`` and ``<ol>`` elements."""

    def story_chars_in(self, start: int, end: int) -> int:
        """Characters of story text in the blocks of elements ``start`` to ``end``."""
        first = bisect.bisect_left(self.story_block_at, start)
        last = bisect.bisect_right(self.story_block_at, end)
        return self.story_chars_before[last] - self.story_chars_before[first]


def _survey(tree: HtmlElement) -> _Survey:
    """Walk the tree once (see :class:`_Survey`).

    The walk is a tenth of the extraction's time, a Python step per element and per end of
    one: hence plain tuples and parallel lists, whitespace told apart before it is measured,
    and the verdict on a class string looked up, not searched, when it repeats."""
    survey = _Survey()
    boxes, headline_at = survey.boxes, survey.headline_at
    # The text blocks, by index: characters, characters in links, the number of the block's
    # element. The first is the text outside any block element (a fragment's root).
    chars: list[int] = [0]
    link_chars: list[int] = [0]
    block_at: list[int] = [0]
    verdicts: dict[tuple[str | None, str | None, str | None], bool] = {}
    # The links and the <p> and <li> elements, in document order: each with the index of
    # the innermost one of its kind around it (or -1), and whether it holds a subheading
    # (a link) or a link (a <p> or <li>); marking one marks those around it.
    links: list[HtmlElement] = []
    link_around: list[int] = []
    link_holds: list[bool] = []
    holders: list[HtmlElement] = []
    holder_around: list[int] = []
    holder_holds: list[bool] = []
    holder_at: list[int] = []  # its number, and that of its last descendant
    holder_end: list[int] = []
    # One entry per open element: (its block, the innermost open link or -1, its text is no
    # story text, inside <head>, its index in ``boxes`` or -1, the innermost open <p> or
    # <li> or -1); the first stands for the root's parent.
    stack: list[tuple[int, int, bool, bool, int, int]] = [(0, -1, False, False, -1, -1)]
    # The page's heading slugs, read when a box is first named by its id alone.
    heading_slugs: list[set[str]] = []
    count = 0
    # Names looked up once, not per element.
    limit, text_block_tags, block_tags, no_text_tags = (
        MAX_ELEMENTS, _TEXT_BLOCK_TAGS, _BLOCK_TAGS, _NO_TEXT_TAGS)
    shown_chars = _shown_chars
    for event, el in lxml.etree.iterwalk(tree, events=("start", "end")):
        if event == "end":
            entry = stack.pop()
            box = entry[4]
            if box >= 0:
                boxes[box][1] = count - 1
            parent = stack[-1]
            if entry[5] != parent[5]:  # the end of a <p> or <li>
                holder_end[entry[5]] = count - 1
            if not parent[2]:
                tail = el.tail
                if tail and not tail.isspace():
                    size = shown_chars(tail)
                    chars[parent[0]] += size
                    if parent[1] >= 0:
                        link_chars[parent[0]] += size
            continue
        if count == limit:
            survey.cut_at = el
            break
        number = count
        count += 1
        tag = el.tag
        block, link, no_text, in_head, _, holder = stack[-1]
        if tag in text_block_tags:
            block = len(chars)
            chars.append(0)
            link_chars.append(0)
            block_at.append(number)
            if tag in block_tags:
                survey.blocks += 1
                if tag == "h1":
                    headline_at.append(number)
                elif tag in _LINKING_BLOCK_TAGS:
                    holders.append(el)
                    holder_around.append(holder)
                    holder_holds.append(False)
                    holder_at.append(number)
                    holder_end.append(number)
                    holder = len(holders) - 1
                elif tag in _SUBHEADING_TAGS:
                    _mark(link, link_around, link_holds)
                elif tag == "ul" or tag == "ol":
                    survey.lists.append(el)
        elif tag == "a":
            links.append(el)
            link_around.append(link)
            link_holds.append(False)
            link = len(links) - 1
            _mark(holder, holder_around, holder_holds)
        elif tag == "head":
            in_head = True
        element = tag.__class__ is str  # not a comment or a processing instruction
        if not no_text and (tag in no_text_tags or not element):
            no_text = True
        if not no_text:
            text = el.text
            if text and not text.isspace():
                size = shown_chars(text)
                chars[block] += size
                if link >= 0:
                    link_chars[block] += size
        box = -1
        if element and not in_head:  # the metadata lives in <head>, and no box
            names = (el.get("class"), el.get("id"), el.get("data-component"))
            if names != _UNNAMED:
                verdict = verdicts.get(names)
                if verdict is None:
                    verdict = verdicts[names] = _names_boilerplate(" ".join(n for n in names if n))
                if verdict and tag != "html" and tag != "body" and not _in_code(el) \
                        and not _in_running_text(el, tag) \
                        and not _named_by_a_heading(el, tree, heading_slugs):
                    box = len(boxes)
                    boxes.append([number, number, el])
        stack.append((block, link, no_text, in_head, box, holder))
    # Elements still open (the walk stopped at the cut) end with the last element walked.
    for entry in stack[1:]:
        if entry[4] >= 0:
            boxes[entry[4]][1] = count - 1
        if entry[5] >= 0:
            holder_end[entry[5]] = count - 1
    running = survey.story_chars_before
    for size, linked, number in zip(chars, link_chars, block_at):
        if size >= _STORY_BLOCK_MIN_CHARS and linked <= _STORY_BLOCK_LINK_SHARE * size:
            survey.story_block_at.append(number)
            running.append(running[-1] + size)
    survey.longest_block = max(chars)
    survey.page_story_chars = survey.story_chars = running[-1]
    survey.linking_blocks = [(el, end - start + 1) for el, holds, start, end
                             in zip(holders, holder_holds, holder_at, holder_end) if holds]
    survey.linked_headings = [el for el, holds in zip(links, link_holds) if holds]
    return survey


_UNNAMED = (None, None, None)


def _in_code(el: HtmlElement) -> bool:
    """Whether ``el`` stands inside preformatted text or code, where class names are a
    syntax highlighter's (``hljs-comment``, ``token comment``), naming parts of the code,
    not boxes of the page."""
    return next(el.iterancestors("pre", "code"), None) is not None


def _in_running_text(el: HtmlElement, tag: str) -> bool:
    """Whether ``el`` is an inline element inside a sentence: text runs on right before or
    after it ("After <a class="recommendation-inline-link">announcing your engagement</a>,
    you may be..."). Its words are the sentence's, whatever its class names."""
    if tag not in _INLINE_TAGS:
        return False
    if el.tail and not el.tail.isspace():
        return True
    before = el.getprevious()
    text = before.tail if before is not None else el.getparent().text
    return bool(text) and not text.isspace()


def _named_by_a_heading(el: HtmlElement, tree: HtmlElement, slugs: list[set[str]]) -> bool:
    """Whether ``el`` names boilerplate only by an id made from a heading of the page
    (``id="1-heading-how-popular-is-meditation"`` for the section under "How popular is
    meditation?", whose own id is ``how-popular-is-meditation``): an anchor to a section of
    the article, whatever words its heading has. Asked of boxes only, a few a page;
    ``slugs`` holds the page's heading slugs once read (:func:`_heading_slugs`)."""
    anchor = (el.get("id") or "").casefold().replace("_", "-")
    if not anchor or _names_boilerplate(" ".join(
            n for n in (el.get("class"), el.get("data-component")) if n)):
        return False
    if not slugs:
        slugs.append(_heading_slugs(tree))
    return any(slug in anchor for slug in slugs[0])


# A heading's text longer than this is no anchor's source; headings after the first
# _MAX_SLUG_HEADINGS are not read (an article has a few dozen; the bound keeps a page of nested
# headings linear).
_MAX_SLUG_CHARS = 200
_MAX_SLUG_HEADINGS = 100


def _heading_slugs(tree: HtmlElement) -> set[str]:
    """The ids and the text's words (joined by hyphens) of a page's subheadings, those of
    three words or more: what a section's anchor is made of."""
    slugs = set()
    for heading in itertools.islice(tree.iter(*_SUBHEADING_TAGS), _MAX_SLUG_HEADINGS):
        text = _text_up_to(heading, _MAX_SLUG_CHARS) or ""
        for slug in ((heading.get("id") or "").casefold().replace("_", "-"),
                     "-".join(_WORDS.findall(text.casefold()))):
            if slug.count("-") >= 2:
                slugs.add(slug)
    return slugs


# Elements that flow within a line of text.
_INLINE_TAGS = frozenset({"a", "abbr", "b", "cite", "code", "em", "i", "mark", "q", "s", "small",
                          "span", "strong", "sub", "sup", "time", "u"})


def _mark(at: int, around: list[int], marked: list[bool]) -> None:
    """Mark element ``at`` and those of its kind around it (see ``_survey``). Those around a
    marked one are marked already, so each is marked once."""
    while at >= 0 and not marked[at]:
        marked[at] = True
        at = around[at]


# A site's pages share their templates' class strings: a crawl of one site finds most of them
# here (a few megabytes at most).
@functools.lru_cache(maxsize=1 << 14)
def _names_boilerplate(names: str) -> bool:
    """Whether a class, id or data-component names boilerplate (``_BOILERPLATE_CLASS``)."""
    if names.isascii():
        return _BOILERPLATE_CLASS_LOWER.search(names.lower()) is not None
    return _BOILERPLATE_CLASS.search(names) is not None


def _shown_chars(text: str) -> int:
    """The characters of ``text`` with the whitespace around it stripped and the runs of
    whitespace across lines collapsed (how a text block is measured)."""
    return len(text.strip()) if "\n" not in text else len(_SPACE.sub(" ", text).strip())


def _text_up_to(el: HtmlElement, limit: int, elements: int | None = None) -> str | None:
    """The whitespace-collapsed text of ``el``, or None when it is longer than ``limit``
    (found without reading all of a large element). ``elements``, when known, is the number
    of elements in its subtree: a small one is read whole, in C."""
    if elements is not None and elements <= _SMALL_SUBTREE:
        raw = _text_of(el)
        if len(raw) > 4 * limit:  # as below: the reading stops there
            return None
    else:
        parts, size = [], 0
        for piece in el.itertext():
            parts.append(piece)
            size += len(piece)
            if size > 4 * limit:  # whitespace collapses, so read a little past the limit
                return None
        raw = "".join(parts)
    text = _SPACE.sub(" ", raw).strip()
    return text if len(text) <= limit else None


# A subtree of at most this many elements is read whole by _text_up_to: reading it costs
# little more than stopping early, however its elements nest.
_SMALL_SUBTREE = 64


def _text_of(el: HtmlElement) -> str:
    """The text of ``el``'s subtree, as ``"".join(el.itertext())`` (without its tail)."""
    return lxml.etree.tostring(el, method="text", encoding=str, with_tail=False)


# -- the headline and the standfirst --------------------------------------------------------


def _squash(text: str) -> str:
    """``text``'s letters and digits, casefolded: how lines are compared with headlines. The
    punctuation goes with the whitespace: a page joins its kicker to the headline with a
    colon in one place and with nothing in another ("Kicker: Headline", "KickerHeadline")."""
    return "".join(_WORD_CHARS.findall(text.casefold()))


# A run of letters and digits.
_WORD_CHARS = re.compile(r"[^\W_]+")


def _headlines(tree: HtmlElement, tags: dict[str, list[str]]) -> set[str]:
    """The page's headlines as it states them (``<h1>``, ``og:title``, ``twitter:title``),
    squashed."""
    found = ["".join(h.itertext()) for _, h in zip(range(3), tree.iter("h1"))]
    found += [value for name in _TITLE_META for value in tags.get(name, ())]
    return {s for s in map(_squash, found) if s}


def _drop_header_lines(text: str, headlines: set[str], authors: tuple[str, ...] = ()) -> str:
    """Drop the headline (alone or with its kicker) and a byline from the first lines: the
    headline is the article's title, not a paragraph of its body. A byline starts with "By"
    (or its kin), or is the ``authors`` alone ("Jane Doe/John Roe")."""
    lines = text.split("\n")
    head = []
    for line in lines[:_HEADER_LINES]:
        squashed = _squash(line)
        # The lengths first: a page may state thousands of headlines (og:title), and a line
        # may be long; searching each line for each would take their product. A kicker
        # stands before the headline or after it, never around it: a sentence that names
        # the headline in its middle ("Today I've rounded up <headline>, most of which...")
        # is the body's.
        if squashed in headlines or any(
            len(h) >= 20 and len(squashed) <= len(h) + 80
            and (squashed.startswith(h) or squashed.endswith(h)) for h in headlines
        ):
            continue
        if len(line.strip()) <= _BYLINE_MAX and _BYLINE.match(line.strip()):
            continue
        if _names_only(line, authors):
            continue
        head.append(line)
    return "\n".join(head + lines[_HEADER_LINES:]).strip()


def _standfirst(tree: HtmlElement, tags: dict[str, list[str]]) -> str | None:
    """The lead paragraph under the headline, found as the visible element whose text is the
    page's description (or starts with it, when the description is cut short)."""
    descriptions: list[str] = []
    for value in (value for name in _DESCRIPTION_META for value in tags.get(name, ())):
        description = _SPACE.sub(" ", value).strip()
        if len(description) >= 40 and description not in descriptions:
            descriptions.append(description)
            if len(descriptions) == _MAX_DESCRIPTIONS:
                break
    body = tree.find("body")
    if body is None:
        return None
    for description in descriptions:
        stem = description.rstrip(".… ")
        # Probe with a word, not a phrase: the markup may put other whitespace between words.
        probe = max(description.split()[:10], key=len)
        for node in body.xpath(".//text()[contains(., $probe)]", probe=probe)[:50]:
            el = node.getparent()
            while el is not None and el.tag not in _TEXT_BLOCKS:
                el = el.getparent()
            if el is None:
                continue
            shown = _text_up_to(el, 2 * len(description))
            # The description may be cut short, or lack the dateline ("Berlin. ") before it.
            # A standfirst is one paragraph: an element holding blocks of its own is the
            # article (or a part of it) whose first words the description repeats.
            if (shown and 0 <= shown.find(stem) <= _DATELINE_MAX
                    and next(el.iterdescendants(*_TEXT_BLOCK_TAGS), None) is None):
                return shown
    return None


# -- after extraction: the JSON-LD articleBody ------------------------------------------------


def _shingles(text: str) -> set[tuple[str, ...]]:
    """Word 4-grams of ``text``; a shorter text is one shingle."""
    return _word_shingles(_WORDS.findall(text.casefold()))


def _word_shingles(words: list[str]) -> set[tuple[str, ...]]:
    """4-grams of ``words``; fewer words are one shingle."""
    if len(words) < 4:
        return {tuple(words)} if words else set()
    return set(zip(words, words[1:], words[2:], words[3:]))


def _same_article(body: set, ours: set) -> bool:
    """Whether the JSON-LD ``articleBody`` (its shingles, ``body``) is the article our text
    (``ours``) is: ``_BODY_AGREEMENT`` of the shingles of each are common to both."""
    common = len(body & ours)
    return bool(common) and common >= _BODY_AGREEMENT * len(ours) \
        and common >= _BODY_AGREEMENT * len(body)


def _agree_with_article_body(text: str, article_body: str) -> str:
    """When the JSON-LD ``articleBody`` is the same article as ``text``, drop our lines that
    it does not have (boxes and teasers inside the body's markup). The first line is kept,
    as are short lines: the articleBody often leaves out the standfirst and headings."""
    body = _shingles(article_body)
    if not _same_article(body, _shingles(text)):
        return text
    squashed_body = _squash(article_body)
    lines = text.split("\n")
    kept = lines[:1]
    for line in lines[1:]:
        if len(_WORDS.findall(line)) < _BODY_FILTER_MIN_WORDS or _squash(line) in squashed_body:
            kept.append(line)
            continue
        shingles = _shingles(line)
        if len(shingles & body) >= 0.5 * len(shingles):
            kept.append(line)
    return "\n".join(kept)


# -- the second look: pages without the body in their markup --------------------------------


def _markup_falls_short(text: str, article_body: str | None) -> bool:
    """Whether the JSON-LD ``articleBody`` holds the article that the markup does not (see
    ``_MARKUP_SHORT_OF_BODY``)."""
    return (article_body is not None and len(article_body) >= _MIN_EMBEDDED_BODY
            and len(text) < _MARKUP_SHORT_OF_BODY * len(article_body))


def _second_look(scripts: list[str], article_body: str | None) -> str:
    """Text for pages whose body is not in the markup: the JSON-LD ``articleBody``, else the
    longest HTML fragment embedded as a JSON string in a script (client-rendered pages)."""
    if article_body and len(article_body) >= _MIN_EMBEDDED_BODY:
        return article_body.strip()
    best = ""
    for source in scripts:
        if "\\u003cp" not in source and "<p" not in source:
            continue
        for content in _json_strings(source):
            try:
                fragment = json.loads(f'"{content}"')
            except ValueError:
                continue
            if "<p" in fragment and len(fragment) > len(best):
                best = fragment
    if not best:
        return ""
    doc = trafilatura.bare_extraction(
        f"<html><body><article>{best}</article></body></html>",
        include_comments=False, include_tables=True, deduplicate=False,
    )
    return (getattr(doc, "text", None) or "").strip()


def _json_strings(source: str) -> Iterator[str]:
    """The contents of the double-quoted strings of a script (escapes not decoded) that hold
    at least ``_MIN_EMBEDDED_BODY`` characters, an escape sequence counting as one: the
    strings a pattern searched for them finds. Linear: a string is read from its own opening
    quote only, where that pattern, tried at every quote, read it again to its end from each
    escaped quote inside it (quadratic)."""
    start = source.find('"')
    while start >= 0:
        rest = _JSON_STRING_REST.match(source, start + 1)
        if rest is None:
            return  # no closing quote: every quote after this one is escaped, inside it
        end = rest.end() - 1
        content = source[start + 1:end]
        if len(content) >= _MIN_EMBEDDED_BODY and len(content) - sum(
                1 for _ in _JSON_ESCAPE.finditer(content)) >= _MIN_EMBEDDED_BODY:
            yield content
            start = source.find('"', end + 1)
        else:
            # The quotes inside a string that is too short start nothing longer; its closing
            # quote may open the next one.
            start = end
