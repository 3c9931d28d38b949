"""The metadata rules that must hold on pages never seen (issue 21): a date only from what
the page itself states, never a guess; a title cut down to the headline when a page adds its
site's name, a section or a date to it; an organisation never an author beside a person.
Pages are made here; a few corpus pages show the rules on real markup."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pytest

from normalize import extract_article
from tests.newssite import load_corpus

STORY = "".join(
    f"<p>Paragraph {i}: the council met on Tuesday to discuss the new budget for the harbour, "
    "the schools and the roads, and after a long debate it voted to approve it.</p>"
    for i in range(8))

PAGE = """<html lang="{lang}"><head><title>{title}</title>{head}</head><body>
<header><a class="logo" href="/">Daily Example</a><nav><a href="/news">News</a>
<a href="/sport">Sport</a></nav></header>
<main><article>{top}<h1>{h1}</h1>{under}{story}</article></main>
<footer><p>© 2015 Daily Example Media. All rights reserved.</p></footer></body></html>"""


def page(*, title: str = "Council passes budget", h1: str = "Council passes budget",
         head: str = "", top: str = "", under: str = "", story: str = STORY,
         lang: str = "en") -> str:
    return PAGE.format(title=title, h1=h1, head=head, top=top, under=under, story=story,
                       lang=lang)


def ld(data: dict) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def og(prop: str, content: str) -> str:
    return f'<meta property="{prop}" content="{content}">'


URL = "https://www.example.com/news/council-passes-budget"

# -- dates -------------------------------------------------------------------------------

UNDATED = {
    # Only a copyright year: trafilatura's date search made it 2015-01-01.
    "copyright year": page(),
    # Dates in the story are what it tells, not when it was published.
    "dates in the text": page(story=STORY + "<p>The law of 12 March 2019 applies, as it did "
                              "on 2020-06-01 and since 2005.</p>"),
    # A modification time is not a publication date.
    "modified only": page(head=og("article:modified_time", "2024-05-04T09:00:00+02:00")),
    # A dateline that says the article was changed then.
    "updated dateline": page(under='<p class="meta">Updated: May 3, 2024</p>'),
    # A month in the address is not a day.
    "month in the address": page(),
}


@pytest.mark.parametrize("case", sorted(UNDATED))
def test_a_page_that_states_no_date_has_none(case):
    url = "https://www.example.com/2024/05/council-passes-budget" if case == "month in the address" else URL
    article = extract_article(UNDATED[case], url)
    assert article.published is None, (case, article.published, article.sources.get("published"))
    assert "published" not in article.sources
    if case == "modified only":
        assert article.modified.isoformat() == "2024-05-04T09:00:00+02:00"


@pytest.mark.parametrize("html, url, expected, source", [
    # A day in the address.
    (page(), "https://www.example.com/2024/05/03/council-passes-budget", "2024-05-03", "url"),
    (page(), "https://www.example.com/news/2024-05-03-council-passes-budget", "2024-05-03", "url"),
    # The JSON-LD of a page with no article object.
    (page(head=ld({"@context": "https://schema.org", "@graph": [
        {"@type": "WebPage", "name": "Council passes budget", "datePublished": "2023-11-02T08:00:00Z"},
        {"@type": "Organization", "name": "Daily Example"}]})), URL, "2023-11-02", "json-ld"),
    # A dateline by the headline, in the page's language.
    (page(under='<div class="byline"><span>By Jane Doe</span> | <span>Published March 3, 2024</span></div>'),
     URL, "2024-03-03", "dateline"),
    (page(under='<div class="article_meta"><span class="meta_date">erstellt: '
                '<strong>01. April 2025, 15:25</strong></span></div>', lang="de"),
     URL, "2025-04-01", "dateline"),
    (page(under="<p><small>3 de marzo de 2024</small></p>", lang="es"), URL, "2024-03-03", "dateline"),
    (page(under="<p>Veröffentlicht am 3. März 2024</p>", lang="de"), URL, "2024-03-03", "dateline"),
    (page(under="<p>Publié le 1er mars 2024</p>", lang="fr-FR"), URL, "2024-03-01", "dateline"),
    (page(under="<p>2024年5月3日 10:00</p>", lang="ja"), URL, "2024-05-03", "dateline"),
    (page(top='<div class="kicker">Politics</div><time>12.05.2022</time>'), URL, "2022-05-12", "dateline"),
    # Published, then updated: the first is the publication.
    (page(under="<p>Published 2 May 2024, updated 5 May 2024</p>"), URL, "2024-05-02", "dateline"),
    # A date meta written in prose.
    (page(head='<meta name="published" content="July 17, 2025">'), URL, "2025-07-17", "meta"),
])
def test_the_dates_a_page_states_beyond_its_metadata(html, url, expected, source):
    article = extract_article(html, url)
    assert article.published is not None and article.published.date() == date.fromisoformat(expected)
    assert article.sources["published"] == source


def test_the_byline_and_dateline_are_read_by_the_only_h1_when_no_statement_confirms_it():
    """An SEO title that says something else leaves the <h1> unconfirmed as the title, but it
    is still the heading the article starts under; with two such <h1>, neither is."""
    under = "<p>By Jane Doe</p><div>Published on July 18, 2025</div>"
    html = page(title="Online classes: definition, platforms and more | Daily Example",
                h1="Everything you need to know about taking a class from home", under=under)
    article = extract_article(html, URL)
    assert article.published.date() == date(2025, 7, 18)
    assert article.authors == ("Jane Doe",)
    two = html.replace("<main>", "<main><h1>Stories from our students</h1>")
    assert extract_article(two, URL).published is None


def test_the_metadata_date_goes_before_the_address_and_the_dateline():
    html = page(head=og("article:published_time", "2024-05-02T18:19:08+02:00"),
                under="<p>Published March 3, 2024</p>")
    article = extract_article(html, "https://www.example.com/2020/01/01/council")
    assert article.published.isoformat() == "2024-05-02T18:19:08+02:00"
    assert article.sources["published"] == "opengraph"


# -- titles ------------------------------------------------------------------------------


@pytest.mark.parametrize("head, title, url", [
    # The site's name and the date after the headline, which the <h1> states alone.
    (og("og:title", "Council passes budget | DW | 28.04.2023"), "Council passes budget | DW", URL),
    # A section after it.
    (og("og:title", "Council passes budget | Sport"), "Council passes budget | Sport", URL),
    (og("og:title", "Council passes budget - Lokales - Daily Example"), "Council passes budget", URL),
    # A kicker made of the site's name before it.
    (og("og:title", "NTV-Thema: Council passes budget"), "NTV-Thema: Council passes budget",
     "https://www.n-tv.de/politik/council-passes-budget"),
    # The site's host in the title, no og:site_name.
    (og("og:title", "Council passes budget – Golem.de"), "Council passes budget", "https://www.golem.de/news/x"),
])
def test_a_title_made_of_the_headline_and_labels_is_cut_to_the_headline(head, title, url):
    article = extract_article(page(head=head, title=title), url)
    assert article.title == "Council passes budget"


@pytest.mark.parametrize("title, url", [
    # After the headline, a few words that start with the site's name: a label.
    ("Council passes budget | Example App Store", "https://apps.example.com/council"),
    ("Council passes budget | Patient Education | UC Davis Children's Hospital",
     "https://health.ucdavis.edu/council"),
    # A folder of the page's address, where the page declares no section.
    ("Council passes budget | District", "https://www.example.com/district/343604"),
    # The initials of the site's name (og:site_name "Daily Example News").
    ("Council passes budget | DEN", URL),
])
def test_a_trailing_part_that_names_the_site_or_a_folder_is_a_label(title, url):
    head = og("article:section", "Patient Education") + og("og:site_name", "Daily Example News")
    assert extract_article(page(head=head, title=title, h1=""), url).title == "Council passes budget"


def test_labels_are_cut_even_when_no_other_statement_says_where_the_headline_ends():
    head = og("og:site_name", "DW") + og("article:section", "Politik")
    html = page(head=head, title="Council passes budget | Politik | DW | 28.04.2023", h1="")
    assert extract_article(html, URL).title == "Council passes budget"


@pytest.mark.parametrize("head, h1, expected", [
    # A kicker before a colon is part of the headline the JSON-LD states.
    (ld({"@type": "NewsArticle", "headline": "After the vote: council passes budget"}),
     "council passes budget", "After the vote: council passes budget"),
    # So is a subtitle after one.
    (og("og:type", "article") + og("og:title", "Council passes budget: what it means for you"),
     "Council passes budget", "Council passes budget: what it means for you"),
])
def test_what_a_colon_joins_to_the_headline_stays(head, h1, expected):
    assert extract_article(page(head=head, h1=h1, title="Daily Example"), URL).title == expected


def test_the_headline_is_the_h1_that_another_statement_confirms():
    """Pages have an <h1> for their logo, their menu, a sidebar: the headline is the one the
    <title> (or og:title, or JSON-LD) agrees with, not the first."""
    html = page(top="<h1>Daily Example</h1><h1>Menu</h1>", title="Council passes budget | Daily Example")
    article = extract_article(html, URL)
    assert article.title == "Council passes budget"
    assert article.sources["title"] == "h1"


@pytest.mark.parametrize("kind, expected", [
    # A newsroom's NewsArticle (and its kinds) states the headline.
    ("NewsArticle", "Council approves the harbour budget after a long debate"),
    ("ReportageNewsArticle", "Council approves the harbour budget after a long debate"),
    # A blog post's or a generic article's JSON-LD is most often an SEO plugin's: the <h1>
    # its readers see is the title, when another statement confirms it.
    ("BlogPosting", "Council passes budget"),
    ("Article", "Council passes budget"),
])
def test_the_json_ld_headline_goes_first_for_news_articles_only(kind, expected):
    head = ld({"@type": kind, "headline": "Council approves the harbour budget after a long debate"})
    html = page(head=head, title="Council passes budget | Daily Example")
    assert extract_article(html, URL).title == expected


@pytest.mark.parametrize("og_type, expected", [
    ("article", "Council approves the harbour budget after a long debate"),
    # A page that calls itself a website gives its page's title.
    ("website", "Council passes budget"),
])
def test_og_title_goes_first_on_pages_that_call_themselves_articles(og_type, expected):
    head = (og("og:type", og_type)
            + og("og:title", "Council approves the harbour budget after a long debate"))
    html = page(head=head, title="Council passes budget | Daily Example")
    assert extract_article(html, URL).title == expected


def test_a_headline_in_capitals_takes_the_case_another_statement_writes():
    html = page(h1="TIPS FOR ONLINE SUCCESS", title="Tips for Online Success | Example College")
    assert extract_article(html, URL).title == "Tips for Online Success"


def test_a_line_break_in_the_headline_parts_its_words():
    html = page(h1="COUNCIL<br>PASSES<br> <span>BUDGET</span>", title="Council Passes Budget")
    assert extract_article(html, URL).title == "Council Passes Budget"


@pytest.mark.parametrize("h1", [
    # A label before the headline, in an element of its own.
    '<span class="descriptor">Title:</span>Council passes budget for the harbour',
    # The source and a comment count after it.
    '<span><a href="/story/1">Council passes budget for the harbour</a> '
    '<span>(<a href="https://other.example/">other.example</a>)</span> <span>87</span></span>',
    # A byline in a heading nested in the headline's (broken markup browsers show as is).
    'Council passes budget for the harbour<div class="divider"></div>'
    '<h3><span>Posted</span><span> by jdoe</span></h3>',
])
def test_an_h1_is_cut_to_the_part_another_statement_confirms(h1):
    head = og("og:title", "Council passes budget for the harbour - Daily Example")
    html = page(head=head, h1=h1, title="Council passes budget for the harbour - Daily Example")
    article = extract_article(html, URL)
    assert article.title == "Council passes budget for the harbour"
    assert article.sources["title"] == "h1"


def test_an_h1_that_says_more_than_the_other_statements_in_its_own_text_stays_whole():
    """What the heading's text itself adds is part of the headline, though the SEO title
    leaves it out: only what sits in an element of its own is cut."""
    head = og("og:title", "Council passes budget for the harbour")
    html = page(head=head, h1="Council passes budget for the harbour: <em>what</em> it means",
                title="Council passes budget for the harbour")
    assert extract_article(html, URL).title == "Council passes budget for the harbour: what it means"


def test_a_headline_cut_short_is_taken_whole_from_another_statement():
    """SEO plugins cut the JSON-LD headline to about 110 characters, mid-bracket."""
    whole = ("Council passes budget: what the harbour, the schools and the roads get this year "
             "(including one change that nobody expected)")
    head = (ld({"@type": "NewsArticle", "headline": whole[:108].rstrip()})
            + og("og:title", whole + " - Daily Example"))
    assert extract_article(page(head=head, h1=""), URL).title == whole


def test_a_word_of_a_subdomain_is_no_label_of_the_site():
    """The labels of a host before the site's own name a section or a service: a headline
    that starts with the same word keeps it (the site's own label is one: the Golem.de case
    above)."""
    html = page(head=og("og:site_name", "Learning Resource Center"),
                h1="Teaching Online: Effective Practices",
                title="Teaching Online: Effective Practices | Learning Resource Center")
    url = "https://teaching.resources.example.edu/topics/online-practices"
    assert extract_article(html, url).title == "Teaching Online: Effective Practices"


def test_microdata_authors_are_the_articles_not_the_sidebars():
    """Related posts list their own authors with the same markup, each in an item of its own."""
    def item(name: str) -> str:
        return ('<span itemprop="author" itemscope itemtype="http://schema.org/Person">'
                f'<span itemprop="name">{name}</span></span>')
    html = page(top=item("Jane Doe"), story=STORY + "".join(
        f'<aside><article itemscope itemtype="http://schema.org/Article"><h2>Other story {n}</h2>'
        f'{item(name)}</article></aside>' for n, name in enumerate(["John Roe", "Ann Poe"])))
    html = html.replace("<article>", '<article itemscope itemtype="http://schema.org/Article">', 1)
    assert extract_article(html, URL).authors == ("Jane Doe",)


def test_who_updated_or_reviewed_an_article_is_not_its_author():
    under = ('<div class="byline"><span itemprop="author">By Jane Doe</span></div>'
             '<div class="byline"><span itemprop="author">Updated by John Roe</span></div>')
    assert extract_article(page(under=under), URL).authors == ("Jane Doe",)


@pytest.mark.parametrize("head, under, authors", [
    # An author box's link: its label is not part of the name.
    ("", '<a rel="author" href="/a/jane">Jane Doe</a> <a rel="author" href="/a/jane">'
         'More About Jane Doe »</a>', ("Jane Doe",)),
    # An address beside the name goes; alone, it is how the page names its author.
    ('<meta name="author" content="Jane Doe jane@example.com">', "", ("Jane Doe",)),
    ('<meta name="author" content="jane@example.com">', "", ("jane@example.com",)),
    # The account a CMS names when no one signed.
    ('<meta name="author" content="admin">', "", ()),
    # A theme's author markup around a post's title.
    ("", '<div itemprop="author">5 Great Ideas For 2022 That You Can Practice</div>', ()),
])
def test_what_surrounds_a_name_in_author_markup_is_not_part_of_it(head, under, authors):
    assert extract_article(page(head=head, under=under), URL).authors == authors


def test_scholarly_citation_authors_are_one_person_a_tag():
    """Highwire Press tags (``citation_author``), as journals and preprint servers write
    them: "Last, First" is one person, not two."""
    head = ('<meta name="citation_author" content="Roe, Jane">'
            '<meta name="citation_author" content="Ursula von Doe">')
    assert extract_article(page(head=head), URL).authors == ("Jane Roe", "Ursula von Doe")


def test_a_writers_name_in_a_subdomain_does_not_make_them_an_organisation():
    html = page(under='<p class="byline">By <a rel="author" href="/about">Jane Doe</a></p>')
    assert extract_article(html, "https://jane.example.net/2024/budget").authors == ("Jane Doe",)


# -- authors -----------------------------------------------------------------------------


@pytest.mark.parametrize("head, under, url", [
    # The publisher named in JSON-LD as the author; the byline by the headline names a person.
    (ld({"@type": "NewsArticle", "headline": "Council passes budget",
         "author": {"@type": "Organization", "name": "Deutsche Welle"},
         "publisher": {"@type": "NewsMediaOrganization", "name": "Deutsche Welle"}}),
     "<p>By Jane Doe</p>", URL),
    # The site's own name as the meta author; byline markup names the person.
    (og("og:site_name", "FOCUS online") + '<meta name="author" content="FOCUS online">',
     '<a rel="author" href="/authors/jane-doe">Jane Doe</a>', URL),
    # The site's host as the author, in no type.
    (ld({"@type": "NewsArticle", "headline": "Council passes budget", "author": {"name": "STERN.de"}}),
     "<ul><li><span> von </span><span>Jane Doe</span></li></ul>", "https://www.stern.de/politik/x.html"),
])
def test_an_organisation_is_not_an_author_beside_a_person(head, under, url):
    article = extract_article(page(head=head, under=under), url)
    assert article.authors == ("Jane Doe",)


def test_an_organisation_is_not_the_author_when_no_one_is_named():
    """As publishers write it when an article has no byline: no person, so no author (a
    desk's code, "red", names no one either)."""
    head = ld({"@type": "NewsArticle", "headline": "Council passes budget",
               "author": {"@type": "Organization", "name": "ORF.at"}})
    html = page(head=head, story=STORY + '<div class="byline"><p>red, ORF.at/Agenturen</p></div>')
    assert extract_article(html, "https://orf.at/stories/3375000/").authors == ()


@pytest.mark.parametrize("head, url, expected", [
    # A personal site: the host bears the author's name, and the JSON-LD types it a person.
    (ld({"@type": "BlogPosting", "headline": "Council passes budget",
         "author": {"@type": "Person", "name": "Jane Doe"}}),
     "https://janedoe.example/2024/budget", ("Jane Doe",)),
    (ld({"@type": "NewsArticle", "headline": "Council passes budget",
         "author": {"@type": "Person", "name": "Jane Doe"}}),
     "https://janedoe.substack.example/p/budget", ("Jane Doe",)),
    # Typed a person, but the page's declared name for its site or publisher: an organisation.
    (og("og:site_name", "Daily Example") + ld({
        "@type": "NewsArticle", "headline": "Council passes budget",
        "author": {"@type": "Person", "name": "Daily Example"}}),
     "https://dailyexample.example/budget", ()),
    (ld({"@type": "NewsArticle", "headline": "Council passes budget",
         "author": {"@type": "Person", "name": "Daily Example"},
         "publisher": {"@type": "Organization", "name": "Daily Example"}}),
     "https://news.example/budget", ()),
])
def test_a_person_whose_site_bears_their_name_is_the_author(head, url, expected):
    """The site's host is no author (an organisation's name), except the person the page's
    JSON-LD names as one: on a personal site, the host is the author's name."""
    assert extract_article(page(head=head), url).authors == expected


@pytest.mark.parametrize("under", [
    # The word that introduces the byline in an element of its own.
    '<div class="byline">Written By</div><span class="author-name">Jane Doe</span>',
    # A bio in byline markup before the name's own element.
    '<div class="byline">works on microservices, secure developer tooling.</div>'
    '<span class="author-name">Jane Doe</span>',
])
def test_byline_markup_that_holds_no_name_is_passed_over(under):
    assert extract_article(page(under=under), URL).authors == ("Jane Doe",)


@pytest.mark.parametrize("under, authors", [
    # A byline set as a bold paragraph of its own before the story: the record's authors,
    # and not a line of its text.
    ("<p><strong>Jane Doe</strong></p>", ("Jane Doe",)),
    ("<p><em>Short kicker above the story</em></p><p><b>Jane Doe/Ursula von Roe</b></p>",
     ("Jane Doe", "Ursula von Roe")),
    # A bold term is no name, nor is one word.
    ("<p><strong>Lecture with Remote Instruction</strong></p>", ()),
    ("<p><strong>Update</strong></p>", ()),
])
def test_a_bold_line_of_names_before_the_story_is_its_byline(under, authors):
    article = extract_article(page(under=under), URL)
    assert article.authors == authors
    for name in authors:
        assert name not in article.text



@pytest.mark.parametrize("under, story, authors", [
    # A byline that is only links to the authors' pages, with no markup naming it one.
    ('<div class="meta"><a href="/author/jane-doe/">Jane Doe</a></div>', STORY, ("Jane Doe",)),
    ('<ul class="list"><li><a href="https://www.example.com/autoren/max-mustermann">Max '
     'Mustermann</a></li><li><a href="/autoren/erika-musterfrau">Erika Musterfrau</a></li>'
     '</ul>', STORY, ("Max Mustermann", "Erika Musterfrau")),
    # Another role's link beside the author's is not an author.
    ('<div>By <a href="/author/jane-doe">Jane Doe</a></div><div>Contributions From: '
     '<a href="/author/john-roe">John Roe</a></div>', STORY, ("Jane Doe",)),
    # A link that names no one: a first name, a menu's word.
    ('<div><a href="/authors/jane-doe">Articles by Jane</a></div>', STORY, ()),
    # An author's page linked after the story has begun: a related post's, not this one's.
    ("", STORY + '<div class="related"><h3>Other story</h3><a href="/author/john-roe/">'
     "John Roe</a></div>", ()),
])
def test_links_to_authors_pages_by_the_headline_are_its_byline(under, story, authors):
    assert extract_article(page(under=under, story=story), URL).authors == authors

def test_what_a_dash_adds_to_an_author_for_the_site_is_cut():
    head = og("og:site_name", "Daily Example") + ld({
        "@type": "NewsArticle", "headline": "Council passes budget",
        "author": {"@type": "Person", "name": "Jane Doe - Daily Example Editorial Team"}})
    assert extract_article(page(head=head), URL).authors == ("Jane Doe",)
    # A dash that joins no site or organisation is part of what the page says.
    head = ld({"@type": "NewsArticle", "headline": "Council passes budget",
               "author": {"@type": "Person", "name": "Jane Doe-Smith"}})
    assert extract_article(page(head=head), URL).authors == ("Jane Doe-Smith",)


# -- corpus pages ------------------------------------------------------------------------


def _corpus_page(name: str):
    found = [p for p in load_corpus() if p.file.name == name]
    assert found, name
    return gzip.decompress(found[0].file.read_bytes()), found[0].original_url


@pytest.mark.parametrize("name, authors", [
    # JSON-LD names the site ("STERN.de"); the byline by the headline names the writer.
    ("Stern_2024_11_05.html.gz", ("Jemima Kelly",)),
    # The meta author is the site's initials ("LTO", lto.de); the byline links the writer.
    ("LTO_2025_10_20.html.gz", ("Dr. Max Kolter",)),
])
def test_corpus_pages_name_their_writer_not_their_site(name, authors):
    assert extract_article(*_corpus_page(name)).authors == authors


def test_a_corpus_page_dated_only_by_its_address():
    # Its only date statements are the URL's /2025/04/01/ and a dateline "erstellt: 01. April
    # 2025, 15:25"; trafilatura's date came from its own search, not from the page's metadata.
    article = extract_article(*_corpus_page("Tageszeitung_2025_04_16.html.gz"))
    assert article.published.date() == date(2025, 4, 1)
    assert article.sources["published"] in ("url", "dateline")
