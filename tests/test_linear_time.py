"""Regular expressions and per-page steps over untrusted input take time linear in its size.

Each test feeds one of them an input built to make a backtracking pattern (or a search in a
loop) read the same characters again and again, large enough (a million characters, most of
them) that the old versions took minutes to hours over it; linear, each test takes well
under a second. There is no clock in these tests: a regression shows as a test that does
not finish, which the run's own timeout reports. What the old versions took, timed on small
inputs (each doubling of the input took four times as long, or more), is in each test's
comment; two of them were bounded by a limit on the input (a 4 KB window, the parser's depth)
and show as slow rather than endless.
"""

from __future__ import annotations

import json

import lxml.html
from w3lib.encoding import html_body_declared_encoding

from normalize import decode_html, extract_article, metadata, softblock, text
from normalize.article import repair_mojibake
from normalize.text import drop_boilerplate_lines, extract_body
from spiders.redact import MASK, redact

MILLION = 1_000_000


# -- inputs ----------------------------------------------------------------------------------
# Builders take the size, so that the old patterns can be timed on small ones.


def meta_tags_head(n: int) -> bytes:
    """``n`` bytes of unclosed ``<meta`` tags with a ``charset=`` followed by spaces and no
    value: the old charset pattern was cubic in it (4 KB of it took 11 s)."""
    tags = n // 20
    return b"<meta " * tags + b"charset=" + b" " * (n - 6 * tags - 9) + b"/"


def unclosed_brackets_page(n: int) -> str:
    """An article whose JSON-LD names as its author an organisation called ``"(" * n``."""
    ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Headline",
          "datePublished": "2024-05-01T10:00:00Z",
          "author": {"@type": "Organization", "name": "(" * n}}
    return (f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head>'
            f'<body><article><p>{"Some words of the story. " * 20}</p></article></body></html>')


def keywords_page(n: int) -> str:
    """An article whose JSON-LD declares ``n`` distinct keywords."""
    ld = {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Headline",
          "datePublished": "2024-05-01T10:00:00Z", "author": {"name": "Jane Doe"},
          "keywords": ",".join(f"k{i}" for i in range(n))}
    return (f'<html><head><script type="application/ld+json">{json.dumps(ld)}</script></head>'
            f'<body><article><p>{"Some words of the story. " * 20}</p></article></body></html>')


def nested_bylines_page(depth: int, n: int) -> str:
    """An article with ``depth`` nested byline elements around ``n`` characters of text,
    then its byline."""
    return ('<html><head><title>Headline</title>'
            '<meta property="article:published_time" content="2024-05-01T10:00:00Z"></head>'
            f'<body><article><p>{"Some words of the story. " * 20}</p></article>'
            + '<div class="byline">' * depth + "word " * (n // 5) + "</div>" * depth
            + '<div class="byline">By Jane Doe</div></body></html>')


def unterminated_script_string(n: int) -> str:
    """A script whose last JSON string never ends and holds ``n`` escaped quotes."""
    return 'window.state = {"html": "<p>' + '\\"' * n


def script_page(script: str) -> str:
    """A page whose markup has no text: extraction looks in its scripts."""
    return f"<html><head><script>{script}</script></head><body><div></div></body></html>"


# -- normalize.article ---------------------------------------------------------------------


def test_heads_of_unclosed_meta_tags_are_read_once():
    # Old pattern, over the 4 KB window decode_html reads: 1 KB 0.17 s, 2 KB 1.3 s, 4 KB
    # 11 s (cubic: a start at each "<meta", and two runs of spaces split every way). The
    # window bounds it, so a crawl's worth of such pages: 200, forty minutes before.
    for size in range(4096 - 199, 4097):
        body = meta_tags_head(size) + "<p>Grüße</p>".encode()
        assert decode_html(body) == body.decode("utf-8")
        # Valid UTF-8 is read without a look at the declarations: the same heads before
        # text that is not UTF-8, whose declaration is looked for (w3lib's scan).
        body = meta_tags_head(size) + "<p>Grüße</p>".encode("windows-1252")
        assert decode_html(body) == body.decode("windows-1252")


def test_the_charset_of_a_head_of_meta_tags_is_found_in_linear_time():
    # The same head beyond the window (old pattern: 5,000 bytes 19 s, 10,000 158 s), and a
    # real declaration after a window's worth of unclosed tags: each tag is read once. The
    # scan (w3lib's) reads the first 4 KB only: a declaration after a million bytes of
    # unclosed tags, which the old search found, is not looked for.
    assert html_body_declared_encoding(meta_tags_head(MILLION)) is None
    head = b"<meta " * ((4096 - 24) // 6) + b'><meta charset="koi8-r">'
    assert len(head) <= 4096 and html_body_declared_encoding(head) == "koi8-r"
    text = "<p>Привет</p>"
    assert decode_html(head + text.encode("koi8-r")) == head.decode("ascii") + text


# -- normalize.metadata --------------------------------------------------------------------


def test_an_author_named_with_unclosed_brackets():
    # Old: 10,000 "(" 0.52 s, 20,000 1.8 s, 40,000 6.7 s; a million, more than an hour.
    page = unclosed_brackets_page(MILLION)
    assert extract_article(page, "https://example.com/a").authors == ("(" * MILLION,)


def test_bracketed_parts_are_still_dropped_from_names():
    assert extract_article(unclosed_brackets_page(0).replace(
        '"name": ""', '"name": "Jane Doe (dpa) [Berlin] (x"')).authors == ("Jane Doe (x",)


def test_a_role_suffix_after_a_long_run_of_spaces():
    # Not reachable from a page (names have their spaces collapsed first), but the pattern
    # stays linear. Old: 5,000 spaces 0.13 s, 10,000 0.50 s, 20,000 1.7 s, 40,000 6.7 s.
    name = "Kim" + " " * MILLION + "x"
    assert metadata._ROLE_SUFFIX.sub("", name) == name
    assert metadata._ROLE_SUFFIX.sub("", "Kim Min-ji" + " " * MILLION + "기자") == "Kim Min-ji"


def test_nested_byline_elements_are_read_only_as_far_as_a_byline_goes():
    # Bounded by the parser's depth (255), but each of the 250 nested elements read and
    # cleaned all its text. Old, with 250 levels: 500,000 characters 4.6 s, a million 8.0 s,
    # two million 16 s, four million 31 s, where the rest of the extraction takes 1 s.
    article = extract_article(nested_bylines_page(250, 2 * MILLION), "https://example.com/a")
    assert article.authors == ("Jane Doe",)


def test_many_keywords_are_deduplicated_in_linear_time():
    # Old (a list searched for each keyword): 5,000 keywords 0.09 s, 10,000 0.40 s, 20,000
    # 1.5 s, 40,000 5.7 s; 400,000, about ten minutes.
    n = 400_000
    tags = extract_article(keywords_page(n), "https://example.com/a").tags
    assert len(tags) == n and tags[:2] == ("k0", "k1") and tags[-1] == f"k{n - 1}"


# -- normalize.text ----------------------------------------------------------------------------


def test_an_unterminated_string_of_escaped_quotes_in_a_script():
    # Old: tried again from each escaped quote, to the end: 5,000 escaped quotes 0.28 s,
    # 10,000 1.1 s, 20,000 4.4 s, 40,000 18 s; a million, hours.
    page = script_page(unterminated_script_string(MILLION))
    assert extract_article(page, "https://example.com/a").text == ""


def test_the_embedded_article_is_found_before_an_unterminated_string():
    story = "".join(f"<p>Paragraph {i} of the story, long enough to be one.</p>" for i in range(20))
    script = f"var article = {json.dumps(story)}; " + unterminated_script_string(MILLION)
    extracted = extract_article(script_page(script), "https://example.com/a").text
    assert extracted.startswith("Paragraph 0 of the story") and "Paragraph 19" in extracted


def test_a_line_of_punctuation_between_two_words():
    # Old: "a" + "!" * n + "a": 5,000 0.14 s, 10,000 0.58 s, 20,000 2.3 s, 40,000 9.3 s.
    lines = "First line\n" + "a" + "!" * MILLION + "a" + "\nLast line"
    assert drop_boilerplate_lines(lines) == lines
    assert drop_boilerplate_lines("— Advertisement —\nStory") == "Story"


def test_the_address_pattern_on_a_long_word():
    # Used on lines of at most 200 characters, but linear anyway. Old: 5,000 0.05 s,
    # 10,000 0.18 s, 20,000 0.71 s, 40,000 2.8 s.
    assert text._EMAIL.search("a" * MILLION) is None
    assert text._EMAIL.search("a" * MILLION + "@example.com").group(0).endswith("@example.com")


def test_a_page_stating_many_descriptions():
    # Old: each description searched the whole body (0.35 ms for these 2,000 paragraphs),
    # and was looked up in a list of the others (5,000 0.17 s, 10,000 0.49 s, 20,000 1.5 s,
    # 40,000 5.5 s): for 400,000, about ten minutes. Through extract_article, with as many
    # paragraphs as descriptions: 1,000 0.28 s, 2,000 0.95 s, 4,000 3.3 s.
    tree = lxml.html.document_fromstring(
        "<html><body>" + "".join(f"<p>Paragraph {i} of the page.</p>" for i in range(2_000))
        + "<p>The real standfirst of this article, which the page describes itself with.</p>"
        + f"<article><p>{'Words of the story go on. ' * 40}</p></article></body></html>")
    standfirst = "The real standfirst of this article, which the page describes itself with."
    descriptions = [standfirst] + [f"Description number {i} of a page that states very many"
                                   for i in range(400_000)]
    extracted, _ = extract_body(tree, "https://example.com/a", tags={"description": descriptions})
    assert standfirst in extracted


def test_many_headlines_against_long_first_lines():
    # Old: every headline searched for in each of the first lines, 0.45 ms a headline for
    # these lines (1,000 0.54 s, 2,000 0.94 s, 4,000 1.7 s, 8,000 3.6 s): 200,000, a minute
    # and a half, and the product of the two sizes in general.
    headlines = {f"headline number {i:08d} of many".replace(" ", "") for i in range(200_000)}
    lines = "\n".join("word " * (MILLION // 5) for _ in range(5))
    assert text._drop_header_lines(lines, headlines) == lines.strip()


def test_an_h1_of_many_elements_is_searched_for_its_headline_a_bounded_number_of_times():
    # The part of an <h1> that another statement confirms is looked for in its first 20
    # elements only, each a walk over the heading (read at all only up to 10,000 elements):
    # at most 20 walks of 10,000, not one per element.
    h1 = ("<span>" * 10 + "<i>Council passes budget for the harbour</i> <em>87</em>"
          + "<b></b>" * 9_900 + "</span>" * 10)
    html = (f"<html><head><title>Council passes budget for the harbour - Daily Example</title>"
            f"</head><body><h1>{h1}</h1><p>{'The council met. ' * 40}</p></body></html>")
    article = extract_article(html, "https://example.com/a")
    assert (article.title, article.sources["title"]) == ("Council passes budget for the harbour", "h1")


def test_a_long_sequence_of_entities_is_searched_for_mojibake_once():
    # Entities are read one after the other, each once, whether or not they are mojibake:
    # a million characters of them, and runs of mojibake among them ("&acirc;&euro;&trade;").
    entities = "&acirc;&euro;&trade;" * 3 + "&amp;&lt;&eacute;&copy;&acirc;" * (MILLION // 30)
    html = f"<html><body><article><p>{'The council met. ' * 40}{entities}</p></article></body></html>"
    assert "\u2019\u2019\u2019" in repair_mojibake(html)

# -- normalize.softblock ---------------------------------------------------------------------


def test_a_subscriber_prompt_with_long_runs_of_spaces():
    # Searched in whitespace-collapsed text, but linear anyway. Old: two runs of 5,000
    # spaces 0.06 s, 10,000 0.26 s, 20,000 1.1 s, 40,000 4.2 s.
    prompt = "déjà abonné" + " " * MILLION + "?" + " " * MILLION
    assert softblock._SUBSCRIBER_PROMPTS.search(prompt + "x") is None
    assert softblock._SUBSCRIBER_PROMPTS.search(prompt + "connectez") is not None


# -- spiders.redact: every log record of a crawl -----------------------------------------------


def test_redact_is_linear_on_a_long_record():
    # Already linear (a fixed lookbehind, and the spaces before a value read once per
    # header name): a million characters of a hostile header or URL logged as is.
    spaces = "x-amz-security-token:" + " " * MILLION + "&"
    assert redact(spaces, []) == spaces
    assert redact("Credential=" * (MILLION // 11), []) == f"Credential={MASK}"
    slashes = "Credential=/" * (MILLION // 12)
    assert redact(slashes, []) == slashes
    token = "X-Amz-Security-Token: " + "t" * MILLION
    assert redact(token, []) == f"X-Amz-Security-Token: {MASK}"
    secret = "s3cr3t-value"
    assert redact((secret + " ") * (MILLION // 13), [secret]) == (MASK + " ") * (MILLION // 13)
