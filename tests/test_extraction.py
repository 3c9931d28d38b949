"""Extraction: golden thresholds over the Fundus corpus (ours and trafilatura scored in the
same run, as bench/extraction.py does) and over a WCXB subset (the benchmark's measures), the
metadata cascade on small pages, and language."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from bench.extraction import (
    as_extracted,
    load_fundus,
    load_wcxb,
    ours,
    plain_trafilatura,
    score,
)
from normalize import Article, extract_article
from normalize.article import settle_language
from normalize.metadata import PageMetadata, parse_datetime

WCXB_SUBSET = Path(__file__).parent / "data" / "wcxb"


@pytest.fixture(scope="module")
def scores(corpus_extractions):
    pages = load_fundus()  # tests/data/fundus
    # Ours as extracted once for the whole run (conftest): the same call on the same pages.
    return (score("trafilatura", plain_trafilatura, pages),
            score("newsarchive", lambda html, url: as_extracted(corpus_extractions[url]), pages))


# Regression guards: a little under today's figures (title 0.864, authors 0.826, date within
# a day 0.985, within two minutes 0.955, text F1 0.973), so a real loss fails and noise does not.
# Authors: the Fundus references name the publisher as the author of an unsigned article
# (BBC News, AP, Spiegel...); the archive never does (an organisation is not a person,
# README "Extraction"), so those pages count as misses: 0.826 with the rule.
THRESHOLDS = {"title": 0.85, "authors": 0.82, "date_1d": 0.98, "date_2min": 0.94, "text_f1": 0.968}


@pytest.mark.parametrize("measure", sorted(THRESHOLDS))
def test_corpus_scores_hold_and_never_trail_trafilatura(scores, measure):
    baseline, mine = scores
    print(f"{measure}: newsarchive {mine[measure]:.3f}, trafilatura {baseline[measure]:.3f}")
    assert mine[measure] >= THRESHOLDS[measure]
    assert mine[measure] >= baseline[measure]


@pytest.fixture(scope="module")
def wcxb_scores():
    return score("newsarchive", ours, load_wcxb(WCXB_SUBSET), kind="wcxb")


# Regression guards on the 40 WCXB pages in tests/data/wcxb (pages from sites the extraction
# was not written for), in the benchmark's own measures: a little under today's figures
# (word F1 0.958, `with` 0.896, `without` 0.019, exact title 0.775), so a real loss fails.
WCXB_AT_LEAST = {"word_f1": 0.94, "with_": 0.88, "title": 0.75}
WCXB_AT_MOST = {"without": 0.025}  # 0.027 before revision 6


@pytest.mark.parametrize("measure", sorted(WCXB_AT_LEAST))
def test_unseen_sites_scores_hold(wcxb_scores, measure):
    print(f"{measure}: newsarchive {wcxb_scores[measure]:.3f}")
    assert wcxb_scores[measure] >= WCXB_AT_LEAST[measure]


@pytest.mark.parametrize("measure", sorted(WCXB_AT_MOST))
def test_unseen_sites_boilerplate_stays_out(wcxb_scores, measure):
    print(f"{measure}: newsarchive {wcxb_scores[measure]:.3f}")
    assert wcxb_scores[measure] <= WCXB_AT_MOST[measure]


PAGE = """<html lang="{lang}"><head><title>{title_tag}</title>{head}</head>
<body><header><nav><a href="/">Home</a></nav></header><article>{h1}{body}</article></body></html>"""
BODY = "<p>" + " ".join(["The council met on Tuesday to discuss the new budget."] * 8) + "</p>"


def page(head: str = "", *, h1: str = "", title_tag: str = "", lang: str = "en") -> str:
    return PAGE.format(head=head, h1=f"<h1>{h1}</h1>" if h1 else "", title_tag=title_tag,
                       lang=lang, body=BODY)


def ld(data) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def test_json_ld_graph_with_nested_authors_wins_over_opengraph():
    article = extract_article(page(
        ld({"@context": "https://schema.org", "@graph": [
            {"@type": "WebSite", "name": "Daily Example"},
            {"@type": ["NewsArticle"], "headline": "Council passes budget",
             "datePublished": "2024-05-03T18:19:08+02:00", "dateModified": "2024-05-04T09:00:00+02:00",
             "author": [{"@type": "Person", "name": "Ada Lovelace"},
                        {"@type": "Person", "name": "Alan Turing"}],
             "articleSection": ["Politics"], "keywords": "budget, council",
             "image": {"@type": "ImageObject", "url": "https://example.com/a.jpg"},
             "publisher": {"@type": "Organization", "name": "Daily Example"}}]})
        + '<meta property="og:title" content="Shared title | Daily Example">'
        + '<meta property="article:published_time" content="2020-01-01T00:00:00Z">',
        h1="Something else"))
    assert article.title == "Council passes budget"
    assert article.authors == ("Ada Lovelace", "Alan Turing")
    assert article.published.isoformat() == "2024-05-03T18:19:08+02:00"
    assert article.modified.isoformat() == "2024-05-04T09:00:00+02:00"
    assert article.section == "Politics" and article.tags == ("budget", "council")
    assert article.image_url == "https://example.com/a.jpg"
    assert article.sources["title"] == article.sources["published"] == "json-ld"


def test_opengraph_and_article_tags_when_there_is_no_json_ld():
    article = extract_article(page(
        '<meta property="og:title" content="Budget passes - Daily Example">'
        '<meta property="og:site_name" content="Daily Example">'
        '<meta property="article:published_time" content="2024-05-03T18:19:08+0200">'
        '<meta property="article:tag" content="budget"><meta property="article:tag" content="city">'
        '<meta property="article:section" content="Local">'
        '<meta name="author" content="By Grace Hopper and Ada Lovelace">'))
    assert article.title == "Budget passes"  # the site's name is not part of the headline
    assert article.published.isoformat() == "2024-05-03T18:19:08+02:00"
    assert article.tags == ("budget", "city") and article.section == "Local"
    assert article.authors == ("Grace Hopper", "Ada Lovelace")
    assert article.sources["title"] == "opengraph" and article.sources["authors"] == "meta"


def test_dublin_core_microdata_time_element_and_byline():
    dc = extract_article(page('<meta name="DC.date.issued" content="2023-11-02">'
                              '<meta name="DC.creator" content="Grace Hopper">', h1="Headline"))
    assert dc.published.isoformat() == "2023-11-02T00:00:00+00:00"
    assert dc.authors == ("Grace Hopper",) and dc.sources["authors"] == "meta"

    micro = extract_article(PAGE.format(
        lang="en", head="", title_tag="", h1="<h1>Headline</h1>",
        body='<span itemprop="author" itemscope><span itemprop="name">Ada Lovelace</span></span>'
             '<time datetime="2022-02-02T10:30:00-05:00">Feb 2</time>' + BODY))
    assert micro.authors == ("Ada Lovelace",) and micro.sources["authors"] == "microdata"
    assert micro.published.isoformat() == "2022-02-02T10:30:00-05:00"
    assert micro.sources["published"] == "time-element"

    byline = extract_article(PAGE.format(
        lang="en", head="", title_tag="Headline | The Paper", h1="<h1>Headline</h1>",
        body='<a rel="author" href="/people/g">Grace Hopper</a>' + BODY))
    assert byline.authors == ("Grace Hopper",) and byline.sources["authors"] == "byline"
    assert byline.title == "Headline"


def test_a_publication_is_never_an_author():
    """An organisation named as author (the site, or what JSON-LD types as one) is not a
    person: kept out of authors, also when no person is named."""
    both = extract_article(page(ld({"@type": "NewsArticle", "headline": "H",
                                    "author": [{"@type": "Person", "name": "Ada Lovelace (al)"},
                                               {"@type": "Person", "name": "Daily Example"}],
                                    "publisher": {"name": "Daily Example"}})))
    assert both.authors == ("Ada Lovelace",)
    alone = extract_article(page(ld({"@type": "NewsArticle", "headline": "H",
                                     "author": {"@type": "Organization", "name": "Daily Example"},
                                     "publisher": {"name": "Daily Example"}})))
    assert alone.authors == ()


def test_an_author_typed_both_person_and_organisation_is_a_person():
    """SEO plugins type a site's writers ``["Person", "Organization"]``: a person, whose
    name is the byline (the organisation type alone would keep every author out)."""
    article = extract_article(page(ld({
        "@type": "NewsArticle", "headline": "H",
        "author": [{"@type": ["Person", "Organization"], "name": "Kyle Example"}],
        "publisher": {"@type": "Organization", "name": "Daily Example"}})))
    assert article.authors == ("Kyle Example",)
    assert article.sources["authors"] == "json-ld"


@pytest.mark.parametrize("value, expected", [
    ("2024-05-03T18:19:08Z", "2024-05-03T18:19:08+00:00"),
    ("2024-05-03T18:19:08.123+0530", "2024-05-03T18:19:08.123000+05:30"),
    ("2024-05-03 18:19:08", "2024-05-03T18:19:08+00:00"),
    ("2024-05-03", "2024-05-03T00:00:00+00:00"),
    ("1970-01-01T00:00:00Z", None),
    ("yesterday", None),
    ("", None),
])
def test_parse_datetime(value, expected):
    parsed = parse_datetime(value)
    assert (parsed.isoformat() if parsed else None) == expected


GERMAN = ("Die Stadtverwaltung hat am Dienstag den neuen Haushalt beschlossen. Nach langer "
          "Debatte stimmte eine deutliche Mehrheit der Abgeordneten für den Entwurf, der mehr "
          "Geld für Schulen, Straßen und den öffentlichen Nahverkehr vorsieht.") * 2


def test_language_is_the_declaration_checked_against_the_text():
    assert settle_language("de", GERMAN) == ("de", "declared+detected")
    assert settle_language("en", GERMAN) == ("de", "detected")  # a template's default lang
    assert settle_language(None, GERMAN) == ("de", "detected")
    assert settle_language("de", "Kurz.") == ("de", "declared")  # too little text to overrule
    assert settle_language(None, "") == (None, "declared")


def test_an_article_is_the_page_metadata_and_the_text():
    """One definition of the metadata fields (PageMetadata), which Article extends with the
    text: nothing copied field by field, and the contract's fields all there."""
    assert issubclass(Article, PageMetadata)
    assert {f.name for f in fields(Article)} == {f.name for f in fields(PageMetadata)} | {"text"}
    assert {f.name for f in fields(Article)} >= {
        "text", "title", "authors", "published", "modified", "language", "canonical_url",
        "description", "section", "tags", "image_url", "site_name", "sources"}
    page = PAGE.format(lang="en", title_tag="Budget | Daily", h1="<h1>Budget</h1>", body=BODY,
                       head='<meta property="og:site_name" content="Daily">')
    article = extract_article(page)
    assert (article.title, article.site_name, article.language) == ("Budget", "Daily", "en")
    assert article.sources["declared_language"] == "html-lang"


def test_every_corpus_page_has_a_language_and_says_where_its_fields_came_from(corpus,
                                                                            corpus_extractions):
    for page_ in corpus:
        article = corpus_extractions[page_.original_url]
        assert article.language and len(article.language) == 2, page_.file
        assert article.sources.get("language") in ("declared", "detected", "declared+detected")
        for name in ("title", "published", "authors"):
            if getattr(article, name):
                assert name in article.sources, (page_.file, name)
