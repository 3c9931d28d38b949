"""``normalize.boilerplate``: lines recurring across a site's pages are learned and stripped;
story paragraphs, rare lines and long lines are not."""

from __future__ import annotations

import json

import pytest

from normalize import extract_article
from normalize.boilerplate import SiteBoilerplate, normalize_line
from tests.newssite import load_corpus

FOOTER = "Follow us on Mastodon for more local news"
SUBSCRIBE = "Newsletter: sign up for our daily briefing"
COPYRIGHT = "© 2024 Example Media"


def _page(i: int, *extra: str) -> str:
    """A page's text: its own story paragraphs, then the given lines."""
    story = [
        f"Story {i}: the council of town {i} met on Tuesday to decide on the harbour bridge.",
        f"Residents of town {i} said the traffic had been unbearable for years.",
    ]
    return "\n".join(story + list(extra))


def test_normalize_line_collapses_space_and_case():
    assert normalize_line("  Sign UP\tfor   our\u00a0Newsletter \r") == "sign up for our newsletter"


def test_learns_a_footer_repeated_across_pages():
    learner = SiteBoilerplate()
    for i in range(20):
        learner.observe(_page(i, FOOTER))
    assert learner.pages == 20
    assert normalize_line(FOOTER) in learner.learned()
    # The stories differ from page to page: none of their lines is learned.
    assert all(not line.startswith(("story ", "residents ")) for line in learner.learned())
    stripped = learner.strip(_page(21, FOOTER))
    assert stripped == _page(21)


def test_a_line_on_two_of_twenty_pages_is_not_learned():
    learner = SiteBoilerplate()
    for i in range(20):
        learner.observe(_page(i, "Correction: an earlier version misspelled a name") if i in (3, 11)
                        else _page(i))
    assert "correction: an earlier version misspelled a name" not in learner.learned()


def test_both_thresholds_apply():
    # Seen on 6 of 10 pages: over min_pages=5 and over 30% -> learned.
    learner = SiteBoilerplate(min_pages=5, min_share=0.3)
    for i in range(10):
        learner.observe(_page(i, FOOTER) if i < 6 else _page(i))
    assert normalize_line(FOOTER) in learner.learned()
    # The same 6 pages among 40: over min_pages but under 30% -> not learned.
    for i in range(10, 40):
        learner.observe(_page(i))
    assert normalize_line(FOOTER) not in learner.learned()
    # Seen on all of 4 pages: under min_pages -> not learned, whatever the share.
    few = SiteBoilerplate(min_pages=5)
    for i in range(4):
        few.observe(_page(i, FOOTER))
    assert few.learned() == frozenset()


def test_a_line_counts_once_per_page():
    learner = SiteBoilerplate(min_pages=3, min_share=0.0)
    learner.observe(_page(0, *[FOOTER] * 10))
    learner.observe(_page(1, FOOTER, FOOTER))
    assert normalize_line(FOOTER) not in learner.learned()
    learner.observe(_page(2, FOOTER))
    assert normalize_line(FOOTER) in learner.learned()


def test_strip_keeps_the_other_lines_in_order():
    learner = SiteBoilerplate(min_pages=2, min_share=0.5)
    for i in range(4):
        learner.observe(f"Advert{i}\n{SUBSCRIBE}\nParagraph {i}\n{COPYRIGHT}")
    text = f"First paragraph.\n  {SUBSCRIBE.upper()}  \nSecond paragraph.\n\nThird.\n{COPYRIGHT}"
    assert learner.strip(text) == "First paragraph.\nSecond paragraph.\n\nThird."


def test_long_lines_are_never_learned():
    paragraph = ("Syndicated: " + "the agency reported that the ministers met again on Friday. " * 6).strip()
    assert len(paragraph) > SiteBoilerplate.MAX_LINE_CHARS
    learner = SiteBoilerplate()
    for i in range(20):
        learner.observe(_page(i, paragraph, FOOTER))
    assert normalize_line(paragraph) not in learner.learned()
    assert normalize_line(FOOTER) in learner.learned()
    assert paragraph in learner.strip(_page(0, paragraph, FOOTER))


def test_known_lines_are_stripped_from_the_start():
    learner = SiteBoilerplate(known=["  Report an ERROR "])
    assert learner.learned() == frozenset({"report an error"})
    assert learner.strip("One.\nReport an error\nTwo.") == "One.\nTwo."  # noqa: B005 - the learner's strip


def test_json_round_trip():
    learner = SiteBoilerplate(min_pages=3, min_share=0.25, known=["Skip to main content"])
    for i in range(12):
        learner.observe(_page(i, FOOTER, SUBSCRIBE) if i % 2 else _page(i, FOOTER))
    data = learner.to_json()
    assert json.loads(json.dumps(data)) == data  # plain JSON
    again = SiteBoilerplate.from_json(json.loads(json.dumps(data)))
    assert again.to_json() == data
    assert again.learned() == learner.learned()
    assert {normalize_line(FOOTER), normalize_line(SUBSCRIBE), "skip to main content"} <= again.learned()
    # Learning goes on where it stopped.
    again.observe(_page(99, FOOTER))
    assert again.pages == 13 and again.to_json()["counts"][normalize_line(FOOTER)] == 13


@pytest.mark.parametrize("data", [None, [], {}, {"counts": "x", "pages": -3, "min_pages": "many"},
                                  {"counts": {"a": "b", "": 3, "ok": 2}, "known": [1, "k"]}])
def test_from_json_tolerates_damaged_state(data):
    learner = SiteBoilerplate.from_json(data)
    assert isinstance(learner, SiteBoilerplate)
    assert learner.pages >= 0
    assert learner.strip("a\nb") in ("a\nb", "b", "a", "")


def test_memory_is_bounded():
    learner = SiteBoilerplate(min_pages=5, min_share=0.0)
    limit = SiteBoilerplate.MAX_TRACKED_LINES
    # Every page has the footer plus 1,000 lines seen nowhere else: 60,000 distinct lines.
    for page in range(60):
        unique = "\n".join(f"Reader comment {page}-{n}" for n in range(1000))
        learner.observe(f"{unique}\n{FOOTER}")
        assert len(learner.to_json()["counts"]) <= limit
    assert len(learner.to_json()["counts"]) < 60 * 1000
    # The frequent line survived the pruning and is learned.
    assert normalize_line(FOOTER) in learner.learned()
    assert learner.to_json()["counts"][normalize_line(FOOTER)] == 60


def test_deterministic():
    def run() -> dict:
        learner = SiteBoilerplate(min_pages=2, min_share=0.0)
        for i in range(30):
            learner.observe(_page(i % 7, FOOTER, f"Tag {i % 3}"))
        return learner.to_json()

    assert run() == run()


def test_learns_and_strips_appended_lines_over_real_articles():
    """Ten real articles of ten publishers, each extracted from its corpus page, with the
    same two lines appended the way a site's template appends them to every article."""
    pages, seen = [], set()
    for page in load_corpus():
        if page.publisher in seen:
            continue
        text = extract_article(page.html, page.original_url).text
        if len(text.split("\n")) >= 3:
            seen.add(page.publisher)
            pages.append((page, text))
        if len(pages) == 10:
            break
    assert len(pages) == 10

    learner = SiteBoilerplate()
    for _, text in pages:
        learner.observe(f"{text}\n{SUBSCRIBE}\n{COPYRIGHT}")
    assert {normalize_line(SUBSCRIBE), normalize_line(COPYRIGHT)} <= learner.learned()

    for page, text in pages:
        stripped = learner.strip(f"{text}\n{SUBSCRIBE}\n{COPYRIGHT}")
        assert SUBSCRIBE not in stripped and COPYRIGHT not in stripped
        # Nothing of the article itself is removed: every line is still there, in order.
        assert stripped == text, page.original_url
        truth = json.loads(page.truth.read_text(encoding="utf-8"))
        paragraphs = [p for s in (truth.get("body") or {}).get("sections") or []
                      for p in s.get("paragraphs") or []]
        kept = [p for p in paragraphs if p in text]
        assert kept, page.original_url  # the check below is not vacuous
        assert all(p in stripped for p in kept)


def test_observe_and_strip_is_observe_then_strip():
    """The pipeline learns from a page and strips it in one pass over its lines."""
    one, two = SiteBoilerplate(), SiteBoilerplate()
    for i in range(12):
        page = _page(i, FOOTER) if i % 4 else _page(i, "  " + FOOTER.upper() + "  ")
        one.observe(page)
        assert two.observe_and_strip(page) == one.strip(page)
    assert one.to_json() == two.to_json()
    assert FOOTER not in two.observe_and_strip(_page(13, FOOTER))
    assert two.observe_and_strip(None) == ""
