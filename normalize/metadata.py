"""Article metadata from a parsed page: a cascade over the places publishers put it.

Order, first source that has a field wins: schema.org JSON-LD (NewsArticle and its kin,
``@graph``, arrays, nested authors), OpenGraph and ``article:*`` tags, Dublin Core and
other ``<meta>`` conventions, microdata, ``<time datetime>``, byline markup; then, for a
date, what the page itself states elsewhere (its JSON-LD ``WebPage``, a date in its URL, a
dateline by its headline); trafilatura's own metadata is the last resort for the title and
the authors, never for the date (its date guessing, htmldate's, invents one from a
copyright year or today's date when a page states none). Each field remembers its source,
so a record can say where its date came from.

Titles are chosen among the page's statements of its headline (JSON-LD ``headline``,
``og:title``, ``twitter:title``, the ``<h1>``, ``<title>``): a statement made of another
one and a label (the site's name, a section, a date) is cut down to that one, and the
site's name, sections and dates are cut from either end. Organisations (a JSON-LD
``Organization``, the site's own name) are never authors.

Hand-written rather than trafilatura's or extruct's metadata alone: trafilatura's fixed
order of sources and its date guessing lost to this cascade on the Fundus pages (exact
titles 0.864 against 0.659, dates within two minutes 0.955 against 0.038: README
"Extraction"), and extruct parses every syntax of the page whatever is asked, where the
cascade stops at the first source that has a field.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import lxml.etree
import lxml.html
from lxml.html import HtmlElement

from normalize import jsonld
from normalize.layout import TEXT_BLOCK_TAGS

ARTICLE_TYPES = frozenset({
    "Article", "NewsArticle", "ReportageNewsArticle", "AnalysisNewsArticle", "BlogPosting",
    "LiveBlogPosting", "OpinionNewsArticle", "ReviewNewsArticle", "BackgroundNewsArticle",
    "AskPublicNewsArticle", "SatiricalArticle", "ScholarlyArticle", "TechArticle", "Report",
})
"""schema.org types of an article: a page whose JSON-LD declares one is an article."""
# Objects that are not articles but carry an article's metadata when a page has no article
# object (a video page's title, date and authors).
_METADATA_TYPES = ARTICLE_TYPES | {"SocialMediaPosting", "VideoObject"}
# A separator between a headline and what a page adds to it (the site's name, a section, a
# date, a kicker): punctuation with spaces around it, a colon after a word, or a bar, which
# needs no spaces. Run on text whose spaces are collapsed, so each space is tried once.
_TITLE_SEPARATOR = re.compile(r" [-–—|·•›»~/:]{1,2} |(?<=\S): | ?[|ㅣ｜：] ?")
# A headline statement longer than this is not a headline (a page's whole text in an <h1>);
# an <h1> is read only to ten times this, its spaces not yet collapsed.
_MAX_TITLE = 1_000
# The <h1> elements looked at: the headline is among the first, when it is one.
_MAX_H1 = 20
# The elements inside an <h1> looked at for the part of it that is the headline.
_MAX_H1_PARTS = 20
# Elements that part the text before and after them, as a browser lays them out: a block,
# a line break, a rule.
_BREAKS = TEXT_BLOCK_TAGS | {"br", "hr"}
# Typographic variants that two statements of one headline differ by.
_TITLE_VARIANTS = str.maketrans({"’": "'", "‘": "'", "‚": "'", "“": '"', "”": '"', "„": '"',
                                 "«": '"', "»": '"', "–": "-", "—": "-", "\xa0": " "})
# Labels of a host name that name no site: "www", and second-level labels of public suffixes
# ("co.uk", "com.au").
_GENERIC_HOST_LABELS = frozenset({"www", "com", "co", "org", "net", "gov", "edu", "ac", "or",
                                  "ne", "go", "amp", "m"})
# schema.org types of things that are not people: an author of one of these types is the
# publisher or another organisation, not a person.
_ORGANISATION_TYPE = re.compile(r"Organi[sz]ation$|^(?:Corporation|NGO|LocalBusiness|Brand|WebSite)$")
# The organisations of a page's JSON-LD looked at: a page may list thousands (a directory),
# and each author is compared with each.
_MAX_ORGANISATIONS = 20
# schema.org types of a web page: its datePublished is the page's own statement when it has
# no article object (a guide, a landing page).
_PAGE_TYPE = re.compile(r"Page$")
# A date in a URL path: /2024/05/03/, /2024-05-03-, /20240503/.
_URL_DATE = re.compile(r"(?<![\w])((?:19|20)\d\d)([/_-]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?![\d])")
# A dateline is a short line by the headline: read this much text after the <h1> (and a
# little before it, where some sites put it) for one.
_DATELINE_AFTER = 600
_DATELINE_BEFORE = 200
# How many blocks up from the headline a dateline is looked for.
_DATELINE_LEVELS = 6
_MAX_DATELINE = 100
# Words that say a date is when the article was changed, not published ("Updated: ...").
_UPDATED = re.compile(r"updated|modified|edited|aktualisiert|geändert|mis à jour|actualiza|"
                      r"aggiornat|bijgewerkt|atualizad|uppdaterad|opdateret|oppdatert|"
                      r"zaktualizowan|päivitetty|güncellen|обновлен|更新|수정", re.IGNORECASE)
# Dates as datelines write them; a month is a word of the page's language (or English).
_DATE_YMD = re.compile(r"(?<!\d)((?:19|20)\d\d)[-/.] ?(\d{1,2})[-/.] ?(\d{1,2})(?!\d)")
_DATE_DMY = re.compile(r"(?<!\d)(\d{1,2})\. ?(\d{1,2})\. ?((?:19|20)\d\d)(?!\d)")
_DATE_SLASHED = re.compile(r"(?<![\d/])(\d{1,2})[/-](\d{1,2})[/-]((?:19|20)\d\d)(?!\d)")
_DATE_D_MONTH_Y = re.compile(
    r"(?<!\d)(\d{1,2})(?:st|nd|rd|th|er|e|º|\.)? ?(?:de )?([^\W\d_]{3,})\.?,? (?:de )?((?:19|20)\d\d)(?!\d)")
_DATE_MONTH_D_Y = re.compile(
    r"(?<![^\W\d_])([^\W\d_]{3,})\.? (\d{1,2})(?:st|nd|rd|th)?,? ((?:19|20)\d\d)(?!\d)")
_DATE_CJK = re.compile(r"((?:19|20)\d\d) ?[年년] ?(\d{1,2}) ?[月월] ?(\d{1,2}) ?[日일]")
_ENGLISH_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
                   "september", "october", "november", "december")
_BYLINE_PREFIX = re.compile(r"^\s*(?:(?:written|posted|words|reported|text|story) )?"
                            r"(by|von|par|por|di|door|av|af|przez|от)\s+", re.IGNORECASE)
# The itemprop="author" elements looked at (each is placed in its item, up the tree).
_MAX_MICRODATA_AUTHORS = 100
# Who else a byline names, beside or in place of the author: an editor, a reviewer, a
# photographer, a translator ("Updated by Jon Roe" under "By Jane Doe").
_OTHER_ROLES = (r"updated|reviewed|medically reviewed|edited|fact[- ]checked|illustrat\w*|photo\w*|"
                r"video|translat\w*")
_NOT_AN_AUTHOR = re.compile(rf"^\s*(?:{_OTHER_ROLES}) by\b", re.IGNORECASE)
# What an author box's link says around the name ("More About Jane Doe »", "View all posts by
# Jane Doe"), and an address beside it ("Newsdesk news@example.com").
_AUTHOR_LINK_LABEL = re.compile(r"^\s*(?:more (?:about|from|by)|(?:view |see )?all (?:posts|articles|"
                                r"stories) by|(?:posts|articles|stories) by)\s+|\s*[»›→]+\s*$",
                                re.IGNORECASE)
_EMAIL = re.compile(r"\s*\S+@[^\s@]+\.\w+")
# The accounts a CMS names as the author when no one signed: not a person.
_ACCOUNT_NAMES = frozenset({"admin", "administrator", "webmaster"})
# A desk's or an agency's code where a byline names no one: a short word in lower case
# ("red", "dpa", "sda"). A person's name is written with capitals.
_DESK_CODE = re.compile(r"[a-zäöüéèàç]{1,4}\.?")
# A byline is at most this long, spaces collapsed: longer text is not one.
_MAX_BYLINE = 200
# Text of a byline element read before it is judged too long: its markup may indent a
# byline of 200 characters with many spaces, not with a hundred times as many.
_MAX_BYLINE_MARKUP = 100 * _MAX_BYLINE
# Applied to bylines only (_split_byline): short, and with their spaces collapsed.
_AUTHOR_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bund\b|\bet\b|\by\b|&|\bog\b|\bi\b)\s*")
_WHITESPACE = re.compile(r"\s+")
# A bracketed part of a name, "(dpa)"; see _drop_bracketed. This pattern and the next start
# only where a run of spaces does, ``(?<!\s)``: tried from each space of a long run, each
# would read the rest of the run again (quadratic).
_BRACKETED = re.compile(r"(?<!\s)\s*+[(\[][^)\]]*+[)\]]")
# Job titles that bylines append to a name ("기자": reporter).
_ROLE_SUFFIX = re.compile(r"(?<!\s)\s+(기자|특파원|記者)$")
# Meta names carrying a publication date, beyond OpenGraph and Dublin Core.
_DATE_META = ("article:published_time", "og:article:published_time", "datepublished",
              "dc.date.issued", "dcterms.issued", "dc.date", "dcterms.created", "dc.date.created",
              "pubdate", "publishdate", "publish-date", "publish_date", "published", "date", "sailthru.date",
              "parsely-pub-date", "article.published", "cxenseparse:recs:publishtime")
_MODIFIED_META = ("article:modified_time", "og:updated_time", "datemodified", "dcterms.modified",
                  "dc.date.modified", "last-modified", "lastmod")
_AUTHOR_META = ("author", "article:author", "dc.creator", "dcterms.creator", "sailthru.author",
                "parsely-author", "byl", "twitter:creator")
# The Highwire Press tag that scholarly pages (and Google Scholar) use: one author a tag, often
# written "Last, First".
_CITATION_AUTHOR = "citation_author"


@dataclass(frozen=True)
class PageMetadata:
    """What a page says about its article: the one definition of the metadata fields, which
    :class:`normalize.Article` extends with the text. Every field may be empty."""

    title: str | None = None
    """The headline, without the site's name."""
    authors: tuple[str, ...] = ()
    """Author names in page order: people only (an organisation is not an author)."""
    published: datetime | None = None
    """Publication time with the publisher's offset (UTC when the page gives none)."""
    modified: datetime | None = None
    """Last modification time, timezone-aware."""
    language: str | None = None
    """ISO 639-1 code. As the cascade reads it, the language the page declares (``<html
    lang>``, ``inLanguage``, ``content-language``, ``og:locale``); in an ``Article``, that
    declaration checked against the text (``normalize.settle_article_language``)."""
    canonical_url: str | None = None
    """The URL the page declares as canonical (``rel=canonical``, else ``og:url``), as written."""
    description: str | None = None
    """The page's summary (JSON-LD ``description``, ``og:description``, ``<meta
    name=description>``)."""
    section: str | None = None
    """Section of the site the article belongs to (``articleSection``, ``article:section``)."""
    tags: tuple[str, ...] = ()
    """Keywords and tags the page declares."""
    image_url: str | None = None
    """The lead image."""
    site_name: str | None = None
    """The publication's name."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each field came from: field name → ``json-ld``, ``opengraph``, ``meta``,
    ``microdata``, ``time-element``, ``url``, ``dateline``, ``byline``, ``h1``,
    ``title-element`` or ``trafilatura`` (never for the date). Besides the fields: ``declared_language`` says where the declared
    language was read (``html-lang``, ``json-ld``, ``meta``, ``opengraph``), ``language``
    how an ``Article``'s language was settled (``declared``, ``detected``,
    ``declared+detected``), and ``article_body`` that the page ships a JSON-LD
    ``articleBody``."""


@dataclass(frozen=True)
class Article(PageMetadata):
    """What extraction found on one page: the article's text and the page's metadata (the
    fields of :class:`~normalize.metadata.PageMetadata`, defined there once, with
    ``language`` checked against the text). Every field may be empty."""

    text: str = ""
    """The article body, one paragraph per line; no navigation, ads or comments."""


def read_metadata(tree: HtmlElement, tags: dict[str, list[str]] | None = None,
                  url: str | None = None) -> tuple[PageMetadata, str | None]:
    """Read the cascade's sources from an unpruned tree (before text extraction): the
    page's metadata, and the JSON-LD ``articleBody`` when the page ships one (for the text
    extraction to compare with). ``tags`` are the page's :func:`meta_tags`, when the caller
    has them already; ``url`` is the page's address (its host names the site, its path may
    date the article)."""
    props = meta_tags(tree) if tags is None else tags
    nodes = list(_json_ld_nodes(tree))
    ld = _json_ld_article(nodes)
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def take(name: str, source: str, value: Any) -> None:
        """The field from this source, unless an earlier one had it; ``value`` may be a
        function, called only then (the sources that search the whole tree)."""
        if name in found:
            return
        if callable(value):
            value = value()
        if value not in (None, "", (), []):
            found[name] = value
            sources[name] = source

    canonical = _text(_first(tree.xpath(
        "//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href")))
    og_url = _text(_first(props.get("og:url")))
    statements = [("json-ld", _title_text(ld.get("headline") or ld.get("name"))),
                  ("opengraph", _title_text(_first(props.get("og:title")))),
                  ("meta", _title_text(_first(props.get("twitter:title"))))]
    title_element = _title_text(_first_text(tree, "//title"))
    labels = _Labels.of(
        [_text(_first(props.get("og:site_name"))), *_publisher_names(ld),
         _text(_first(props.get("application-name")))],
        [url, canonical, og_url],
        [_text(s) for s in _as_list(ld.get("articleSection")) if isinstance(s, str)]
        + [_text(s) for s in props.get("article:section", [])])
    h1s = [(el, text) for el in islice(tree.iter("h1"), _MAX_H1)
           if (text := _title_text(_bounded_text(el, 10 * _MAX_TITLE)))
           and not labels.names_the_site(text)]  # a logo's <h1> is no headline
    given = [text for _, text in statements] + [title_element]
    headline, h1 = _main_h1(h1s, given) or (None, None)
    if headline is not None:
        h1 = _confirmed_part(headline, h1, given, labels)
    labels = labels.with_names([_site_name_from_title(title_element, h1)])
    # Where the byline and the dateline are looked for: the headline, else the page's only
    # <h1> (an SEO title that differs from it leaves it unconfirmed as the title, not as the
    # heading the article starts under).
    anchor = headline if headline is not None else (h1s[0][0] if len(h1s) == 1 else None)
    states_headline = (any(t.endswith("NewsArticle") for t in _types(ld)) if ld
                       else (_text(_first(props.get("og:type"))) or "").casefold() == "article")
    if not states_headline:
        # A newsroom's NewsArticle states its headline; other articles' JSON-LD (a blog's
        # BlogPosting, a generic Article) is most often an SEO plugin's, whose headline is the
        # title written for search engines, and a page without JSON-LD that does not call
        # itself an article (og:type "website", or none) gives its page's title, not a
        # headline: the page's own <h1> is the one its readers see. It is trusted only when
        # another statement confirms it (_main_h1).
        statements.insert(0, ("h1", h1))
    else:
        statements.append(("h1", h1))
    statements.append(("title-element", title_element))
    title, title_source = _choose_title(statements, labels)
    take("title", title_source or "", title)

    # Authors: the first source that names a person. An organisation (the site's own name,
    # or what the JSON-LD types as one) is not a person, and never an author: publishers
    # name themselves when an article has no byline, and an archive that counted them would
    # credit "BBC News" with every unsigned story.
    not_people = labels.with_names(_organisation_names(nodes, ld)).with_people(
        _person_names(nodes, ld))
    ld_author = ld.get("author") or ld.get("creator")
    for source, names in (("json-ld", lambda: _ld_authors(ld_author)),
                          ("meta", lambda: _meta_authors(props)),
                          ("microdata", lambda: _microdata_authors(tree, anchor)),
                          ("byline", lambda: _byline_authors(tree)),
                          ("byline", lambda: _headline_byline(anchor)),
                          ("byline", lambda: _bold_byline(anchor)),
                          ("byline", lambda: _author_page_links(anchor))):
        persons, organisations = _clean_authors(names(), not_people)
        if persons:
            take("authors", source, persons)
            break
        if organisations and "authors" not in sources:
            # The page says an organisation wrote it: no person, and no guess either
            # (complete_with). Said in the sources, so a record tells why it has no author.
            sources["authors"] = f"{source}: an organisation, not a person"

    take("published", "json-ld", parse_datetime(ld.get("datePublished") or ld.get("dateCreated")
                                                or ld.get("uploadDate")))
    language = (iso639_1(tree.get("lang") or tree.get("xml:lang"))
                or iso639_1(_text(ld.get("inLanguage"))))
    for name in _DATE_META:
        value = _first(props.get(name))
        take("published", "opengraph" if name.startswith(("article:", "og:")) else "meta",
             parse_datetime(value) or _parse_dateline(value, language) if value else None)
    take("published", "microdata", lambda: parse_datetime(_first(
        tree.xpath("//*[@itemprop='datePublished']/@content | //*[@itemprop='datePublished']/@datetime"))))
    take("published", "time-element", lambda: parse_datetime(_first(tree.xpath(
        "(//article//time[@datetime] | //main//time[@datetime] | //time[@pubdate][@datetime])/@datetime"))))
    # What else the page states: the JSON-LD of the page itself (no article object), a date
    # in its address, a dateline by its headline. Nothing is guessed: a page that states no
    # date has none, and is filed under its fetch date.
    take("published", "json-ld", lambda: _web_page_date(nodes))
    take("published", "url", lambda: _url_date(url) or _url_date(canonical) or _url_date(og_url))
    take("published", "dateline", lambda: _dateline_date(anchor, language))

    take("modified", "json-ld", parse_datetime(ld.get("dateModified")))
    for name in _MODIFIED_META:
        take("modified", "opengraph" if name.startswith(("article:", "og:")) else "meta",
             parse_datetime(_first(props.get(name))))
    take("modified", "microdata",
         lambda: parse_datetime(_first(tree.xpath("//*[@itemprop='dateModified']/@content"))))

    take("declared_language", "html-lang", iso639_1(tree.get("lang") or tree.get("xml:lang")))
    take("declared_language", "json-ld", iso639_1(_text(ld.get("inLanguage"))))
    take("declared_language", "meta", iso639_1(_first(props.get("content-language"))
                                               or _first(props.get("dc.language"))))
    take("declared_language", "opengraph", iso639_1(_first(props.get("og:locale"))))

    take("canonical_url", "link", canonical)
    take("canonical_url", "opengraph", og_url)

    take("description", "json-ld", _text(ld.get("description")))
    take("description", "opengraph", _text(_first(props.get("og:description"))))
    take("description", "meta", _text(_first(props.get("description"))))

    take("section", "json-ld", _text(_first(_as_list(ld.get("articleSection")))))
    take("section", "opengraph", _text(_first(props.get("article:section"))))

    take("tags", "json-ld", tuple(_keywords(ld.get("keywords"))))
    take("tags", "opengraph", tuple(_dedupe(_text(t) for t in props.get("article:tag", []))))
    take("tags", "meta", tuple(_keywords(_first(props.get("news_keywords"))
                                         or _first(props.get("keywords")))))

    take("image_url", "json-ld", _ld_image(ld.get("image") or ld.get("thumbnailUrl")))
    take("image_url", "opengraph", _text(_first(props.get("og:image"))))
    take("image_url", "meta", _text(_first(props.get("twitter:image"))))

    take("site_name", "opengraph", labels.site_names[0] if labels.site_names else None)
    body = ld.get("articleBody")
    take("article_body", "json-ld", body.strip() if isinstance(body, str) else None)
    # Taken under their own names, so that ``sources`` says where each was found; the
    # declared language is the metadata's ``language``, the body is not metadata.
    article_body = found.pop("article_body", None)
    found["language"] = found.pop("declared_language", None)
    return PageMetadata(**found, sources=sources), article_body


def complete_with(meta: PageMetadata, doc: Any) -> PageMetadata:
    """Fill fields the cascade left empty from trafilatura's document, the last resort; never
    the date (trafilatura guesses one for a page that states none: a copyright year's first
    of January, or the day it was fetched), nor an author that is the site."""
    if doc is None:
        return meta
    labels = _Labels.of([meta.site_name, _text(getattr(doc, "sitename", None))],
                        [meta.canonical_url, _text(getattr(doc, "url", None))], [])
    title = _title_text(getattr(doc, "title", None))
    authors = [a.strip() for a in (getattr(doc, "author", None) or "").split(";") if a.strip()]
    fallback = {
        "title": _strip_labels(title, labels) if title else None,
        "authors": _clean_authors(authors, labels)[0],
        "description": _text(getattr(doc, "description", None)),
        "image_url": _text(getattr(doc, "image", None)),
        "tags": tuple(t for t in (getattr(doc, "tags", None) or []) if t),
        "section": _text(_first(getattr(doc, "categories", None) or [])),
        "site_name": _text(getattr(doc, "sitename", None)),
    }
    updates: dict[str, Any] = {}
    sources = dict(meta.sources)
    for name, value in fallback.items():
        if name in meta.sources and not getattr(meta, name):
            continue  # the page said why it has none (an organisation as author)
        if getattr(meta, name) in (None, "", ()) and value not in (None, "", ()):
            updates[name] = value
            sources[name] = "trafilatura"
    if not updates:
        return meta
    return replace(meta, **updates, sources=sources)


# The zones an RFC 822 date may end in: an offset, or a name the RFC defines.
_RFC822_ZONE = re.compile(r"(?:[+-]\d{4}|\b(?:GMT|UTC?|Z|[ECMP][SD]T))$", re.IGNORECASE)


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 and W3C datetimes (and common near-misses), or RFC 822 dates as feeds and
    HTTP write them → aware datetime; a date alone is midnight UTC, and a time without
    offset is taken as UTC. None when unparseable, or outside 1990-2100. The one date
    parser: page metadata, sitemaps and JSON feeds all go through it."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = re.sub(r"Z$", "+00:00", text)
    text = re.sub(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*([+-]\d{2})(\d{2})$", r"\1\2:\3", text)
    text = text.replace(" ", "T", 1) if re.match(r"\d{4}-\d{2}-\d{2} \d", text) else text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # "Fri, 03 May 2024 16:19:08 +0200", ending in a zone RFC 822 defines: Python's
        # parser reads any other ("CEST", or asctime's year in that place) as UTC, a
        # guess that is worse than the next source's date.
        if not _RFC822_ZONE.search(value.strip()):
            return None
        try:  # it insists on a time, so prose stays out
            parsed = parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
    if not 1990 <= parsed.year <= 2100:  # epoch zeros and typos are not publication dates
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def iso639_1(value: str | None) -> str | None:
    """``de-AT``, ``de_DE``, ``DE`` → ``de``; None for anything else."""
    if not value or not isinstance(value, str):
        return None
    code = re.split(r"[-_]", value.strip())[0].lower()
    return code if re.fullmatch(r"[a-z]{2}", code) else None


# -- sources -----------------------------------------------------------------------------


def meta_tags(tree: HtmlElement) -> dict[str, list[str]]:
    """Every ``<meta>`` value by lower-cased property, name, itemprop or http-equiv."""
    props: dict[str, list[str]] = {}
    for el in tree.iter("meta"):
        key = (el.get("property") or el.get("name") or el.get("itemprop")
               or el.get("http-equiv") or "").strip().lower()
        content = el.get("content")
        if key and content and content.strip():
            props.setdefault(key, []).append(content.strip())
    return props


def declares_article(tree: HtmlElement) -> bool:
    """Whether a page says it is an article: ``og:type`` article, or a JSON-LD object of
    one of :data:`ARTICLE_TYPES`. Linear in the page's size, whatever its markup (it reads
    a parsed tree, never the markup with a regular expression)."""
    if any(t.lower().startswith("article") for t in meta_tags(tree).get("og:type", ())):
        return True
    return any(ARTICLE_TYPES.intersection(t for t in _as_list(node.get("@type"))
                                          if isinstance(t, str))
               for node in _json_ld_nodes(tree))


def is_article_page(html: str) -> bool:
    """Whether the page says it is an article (``og:type`` article, or a JSON-LD article
    object); safe and linear on any input."""
    try:
        # lxml's own parser, not trafilatura's loader, which turns short documents away.
        tree = lxml.html.document_fromstring(html) if html.strip() else None
    except (lxml.etree.ParserError, ValueError):
        return False
    return tree is not None and declares_article(tree)


def _json_ld_nodes(tree: HtmlElement) -> Iterator[dict[str, Any]]:
    """Every object of the page's JSON-LD scripts (``@graph`` and lists walked)."""
    for script in jsonld.scripts(tree):
        yield from jsonld.objects(jsonld.parse(script))


def _json_ld_article(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's schema.org article object (the one with the longest body or a headline)."""
    best: dict[str, Any] = {}
    for node in nodes:
        if _types(node) & _METADATA_TYPES and (node.get("headline") or node.get("datePublished")):
            if not best or (node.get("articleBody") and not best.get("articleBody")):
                best = node
    return best


def _types(node: dict[str, Any]) -> set[str]:
    """The ``@type`` of a JSON-LD object, as a set of strings."""
    return {t for t in _as_list(node.get("@type")) if isinstance(t, str)}


def _is_organisation(node: Any) -> bool:
    """Whether a JSON-LD object is an organisation and not a person: SEO plugins type a
    site's writers ``["Person", "Organization"]``, and those are people."""
    if not isinstance(node, dict):
        return False
    types = _types(node)
    return "Person" not in types and any(_ORGANISATION_TYPE.search(t) for t in types)


def _ld_authors(value: Any) -> list[str]:
    """The names a JSON-LD ``author`` gives, in order; an organisation's name whole."""
    names: list[str] = []
    for item in _as_list(value):
        if isinstance(item, dict):
            name = _text(item.get("name"))
            if not name and (item.get("givenName") or item.get("familyName")):
                name = _text(f"{item.get('givenName', '')} {item.get('familyName', '')}")
            if _is_organisation(item):
                names.extend([name] if name else [])
            else:
                # One "Person" often names several: "A und B, dpa".
                names.extend(_split_byline(name))
        elif isinstance(item, str):
            names.extend(_split_byline(item))
    return _dedupe(names)


def _organisation_names(nodes: list[dict[str, Any]], ld: dict[str, Any]) -> list[str]:
    """Names the page's JSON-LD gives organisations and websites: top-level objects, and the
    article's publisher and authors."""
    return _ld_names(nodes, ld, ("publisher", "author", "creator", "sourceOrganization"),
                     _is_organisation)


def _person_names(nodes: list[dict[str, Any]], ld: dict[str, Any]) -> list[str]:
    """Names the page's JSON-LD types as a ``Person``: top-level objects, and the article's
    authors."""
    return _ld_names(nodes, ld, ("author", "creator"),
                     lambda node: isinstance(node, dict) and "Person" in _types(node))


def _ld_names(nodes: list[dict[str, Any]], ld: dict[str, Any], keys: tuple[str, ...],
              kind: Callable[[Any], bool]) -> list[str]:
    """The names of the JSON-LD objects of a ``kind``: the article's under ``keys``, and
    top-level ones (a bounded number of each)."""
    found = [item for key in keys for item in _as_list(ld.get(key))[:_MAX_ORGANISATIONS]
             if kind(item)]
    found += islice((node for node in nodes if kind(node)), _MAX_ORGANISATIONS)
    return [name for name in (_text(node.get("name")) for node in found) if name]


def _web_page_date(nodes: list[dict[str, Any]]) -> datetime | None:
    """The publication date the page's JSON-LD ``WebPage`` (or kin) states, for a page with
    no article object."""
    for node in nodes:
        if any(_PAGE_TYPE.search(t) for t in _types(node)):
            published = parse_datetime(node.get("datePublished"))
            if published is not None:
                return published
    return None


def _meta_authors(props: dict[str, list[str]]) -> list[str]:
    for name in _AUTHOR_META:
        values = [v for v in props.get(name, []) if not v.startswith(("http://", "https://", "@"))]
        if values:
            names: list[str] = []
            for value in values:
                names.extend(_split_byline(value))
            return _dedupe(names)
    # One name a tag: its comma parts the family name from the given names, not two people.
    return _dedupe(" ".join(reversed([part.strip() for part in value.split(",", 1)]))
                   if value.count(",") == 1 else value
                   for value in props.get(_CITATION_AUTHOR, []))


def _microdata_authors(tree: HtmlElement, headline: HtmlElement | None) -> list[str]:
    """The names of the ``itemprop="author"`` elements of one item: the one the headline is
    in, else the first that names an author. A page lists other articles' authors too
    (related posts, a sidebar), each in an item or an ``<article>`` of its own."""
    found = tree.xpath("//*[@itemprop='author']")[:_MAX_MICRODATA_AUTHORS]
    items = [_item_of(el) for el in found]
    around = set(headline.iterancestors()) if headline is not None else set()
    chosen = next((item for item in items if item in around), items[0] if items else None)
    names = []
    for el, item in zip(found, items):
        if item is not chosen:
            continue
        inner = el.xpath(".//*[@itemprop='name']")
        value = (inner[0].get("content") or _byline_text(inner[0])) if inner else (
            el.get("content") or _byline_text(el))
        names.extend(_split_byline(value))
    # Markup that some themes put on a post's title or teaser: a sentence is no one's name.
    return _dedupe(name for name in names if not _reads_as_text(name))


def _item_of(el: HtmlElement) -> HtmlElement | None:
    """The microdata item (or else the ``<article>``) that ``el`` belongs to."""
    return next((a for a in el.iterancestors() if a.get("itemscope") is not None
                 or a.tag == "article"), None)


def _byline_authors(tree: HtmlElement) -> list[str]:
    links = [_text(_AUTHOR_LINK_LABEL.sub("", a.text_content()))
             for a in tree.xpath("//a[@rel='author']")]
    if any(links):
        return _dedupe(links)
    for el in tree.xpath("//*[contains(concat(' ', @class, ' '), ' byline ') or "
                         "contains(@class, 'author-name') or contains(@class, 'byline__name')]"):
        names = _split_byline(_byline_text(el))
        if names and _name_shaped(names):
            return names
    return []


def _name_shaped(names: list[str]) -> bool:
    """Whether every one of ``names`` has the shape of a name, as a byline in free text writes
    it: a few words, the first capitalised, no digit (not a sentence of an author's bio), and
    more than the word that introduces a byline ("By", its name in another element)."""
    return all(not _reads_as_text(name) and name[0].isupper()
               and not _BYLINE_PREFIX.fullmatch(name + " ") for name in names)


def _reads_as_text(name: str) -> bool:
    """Whether ``name`` is more than a name can be: over five words, or a digit in it."""
    return len(name.split()) > 5 or any(c.isdigit() for c in name)


def _byline_text(el: HtmlElement) -> str | None:
    """The text of an element that may hold a byline, or None when it is too long to be one
    (read only that far): byline elements may be nested, and reading and cleaning all the
    text of each of 250 nested ones took about 30 s on a page of 4 MB."""
    parts, size = [], 0
    for piece in _text_pieces(el):
        size += len(piece)
        if size > _MAX_BYLINE_MARKUP:
            return None
        parts.append(piece)
    return "".join(parts)


def _headline_byline(headline: HtmlElement | None) -> list[str]:
    """The names of a byline by the headline in no byline markup: the first short line after
    the ``<h1>`` that starts with "By" (or its kin in other languages) and names people,
    each name a few capitalised words ("von Dr. Max Kolter", "By Jane Doe | May 3")."""
    if headline is None:
        return []
    for line in _lines_after(headline):
        if not _BYLINE_PREFIX.match(line):
            continue
        line = re.split(r" [|•·—–-] | ?[|•·] ?", line, maxsplit=1)[0]
        names = _split_byline(line)
        if names and _name_shaped(names):
            return names
    return []


def _bold_byline(headline: HtmlElement | None) -> list[str]:
    """The names of a byline printed as a bold paragraph of its own before the story, as
    some newspapers set it ("<p><strong>Jane Doe</strong></p>", two people as "Jane
    Doe/John Roe"): among the first few paragraphs after the headline and before the first
    long one, a paragraph all in bold whose text is names, each of two to five capitalised
    words (a single bold word is a kicker, or the story's first letter)."""
    if headline is None:
        return []
    seen = 0
    for top in _around(headline, preceding=False):
        for paragraph in top.iter("p"):
            text = _bounded_text(paragraph, _MAX_BYLINE)
            if text is None:  # a long paragraph: the story has begun
                return []
            text = _text(text)
            if not text:
                continue
            seen += 1
            if seen > _BOLD_BYLINE_PARAGRAPHS:
                return []
            if not _all_bold(paragraph):
                continue
            names = listed_names(_BYLINE_PREFIX.sub("", text))
            if names and _name_shaped(names) and all(
                    len(name.split()) >= 2 and all(word[0].isupper() or word in _NAME_PARTICLES
                                                   for word in name.split())
                    for name in names):
                return names
    return []


# How many paragraphs after the headline a bold byline is looked for in.
_BOLD_BYLINE_PARAGRAPHS = 4
# An author's page, as content systems address it: a folder named for authors (in the
# languages of the sites archived) and the author's slug, nothing after it
# (WordPress's "/author/jane-doe/", "/autoren/max-mustermann").
_AUTHOR_PAGE = re.compile(r"/(?:authors?|autor(?:en|es|[ei])?|auteurs?|contributors?|journalists?|"
                          r"writers?|reporters?)/[^/]+/?$", re.IGNORECASE)
# How far up from a byline's link its box (the other authors' links) is looked for.
_BYLINE_BOX_LEVELS = 3
# A label that gives the name after it another role than the author's ("Edited by:",
# "Contributions From:", "Photos:"), at the end of the text before a link.
_OTHER_ROLE = re.compile(rf"\b(?:{_OTHER_ROLES}|contributions?|additional reporting)(?: by| from)?\s*:?$",
                         re.IGNORECASE)
# The words of a name not written with a capital ("Ursula von der Leyen"): in a bold line,
# any other is a term's ("Lecture with Remote Instruction").
_NAME_PARTICLES = frozenset(("von", "van", "der", "den", "de", "du", "da", "das", "dos", "di",
                             "del", "della", "la", "le", "bin", "ibn", "al", "el", "y", "e"))


def _all_bold(paragraph: HtmlElement) -> bool:
    """Whether all the text of ``paragraph`` stands in ``<strong>`` or ``<b>`` elements."""
    if (paragraph.text or "").strip():
        return False
    bold = False
    for child in paragraph:
        if (child.tail or "").strip():
            return False
        if child.tag in ("strong", "b"):
            bold = True
        elif isinstance(child.tag, str) and child.tag != "br" and (_text(child.text_content()) or ""):
            return False
    return bold


def _author_page_links(headline: HtmlElement | None) -> list[str]:
    """The names of a byline that is only links to the authors' pages: the first link to an
    author's page (``/author/<slug>/``, see ``_AUTHOR_PAGE``) in the text by the headline
    where a dateline is looked for (``_DATELINE_AFTER``), with the other such links of its
    byline box (the largest of its near ancestors that is still a byline's length). How
    blogs and many newspapers print a byline ("<a href="/author/jane-doe/">Jane Doe</a>")
    with no markup that says what it is. A link labelled with another role ("Edited by",
    "Contributions from") is not an author's; one further on is a related story's."""
    if headline is None:
        return []
    # Past the text where a dateline is looked for, the story has begun.
    first = next((el for el in _nearby(_around(headline, preceding=False), _DATELINE_AFTER)
                  if _author_link_name(el) is not None), None)
    if first is None:
        return []
    box = first
    for ancestor in islice(first.iterancestors(), _BYLINE_BOX_LEVELS):
        if _bounded_text(ancestor, _MAX_BYLINE) is None:
            break
        box = ancestor
    return _dedupe(name for name in map(_author_link_name, box.iter("a")) if name)


def _author_link_name(el: HtmlElement) -> str | None:
    """The name a link to an author's page shows, when it is a person's: two words or more
    (a single word is a menu's "Authors" or a first name: "Articles by Juliette"), shaped
    as a name, and not labelled with another role than the author's."""
    if el.tag != "a" or not _AUTHOR_PAGE.search(urlsplit(el.get("href") or "").path):
        return None
    shown = _text(_bounded_text(el, _MAX_BYLINE)) or ""
    name = _text(_AUTHOR_LINK_LABEL.sub("", shown))
    if (not name or len(name.split()) < 2 or not _name_shaped([name])
            or _OTHER_ROLE.search(_label_before(el, shown))):
        return None
    return name


def _label_before(link: HtmlElement, shown: str) -> str:
    """The text just before ``link`` (which shows ``shown``) in its byline ("By", "Edited
    by:"), from the nearest of its ancestors that has text before it; read only as far as a
    byline goes."""
    for ancestor in islice(link.iterancestors(), _BYLINE_BOX_LEVELS):
        text = _bounded_text(ancestor, _MAX_BYLINE)
        if text is None:
            return ""
        text = _text(text) or ""
        before = text[:text.find(shown)].strip() if shown in text else ""
        if before:
            return before
    return ""


def listed_names(text: str) -> list[str]:
    """The names a line lists, separated as a byline separates them (commas, "and" and its
    kin, "&", slashes: "Jane Doe/John Roe")."""
    return _dedupe(name.strip() for part in _AUTHOR_SPLIT.split(text)
                   for name in part.split("/") if name.strip())


def _split_byline(value: str | None) -> list[str]:
    text = _text(value)
    if not text or len(text) > _MAX_BYLINE:
        return []
    if _NOT_AN_AUTHOR.match(text):
        return []
    # An address beside a name goes; an address alone is how the page names its author.
    text = _BYLINE_PREFIX.sub("", _AUTHOR_LINK_LABEL.sub("", _EMAIL.sub("", text).strip() or text))
    return _dedupe(part for part in _AUTHOR_SPLIT.split(text) if part and len(part) < 80)


def _clean_authors(names: list[str], not_people: _Labels) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The people among ``names`` and the rest, each without role suffixes and initials in
    brackets. The rest: organisations, the site (as it calls itself, or its host) or what
    the page's JSON-LD types as one; and desk codes ("red"), which go with the people a
    byline names but do not stand for one. A CMS's account ("admin") is neither."""
    cleaned = [name for name in _dedupe(_without_organisation_suffix(
        _ROLE_SUFFIX.sub("", _drop_bracketed(name)).strip(" ,;"), not_people) for name in names)
        if name.casefold() not in _ACCOUNT_NAMES]
    organisation = [not_people.names_an_organisation(name) for name in cleaned]
    named = [name for name, org in zip(cleaned, organisation) if not org]
    if all(_DESK_CODE.fullmatch(name) for name in named):
        return (), tuple(name for name, org in zip(cleaned, organisation) if org) + tuple(named)
    return tuple(named), tuple(name for name, org in zip(cleaned, organisation) if org)


def _without_organisation_suffix(name: str, not_people: _Labels) -> str:
    """``name`` without what a dash or bar adds after it when that names the site or an
    organisation ("Jane Doe - Example Editorial Team" on example.com → "Jane Doe")."""
    for separator in _TITLE_SEPARATOR.finditer(name):
        if any(c in separator.group() for c in ":：/"):  # a label before it, or two names
            continue
        head, tail = name[:separator.start()].strip(), name[separator.end():].strip()
        if head and not_people.names_an_organisation(tail):
            return head
    return name


def _drop_bracketed(name: str) -> str:
    """``name`` without its bracketed parts ("Jane Doe (dpa)" → "Jane Doe")."""
    # Only up to the last closing bracket: an opening one after it closes nowhere, and each
    # such would be read to the end of the name (40,000 "(" took 7 s; a million, hours).
    end = max(name.rfind(")"), name.rfind("]")) + 1
    return _BRACKETED.sub("", name[:end]) + name[end:]


def _publisher_names(ld: dict[str, Any]) -> list[str]:
    return [name for name in (_text(p.get("name")) for p in _as_list(ld.get("publisher"))
                              if isinstance(p, dict)) if name]


def _keywords(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return _dedupe(_text(v) for v in _as_list(value) if isinstance(v, str))


def _ld_image(value: Any) -> str | None:
    item = _first(_as_list(value))
    if isinstance(item, dict):
        item = item.get("url") or item.get("contentUrl")
    return _text(item) if isinstance(item, str) else None


# -- titles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    """What a page adds to a headline or puts where an author goes that names no article
    and no person: the site's names, the host's labels, the sections."""

    site_names: tuple[str, ...]
    """The site's names as the page writes them (``og:site_name``, publisher, ...), in order."""
    names: frozenset[str]
    """Those names and the host's labels ("golem" of www.golem.de), squashed."""
    hosts: frozenset[str]
    """The host names, squashed ("goleminde" of golem.de), and the label of each that names
    the site ("golem")."""
    sections: frozenset[str]
    """The page's sections, squashed."""
    folders: frozenset[str] = frozenset()
    """The words that name folders of the page's address, squashed ("district" of
    /district/343604): sections the page does not declare otherwise."""
    people: frozenset[str] = frozenset()
    """Names the page's JSON-LD types as persons, squashed: never an organisation, also
    where the site bears the name (a personal site: "Ben Nadel" on bennadel.com)."""

    @classmethod
    def of(cls, site_names: list[str | None], urls: list[str | None],
           sections: list[str | None]) -> _Labels:
        hosts: set[str] = set()
        for url in urls:
            host = (urlsplit(url).hostname or "") if isinstance(url, str) else ""
            labels = [label for label in host.split(".")[:-1] if label not in _GENERIC_HOST_LABELS]
            # The site's own label only, the last before the suffix: the labels before it
            # name a section or a service ("teaching" of teaching.resources.osu.edu, "blog",
            # a writer's "janedoe.substack.com"), and a headline or a person may start with
            # the same word.
            hosts.update(_squash(label) for label in labels[-1:] if len(label) >= 3)
            if labels:
                hosts.add(_squash(".".join(labels) + host[host.rfind("."):]))
        folders = {_squash(folder) for url in urls if isinstance(url, str)
                   for folder in urlsplit(url).path.split("/")[1:-1] if folder.isalpha()}
        names = tuple(_dedupe(site_names))
        return cls(names, frozenset(filter(None, map(_squash, names))), frozenset(hosts),
                   frozenset(filter(None, (_squash(s) for s in sections if s))),
                   folders=frozenset(folders))

    def with_names(self, names: list[str | None]) -> _Labels:
        more = _dedupe(names)
        return replace(self, site_names=tuple(_dedupe([*self.site_names, *more])),
                       names=self.names | {n for n in map(_squash, more) if n})

    def with_people(self, names: list[str]) -> _Labels:
        return replace(self, people=self.people | {n for n in map(_squash, names) if n})

    def names_the_site(self, text: str) -> bool:
        """Whether ``text`` (a part of a title) is the site's name, or close to it: one
        contains the other, and is at least half of it ("Golem.de" and golem.de)."""
        squashed = _squash(text)
        return bool(squashed) and any(
            squashed == name or (min(len(squashed), len(name)) >= 3
                                 and (name in squashed or squashed in name)
                                 and 2 * min(len(squashed), len(name)) >= max(len(squashed), len(name)))
            for name in self.names | self.hosts)

    def names_an_organisation(self, name: str) -> bool:
        """Whether an author's ``name`` is the site or another organisation: one of its names
        or its host ("STERN.de"), or a name of more than three letters followed by more
        ("FOCUS online"); never a name the page types as a person. Stricter than
        :meth:`names_the_site`: a person may bear a name that is part of the host's."""
        squashed = _squash(name)

        def among(names: frozenset[str]) -> bool:
            return squashed in names or any(len(n) > 3 and squashed.startswith(n) for n in names)
        # The names the page declares win over a person's type; its host does not.
        return bool(squashed) and (among(self.names)
                                   or (squashed not in self.people and among(self.hosts)))

    def is_label(self, text: str, *, trailing: bool = False, leading: bool = False) -> bool:
        """Whether ``text``, a part of a title, is no part of the headline: the site's name
        or a section. ``trailing``: a part after the headline, where these are labels too:
        a date, a folder of the page's address ("| District" on /district/343604), the
        initials of the site's name ("| WFA" of World Future Awards) and a few words that
        start with the site's name ("Shopify App Store" on apps.shopify.com, "UC Davis
        Children's Hospital" on health.ucdavis.edu). ``leading``: a part before the
        headline, where a word made on the site's name is a label too ("NTV-Thema" on
        n-tv.de)."""
        text = text.strip()
        squashed = _squash(text)
        return (not squashed or self.names_the_site(text) or squashed in self.sections
                or (trailing and len(text) <= 40 and _parse_dateline(text, None) is not None)
                or (trailing and (squashed in self.folders or self._initials_of_a_name(text)
                                  or (len(text.split()) <= 4
                                      and self._starts_with_a_name(squashed, 4))))
                or (leading and len(text.split()) == 1 and self._starts_with_a_name(squashed, 3)))

    def _initials_of_a_name(self, text: str) -> bool:
        """Whether ``text`` is the initials of one of the site's names, in capitals ("WFA"
        of World Future Awards)."""
        return text.isupper() and 2 <= len(text) <= 6 and any(
            len(words := name.split()) >= 2 and text == "".join(w[0] for w in words).upper()
            for name in self.site_names)

    def _starts_with_a_name(self, squashed: str, shortest: int) -> bool:
        return any(len(n) >= shortest and squashed.startswith(n) for n in self.names | self.hosts)


def _title_text(value: Any) -> str | None:
    """A statement of the headline as text, or None when it is too long to be one."""
    text = _text(value)
    return text if text is not None and len(text) <= _MAX_TITLE else None


def _title_key(title: str) -> str:
    """What two statements of one headline share: case, quotes and dashes aside."""
    return _WHITESPACE.sub(" ", title.translate(_TITLE_VARIANTS)).strip().casefold()


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def _main_h1(h1s: list[tuple[HtmlElement, str]], statements: list[str | None]
             ) -> tuple[HtmlElement, str] | None:
    """The page's headline among its ``<h1>`` elements and their texts (pages have a logo's,
    a menu's, a sidebar's): the first that another statement of the headline confirms
    (``og:title``, JSON-LD, ``<title>``: one equals or starts with it, or the two share half
    of its words), else the first when the page makes no other statement."""
    others = [_title_key(s) for s in statements if s]
    if not others:
        return h1s[0] if h1s else None
    for el, text in h1s:
        key = _title_key(text)
        if any(other == key or other.startswith(key) for other in others):
            return el, text
    for el, text in h1s:
        words = _words(text)
        if words and any(2 * len(words & _words(other)) >= len(words) for other in others):
            return el, text
    return None


def _choose_title(statements: list[tuple[str, str | None]], labels: _Labels
                  ) -> tuple[str | None, str | None]:
    """The headline and its source among the page's statements of it, in order of trust:
    each cut down to another statement it is made of (see :func:`_cut_to_statement`) and
    stripped of the labels around it; the first statement in that order wins, in the
    spelling of another that agrees with it when it is written in capitals."""
    given = [text for _, text in statements if text]
    cleaned = [(source, _strip_labels(_cut_to_statement(text, given), labels))
               for source, text in statements if text]
    cleaned = [(source, text) for source, text in cleaned if text]
    if not cleaned:
        return None, None
    source, title = cleaned[0]
    title = _completed(title, [text for _, text in cleaned[1:]])
    if title.isupper():  # a headline set in capitals by the markup: another may have its case
        title = next((text for _, text in cleaned
                      if _title_key(text) == _title_key(title) and not text.isupper()), title)
    return title, source


def _completed(title: str, others: list[str]) -> str:
    """``title`` whole when it was cut short and another statement goes on from it: it ends
    in an ellipsis or leaves a bracket open (SEO plugins cut the JSON-LD headline to about
    110 characters, wherever that falls)."""
    if not (title.endswith(("...", "…")) or title.count("(") > title.count(")")
            or title.count("[") > title.count("]")):
        return title
    key = _title_key(title.rstrip(".… "))
    return max((other for other in others
                if len(other) > len(title) and _title_key(other).startswith(key)),
               key=len, default=title)


def _confirmed_part(headline: HtmlElement, h1: str, statements: list[str | None],
                    labels: _Labels) -> str:
    """The part of the ``<h1>`` text ``h1`` that another statement of the headline is, when
    the whole is not: the text of an element inside it, or the whole but one element.
    Headings hold more than the headline in elements of their own: a "Title:" label, the
    source and a comment count after it, a byline in a nested heading."""
    given = [text for text in statements if text]
    others = {_title_key(text) for text in (_strip_labels(_cut_to_statement(text, given), labels)
                                            for text in given) if text}
    if not others or _title_key(h1) in others:
        return h1
    for el in islice(headline.iterdescendants(), _MAX_H1_PARTS):
        if not isinstance(el.tag, str):
            continue
        for part in ("".join(_text_pieces(el)), "".join(_text_pieces(headline, left_out=el))):
            part = _text(part)
            # Two words at least: a headline, not a word the statements happen to be.
            if part and " " in part and _title_key(part) in others:
                return part
    return h1


def _cut_to_statement(title: str, statements: list[str]) -> str:
    """``title`` cut down to the longest other statement of the headline it is made of: that
    statement, a separator, and more (the site's name, a section, a date, a kicker) after
    it or before it. Not at a colon or a slash: what it joins is part of the headline (a
    kicker, "Nach Gaetz-Rückzug: ...", or a subtitle, "Index Funds: How to Invest")."""
    best = None
    key = _title_key(title)
    for match in _TITLE_SEPARATOR.finditer(title):
        if any(c in match.group() for c in ":：/"):
            continue
        head, tail = title[:match.start()], title[match.end():]
        for other in statements:
            other_key = _title_key(other)
            if other_key == key:
                continue
            if _title_key(head) == other_key and len(head) > len(best or ""):
                best = head
            elif _title_key(tail) == other_key and len(tail) > len(best or ""):
                best = tail
    return best if best is not None else title


def _strip_labels(title: str, labels: _Labels) -> str | None:
    """``title`` without the labels a page writes around a headline: parts after a separator
    that name the site or a section or are a date, and parts before one that name the site
    or a section ("Headline | Politics | Site | 28.04.2023", "Site: Headline")."""
    for name in labels.site_names:  # a name with separators in it, taken whole
        for match in _TITLE_SEPARATOR.finditer(title):
            if match.start() > 0 and title[match.end():] == name:
                title = title[:match.start()]
                break
    while True:
        separators = list(_TITLE_SEPARATOR.finditer(title))
        if not separators:
            return title.strip() or None
        last, first = separators[-1], separators[0]
        if last.start() > 0 and labels.is_label(title[last.end():], trailing=True):
            title = title[:last.start()]
        elif (first.end() < len(title) and first.start() > 0
              and labels.is_label(title[:first.start()], leading=True)):
            title = title[first.end():]
        elif first.start() == 0 and first.end() < len(title):  # a separator leading the text
            title = title[first.end():]
        elif last.end() == len(title) and last.start() > 0:  # or trailing it
            title = title[:last.start()]
        else:
            return title.strip() or None


def _site_name_from_title(title: str | None, h1: str | None) -> str | None:
    """``<title>`` is often the headline, a separator and the site's name: when it starts
    with the ``<h1>``, what follows the separator names the site."""
    if not title or not h1 or not title.startswith(h1):
        return None
    match = _TITLE_SEPARATOR.match(title, len(h1))
    if match is None or match.end() == len(title):
        return None
    return title[match.end():].strip() or None


# -- dates ---------------------------------------------------------------------------------


def _url_date(url: str | None) -> datetime | None:
    """The date a URL's path states (/2024/05/03/, /2024-05-03-), midnight UTC."""
    if not isinstance(url, str):
        return None
    path = urlsplit(url).path
    for match in _URL_DATE.finditer(path):
        try:
            return datetime(int(match[1]), int(match[3]), int(match[4]), tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def _dateline_date(headline: HtmlElement | None, language: str | None) -> datetime | None:
    """The date of a dateline by the headline: the first short line in the text after the
    ``<h1>`` (then before it) that holds a whole date, day, month and year, and does not
    say it is a date of change ("Updated ..."). Midnight UTC: a dateline's time of day
    comes without its zone."""
    if headline is None:
        return None
    for lines in (_lines_after(headline), _lines_before(headline)):
        for line in lines:
            found = _parse_dateline(line, language)
            if found is not None:
                return found
    return None


def _lines_after(headline: HtmlElement) -> Iterator[str]:
    """Short lines of text after the headline, in document order, until enough text went
    by: its following siblings, then its ancestors' (the headline's block may end right
    after it)."""
    return _short_lines(_around(headline, preceding=False), _DATELINE_AFTER)


def _lines_before(headline: HtmlElement) -> Iterator[str]:
    """Short lines of text before the headline, the nearest block first."""
    return _short_lines(_around(headline, preceding=True), _DATELINE_BEFORE)


def _around(headline: HtmlElement, *, preceding: bool) -> Iterator[HtmlElement]:
    for node in (headline, *islice(headline.iterancestors(), _DATELINE_LEVELS)):
        yield from node.itersiblings(preceding=preceding)


def _short_lines(elements: Iterator[HtmlElement], budget: int) -> Iterator[str]:
    """The texts of these elements and of the elements in them (see ``_nearby``) that are
    short enough to be a dateline. Each element's text is read only as far as a dateline
    goes."""
    for el in _nearby(elements, budget):
        text = _bounded_text(el, 4 * _MAX_DATELINE)
        if text is not None:
            text = _text(text)
            if text and len(text) <= _MAX_DATELINE:
                yield text


def _nearby(elements: Iterator[HtmlElement], budget: int) -> Iterator[HtmlElement]:
    """These elements and the elements in them, in document order, until ``budget``
    characters of text (or a quarter as many elements) went by: what stands by the headline,
    where a dateline or a byline is; no scripts or styles."""
    seen = visited = 0
    for top in elements:
        for el in top.iter():
            visited += 1
            if seen > budget or visited > budget // 4:
                return
            if not isinstance(el.tag, str) or el.tag in ("script", "style", "noscript", "template"):
                continue
            seen += len((el.text or "").strip()) + len((el.tail or "").strip())
            yield el


def _bounded_text(el: HtmlElement, limit: int) -> str | None:
    """The text of ``el``, or None when it is longer than ``limit`` characters or holds more
    than ``limit`` elements (read only that far: the elements by a headline are read one
    inside the other, and a block of many empty ones would be read again by each)."""
    if next(islice(el.iter(), limit, None), None) is not None:
        return None
    parts, size = [], 0
    for piece in _text_pieces(el):
        size += len(piece)
        if size > limit:
            return None
        parts.append(piece)
    return "".join(parts)


def _text_pieces(el: HtmlElement, left_out: HtmlElement | None = None) -> Iterator[str]:
    """The text of ``el`` piece by piece, as ``itertext`` gives it, and a space where a line
    breaks or a block starts or ends: they part the words on either side as a browser shows
    them ("WEEKEND<br>CODING AGENT", "Headline<h3>Posted on ...</h3>"). Without the element
    ``left_out``, if given (its tail stays)."""
    inside = False
    for event, node in lxml.etree.iterwalk(el, events=("start", "end")):
        if node is left_out:
            inside = event == "start"
        if inside:
            continue
        if event == "start":
            if node.tag in _BREAKS:
                yield " "
            if node.text and isinstance(node.tag, str):
                yield node.text
        else:
            if node.tag in _BREAKS and node is not left_out:
                yield " "
            if node is not el and node.tail:
                yield node.tail


def _parse_dateline(text: str, language: str | None) -> datetime | None:
    """The first whole date (day, month and year) in ``text`` that no word of change precedes,
    midnight UTC; None when there is none. Months written as words in English or in
    ``language``; ``3/4/2024``, which may be either day or month first, is not read."""
    if len(text) > _MAX_DATELINE:  # each pattern looks back to the start of the line
        return None
    months = _month_numbers(language)
    found: list[tuple[int, datetime]] = []
    for pattern in (_DATE_YMD, _DATE_DMY, _DATE_SLASHED, _DATE_D_MONTH_Y, _DATE_MONTH_D_Y, _DATE_CJK):
        for match in pattern.finditer(text):
            if _UPDATED.search(text, 0, match.start()):
                break
            day_month_year = _day_month_year(pattern, match, months)
            if day_month_year is None:
                continue
            try:
                found.append((match.start(), datetime(day_month_year[2], day_month_year[1],
                                                      day_month_year[0], tzinfo=timezone.utc)))
            except ValueError:
                continue
            break
    return min(found, key=lambda item: item[0])[1] if found else None


def _day_month_year(pattern: re.Pattern, match: re.Match, months: dict[str, int]
                    ) -> tuple[int, int, int] | None:
    if pattern is _DATE_YMD or pattern is _DATE_CJK:
        return int(match[3]), int(match[2]), int(match[1])
    if pattern is _DATE_DMY:
        return int(match[1]), int(match[2]), int(match[3])
    if pattern is _DATE_SLASHED:
        first, second = int(match[1]), int(match[2])
        if first > 12 >= second:
            return first, second, int(match[3])
        if second > 12 >= first:
            return second, first, int(match[3])
        return None  # either way round
    if pattern is _DATE_D_MONTH_Y:
        month = months.get(match[2].casefold())
        return (int(match[1]), month, int(match[3])) if month else None
    month = months.get(match[1].casefold())
    return (int(match[2]), month, int(match[3])) if month else None


@functools.cache
def _month_numbers(language: str | None) -> dict[str, int]:
    """Month names and their abbreviations → 1-12, in English and in ``language`` (from
    dateparser's locale data, which trafilatura's date library brings)."""
    numbers = {name: i for i, name in enumerate(_ENGLISH_MONTHS, 1)}
    numbers.update((name[:3], i) for i, name in enumerate(_ENGLISH_MONTHS, 1))
    numbers["sept"] = 9
    if language and language != "en":
        try:
            from dateparser.languages.loader import default_loader

            locale = default_loader.get_locale(language)
        except Exception:  # no data for the language, or no dateparser: English only
            return numbers
        for i, name in enumerate(_ENGLISH_MONTHS, 1):
            for word in locale.info.get(name, []):
                numbers.setdefault(word.casefold().rstrip("."), i)
    return numbers


# -- small helpers ------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """Whitespace-collapsed, entity-decoded text (JSON-LD often double-escapes), or None."""
    if not isinstance(value, str):
        return None
    # Soft hyphens are invisible hyphenation hints, not part of the words.
    value = _WHITESPACE.sub(" ", html.unescape(html.unescape(value))).replace("\xad", "").strip()
    return value or None


def _squash(value: str | None) -> str:
    """Letters and digits only, case folded: "STERN.de" → "sternde"."""
    return "".join(re.findall(r"[^\W_]+", value.casefold())) if value else ""


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def _first_text(tree: HtmlElement, xpath: str) -> str | None:
    found = tree.xpath(xpath)
    return found[0].text_content() if found else None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dedupe(values) -> list[str]:
    """The values as :func:`_text` makes them, each once, in order; empty ones dropped."""
    # A dict, not a list, to look up what was seen: a page may declare 100,000 tags.
    return list(dict.fromkeys(value for value in map(_text, values) if value))
