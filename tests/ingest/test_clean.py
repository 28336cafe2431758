"""The cleaner on the real scraped articles (against hand-made labels) and on made-up pages."""

from __future__ import annotations

import random
import textwrap
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CORPUS, GOLD, WORDS
from qa.ingest.clean import CleanedText, clean_text, is_self_repeating, parse_date, split_blocks


@pytest.mark.parametrize("name", sorted(GOLD))
def test_real_article_keeps_every_paragraph_whole_and_nothing_else(name: str) -> None:
    cleaned = clean_text((CORPUS / name).read_text(encoding="utf-8"))
    assert list(cleaned.paragraphs) == GOLD[name]["paragraphs"]


@pytest.mark.parametrize("name", sorted(GOLD))
def test_real_article_metadata_matches_labels(name: str) -> None:
    cleaned = clean_text((CORPUS / name).read_text(encoding="utf-8"))
    found = {field: getattr(cleaned, field) for field in ("title", "author", "date", "outlet")}
    assert found == {field: GOLD[name][field] for field in ("title", "author", "date", "outlet")}


@pytest.mark.parametrize("name", sorted(GOLD))
def test_no_boilerplate_line_of_a_real_article_survives(name: str) -> None:
    raw_lines = {line.strip() for line in (CORPUS / name).read_text(encoding="utf-8").splitlines()}
    boilerplate = {line for line in raw_lines if line and line not in GOLD[name]["paragraphs"]}
    body = "\n".join(clean_text((CORPUS / name).read_text(encoding="utf-8")).paragraphs)
    # Lines of a few characters ("1", "Open") occur inside prose by chance; check the rest.
    leaked = [line for line in boilerplate if len(line) > 12 and line in body]
    assert leaked == []


MADE_UP_PAGE = """\
Daily Planet
  • Home
  • World
  • Weather
  • Subscribe
Login
Register
Harbour town votes to rebuild its old lighthouse
Published: March 3, 2021 09:15
By Lois Lane
Share on Facebook
Share on Telegram
lighthouse-2021.jpeg The old lighthouse at dawn.

Residents of the harbour town voted on Tuesday to rebuild the lighthouse that has stood empty since the storm of 1998.

The council said the work would begin in spring and take about two years, paid for by a regional heritage fund.

WHAT HAPPENS NEXT

Engineers will first survey the foundations, which were damaged when the sea wall failed during the storm.
Bridge reopens after repairs
Bridge reopens after repairs
2021-02-27 10:00 | Local
"We have waited a long time for this," said the harbour master, who has campaigned for the project since 2005.

Read in French
Contact the newsroom: news@planet.example
Leave a comment. Comments are approved by a moderator and must follow our terms of use.
Copyright © 2021 Daily Planet. All rights reserved.
"""


def test_made_up_page_keeps_article_and_subheading_drops_furniture() -> None:
    cleaned = clean_text(MADE_UP_PAGE)
    assert cleaned.paragraphs == (
        "Residents of the harbour town voted on Tuesday to rebuild the lighthouse that has stood empty since the "
        "storm of 1998.",
        "The council said the work would begin in spring and take about two years, paid for by a regional heritage "
        "fund.",
        "WHAT HAPPENS NEXT",
        "Engineers will first survey the foundations, which were damaged when the sea wall failed during the storm.",
        '"We have waited a long time for this," said the harbour master, who has campaigned for the project since '
        "2005.",
    )


def test_made_up_page_metadata() -> None:
    cleaned = clean_text(MADE_UP_PAGE)
    assert (cleaned.title, cleaned.author, cleaned.date) == (
        "Harbour town votes to rebuild its old lighthouse",
        "Lois Lane",
        "2021-03-03",
    )


def test_unknown_metadata_stays_empty() -> None:
    cleaned = clean_text(
        "A long paragraph about nothing in particular that still reads like a real sentence.\n\n"
        "Another paragraph, also long enough to be treated as part of the article body."
    )
    assert (cleaned.title, cleaned.author, cleaned.date, cleaned.outlet) == ("", "", "", "")
    assert len(cleaned.paragraphs) == 2


def test_credit_line_gives_author_and_outlet_and_is_not_a_paragraph() -> None:
    cleaned = clean_text(
        "The minister resigned on Friday after weeks of pressure from members of her own party.\n\n"
        "Reported by Ana Souza for KBZ's Portuguese Service. Translated by Tom Reed."
    )
    assert (cleaned.author, cleaned.outlet) == ("Ana Souza", "KBZ")
    assert cleaned.paragraphs == (
        "The minister resigned on Friday after weeks of pressure from members of her own party.",
    )


def test_by_contrast_is_not_a_byline() -> None:
    text = "By contrast, the northern towns voted against the plan by a wide margin on Sunday."
    cleaned = clean_text(text)
    assert cleaned.author == ""
    assert cleaned.paragraphs == (text,)


def test_long_prose_mentioning_copyright_or_email_is_kept() -> None:
    text = (
        "The court ruled that the copyright on the photographs belonged to the agency, and lawyers for the "
        "photographer, who can be reached at office@law.example, said they would appeal the decision next week "
        "because the contract never mentioned resale."
    )
    assert clean_text(text).paragraphs == (text,)


def test_repeated_long_paragraph_is_kept_once() -> None:
    paragraph = "The same paragraph was captured twice by the scraper, which happens on pages with print views."
    assert clean_text(f"{paragraph}\n\n{paragraph}").paragraphs == (paragraph,)


def test_hard_wrapped_prose_is_joined() -> None:
    blocks = split_blocks("The committee met again on Monday and agreed that\nthe budget would be cut by a tenth.\n")
    assert blocks == ["The committee met again on Monday and agreed that the budget would be cut by a tenth."]


def test_self_repeating_line() -> None:
    assert is_self_repeating("Print PreviewPrint Preview")
    assert is_self_repeating("3Town council approves budget Town council approves budget")
    assert not is_self_repeating("Town council approves budget")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-08-02 17:47", "2020-08-02"),
        ("2020.02.05", "2020-02-05"),
        ("March 3, 2021", "2021-03-03"),
        ("Sept. 9 2019", "2019-09-09"),
        ("4 July 2022", "2022-07-04"),
        ("June 10", ""),
        ("2020-13-40", ""),
    ],
)
def test_parse_date(text: str, expected: str) -> None:
    assert parse_date(text) == expected


# --- huge files: time grows with the text, not with its square ----------------
# Bounds are far above what the linear code takes (under a second here) and far
# below what the old quadratic code took on the same input (minutes).


def _seconds(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def test_many_distinct_short_lines_clean_in_linear_time() -> None:
    # Each short line used to be counted against every other line (list.count),
    # and each looked through all its short neighbours: 30,000 lines took minutes.
    page = "\n".join(f"item {i} of the list" for i in range(30_000))
    assert _seconds(lambda: clean_text(page)) < 15


def test_huge_hard_wrapped_paragraph_cleans_in_linear_time() -> None:
    # Re-joining wrapped lines used to copy the growing paragraph for every line.
    rng = random.Random(0)
    body = textwrap.wrap(" ".join(rng.choice(WORDS) for _ in range(600_000)), 72)
    page = "A headline about the river\n\nOfficials said " + "\n".join(body) + "."
    cleaned: list[CleanedText] = []
    assert _seconds(lambda: cleaned.append(clean_text(page))) < 15
    assert len(cleaned[0].paragraphs) == 1 and cleaned[0].paragraphs[0].endswith(body[-1] + ".")


def test_huge_line_without_spaces_is_not_matched_against_boilerplate_shapes() -> None:
    # A pasted blob of one "word": the e-mail and date shapes backtracked over
    # all of it at every position.
    blob = "a1b2c3d4" * 250_000
    assert _seconds(lambda: clean_text(f"{blob}\n\n{PROSE_LINE}")) < 15


PROSE_LINE = "The council said the work would begin in spring and take about two years to finish."


# --- properties: kept text is the input's own lines ---------------------------------

PROSE_WORDS = ["the", "river", "rose", "after", "rain", "officials", "said", "North", "Korea", "Mr.", "U.S.", "3.5"]
prose_line = st.lists(st.sampled_from(PROSE_WORDS), min_size=10, max_size=30).map(
    lambda words: " ".join(words).capitalize() + "."
)
heading_line = st.lists(
    st.sampled_from(["River", "Border", "Talks", "Resume", "In", "Seoul"]), min_size=1, max_size=6
).map(" ".join)
furniture_line = st.sampled_from([
    "Home", "• World", "Share on Facebook", "Login", "Copyright © 2021 Daily Planet", "photo-1.jpg The river",
    "2021-02-27 10:00 | Local", "By Lois Lane", "Published: March 3, 2021", "Tel: 02-123-4567", "Read in Korean",
    "news@planet.example", "Masthead: Daily Planet", "Reported by Kim Lee for RFA's Korean Service.",
])  # fmt: skip
odd_characters = st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    ["\u00a0", "\t", "\u200b", "\ufeff", "\u2028", "\x1c", "\x0c", "\u0301", "“", "…"]
)
any_line = st.text(odd_characters.filter(lambda c: c not in "\r\n"), max_size=80)
padding = st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u200b"])
page_line = st.tuples(padding, prose_line | heading_line | furniture_line | any_line | st.just(""), padding).map(
    "".join
)
pages = st.tuples(st.lists(page_line, max_size=40), st.sampled_from(["\n", "\r\n", "\r"])).map(
    lambda lines_and_break: lines_and_break[1].join(lines_and_break[0])
)


def normalized(text: str) -> str:
    """Text with runs of whitespace (and zero-width characters) as one space, trimmed."""
    return " ".join(text.replace("\u200b", "").replace("\ufeff", "").split())


def input_lines(raw: str) -> list[str]:
    return [normalized(line) for line in raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def run_of_lines(lines: list[str], start: int, target: str) -> int | None:
    """The index after the run of consecutive non-blank ``lines`` from ``start`` that joins to ``target``."""
    joined, end = lines[start], start
    while joined != target and len(joined) < len(target) and end + 1 < len(lines) and lines[end + 1]:
        end += 1
        joined = f"{joined} {lines[end]}"
    return end + 1 if joined == target and joined else None


def find_runs(lines: list[str], targets: list[str]) -> list[int] | None:
    """Where each target starts as a run of lines, each after the one before; ``None`` if one is missing."""
    position, starts = 0, []
    for target in targets:
        found = next(
            ((start, after) for start in range(position, len(lines)) if (after := run_of_lines(lines, start, target))),
            None,
        )
        if found is None:
            return None
        starts.append(found[0])
        position = found[1]
    return starts


@settings(max_examples=400, deadline=None)
@given(pages)
def test_kept_paragraphs_are_the_input_lines_verbatim_and_in_order(raw: str) -> None:
    cleaned = clean_text(raw)
    lines = input_lines(raw)

    assert all(paragraph and paragraph == paragraph.strip() for paragraph in cleaned.paragraphs)
    assert find_runs(lines, [normalized(p) for p in cleaned.paragraphs]) is not None
    if cleaned.title:
        assert find_runs(lines, [normalized(cleaned.title)]) is not None


@settings(max_examples=200, deadline=None)
@given(st.text(odd_characters | st.sampled_from(["\n", "\r"]), max_size=300))
def test_any_text_cleans_without_error_into_its_own_lines(raw: str) -> None:
    cleaned = clean_text(raw)
    assert find_runs(input_lines(raw), [normalized(p) for p in cleaned.paragraphs]) is not None


def test_the_line_matcher_rejects_text_that_is_not_in_the_input() -> None:
    lines = input_lines("First line of it\nwrapped here\n\nSecond block")
    assert find_runs(lines, ["First line of it wrapped here", "Second block"]) == [0, 3]
    assert find_runs(lines, ["Second block", "First line of it"]) is None  # out of order
    assert find_runs(lines, ["wrapped here Second block"]) is None  # across a blank line
    assert find_runs(lines, ["First line"]) is None  # part of a line
