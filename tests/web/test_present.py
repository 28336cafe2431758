"""HTML and Markdown for the browser: escaping, highlighting, article view, question limits."""

from __future__ import annotations

import html
import re

from qa.records import Document, Evidence, Hit, Passage, SearchResult
from qa.search.abstention import NOT_IN_CORPUS
from qa.search.question import MAX_QUESTION_CHARS
from qa.web.present import (
    EMPTY_QUESTION_REPLY,
    article_html,
    as_markdown_text,
    chat_reply,
    clip_question,
    corpus_rows,
    parse_source_choice,
    passage_html,
    source_choices,
    sources_html,
)

SCRIPT = '<img src=x onerror=alert(1)><script>alert("x")</script>'


def make_hit(rank: int = 1, text: str = "First sentence. Second sentence.", **fields: str) -> Hit:
    passage = Passage(
        passage_id=f"doc#p{rank}-abc",
        doc_id="doc",
        source="doc.txt",
        paragraph=3,
        start=0,
        end=len(text),
        text=text,
        title=fields.get("title", "A <b>bold</b> title"),
        outlet=fields.get("outlet", "Gazette"),
        date=fields.get("date", "2021-03-04"),
    )
    evidence = Evidence(text[16:], 16, len(text), 0.8)
    return Hit(rank=rank, score=0.75, passage=passage, evidence=evidence, also_in=("copy/doc.txt",))


def test_question_is_cut_at_the_limit_with_a_notice() -> None:
    assert clip_question("  short question  ") == ("short question", "")
    assert clip_question(" \x00\u200b\r\n ") == ("", "")
    text, notice = clip_question("x" * (MAX_QUESTION_CHARS + 50))
    assert len(text) == MAX_QUESTION_CHARS
    assert f"{MAX_QUESTION_CHARS + 50:,}" in notice and f"{MAX_QUESTION_CHARS:,}" in notice
    assert notice.startswith("(") and notice.endswith(".)")


def test_markdown_text_shows_markup_literally() -> None:
    escaped = as_markdown_text(SCRIPT + " *not bold* [link](http://x)")
    assert "<" not in escaped and ">" not in escaped
    assert "\\*not bold\\*" in escaped and "\\[link\\]" in escaped
    # What a reader sees: the escapes removed and the entities decoded give back the text.
    assert html.unescape(re.sub(r"\\(.)", r"\1", escaped)) == SCRIPT + " *not bold* [link](http://x)"


def test_chat_reply_answers_or_says_plainly_there_is_none() -> None:
    hit = make_hit()
    answered = chat_reply(SearchResult("q", (hit,), True, "Walls cracked. [1]"), notice="cut")
    assert "Walls cracked\\. \\[1\\]" in answered and "cut" in answered
    declined = chat_reply(SearchResult("q", (hit,), False, "ignored"))
    assert as_markdown_text(NOT_IN_CORPUS) in declined


def test_passage_highlight_marks_exactly_the_evidence() -> None:
    text = "Intro <i>tag</i>.\n\nSecond paragraph with evidence here."
    start = text.index("evidence")
    rendered = passage_html(text, (start, start + len("evidence here.")))
    assert rendered.count("<p>") == 2
    assert "<mark>evidence here.</mark>" in rendered
    assert "&lt;i&gt;tag&lt;/i&gt;" in rendered and "<i>" not in rendered


def test_sources_carry_attribution_and_escape_corpus_text() -> None:
    hit = make_hit(text=f"Intro sentence. {SCRIPT}", title=SCRIPT)
    rendered = sources_html(SearchResult("q", (hit,), True, "a"))
    assert "<script" not in rendered and "<img" not in rendered
    assert "Gazette · 2021-03-04 · paragraph 3 · score 0.75" in rendered
    assert "Also in: copy/doc.txt" in rendered
    assert "Nearest passages" in sources_html(SearchResult("q", (hit,), False, ""))


def test_source_choices_round_trip_to_document_and_paragraph() -> None:
    hits = (make_hit(1), make_hit(2))
    choices = source_choices(SearchResult("q", hits, True, ""))
    assert [label.split("]")[0] for label, _ in choices] == ["[1", "[2"]
    assert {parse_source_choice(value) for _, value in choices} == {("doc", 3)}


def test_article_view_numbers_paragraphs_and_highlights_one() -> None:
    document = Document("doc", "doc.txt", ("One.", SCRIPT, "Three."), title="T", outlet="Gazette")
    rendered = article_html(document, paragraph=2)
    assert re.findall(r'id="qa-para-(\d)"', rendered) == ["1", "2", "3"]
    assert re.findall(r'id="qa-para-(\d)" class="qa-para qa-highlight"', rendered) == ["2"]
    assert "<script" not in rendered and "&lt;script&gt;" in rendered


def test_corpus_rows_and_empty_prompt() -> None:
    document = Document("d", "d.txt", ("p",), title="T", outlet="O", author="A", date="2020-01-01")
    assert corpus_rows([(document, 4)]) == [["T", "O", "A", "2020-01-01", 4, "d.txt"]]
    assert "Why do defectors return" in EMPTY_QUESTION_REPLY
