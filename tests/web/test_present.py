"""HTML and Markdown for the browser: escaping, highlighting, article view, question limits."""

from __future__ import annotations

import html
import re

import pytest

from conftest import CORPUS
from qa.ingest.corpus import load_documents
from qa.ingest.split import split_passages, split_sentences
from qa.records import Document, Evidence, Hit, Passage, SearchResult
from qa.search.abstention import NOT_IN_CORPUS
from qa.search.question import MAX_QUESTION_CHARS
from qa.web.present import (
    EMPTY_QUESTION_REPLY,
    NO_ANSWER_REPLY,
    answer_markdown,
    article_html,
    as_markdown_text,
    attribution,
    chat_reply,
    citation_title,
    cited_paragraph,
    clip_question,
    corpus_rows,
    filter_chips_html,
    filter_labels,
    parse_source_choice,
    passage_html,
    source_choices,
    sources_html,
    sources_panel,
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
    answered = chat_reply(SearchResult("q", (hit,), True, "Walls cracked. [1]"), notice="cut", turn=4)
    assert answered.startswith("Walls cracked\\. [\\[1\\]](#qa-source-4-1 ") and "cut" in answered
    # Where the sources are is the page's business, not every reply's.
    assert "Sources are listed" not in answered and "beside" not in answered
    declined = chat_reply(SearchResult("q", (hit,), False, NOT_IN_CORPUS))
    assert declined == as_markdown_text(NO_ANSWER_REPLY) and "below" not in NO_ANSWER_REPLY
    assert chat_reply(SearchResult("q", (), False, "")) == as_markdown_text(NOT_IN_CORPUS.split(". ")[0] + ".")
    why = "No article matches these filters."
    assert chat_reply(SearchResult("q", (), False, why)) == as_markdown_text(why)
    suggested = chat_reply(SearchResult("retrun?", (hit,), False, "", suggestion="return?"))
    assert suggested.endswith(as_markdown_text("Did you mean “return?”?"))


def test_an_answer_from_filtered_articles_says_so() -> None:
    labels = filter_labels(documents=["A <b> title"], outlets=["Daily NK"], date_from=" 2020-01-01 ", date_to="")
    assert labels == ["article “A <b> title”", "outlet Daily NK", "from 2020-01-01"]
    reply = chat_reply(SearchResult("q", (make_hit(),), True, "Walls cracked. [1]"), filters=labels)
    first = reply.split("\n\n")[0]
    assert first == as_markdown_text("Searched only article “A <b> title”; outlet Daily NK; from 2020-01-01.")
    assert chat_reply(SearchResult("q", (make_hit(),), True, "Walls cracked. [1]")).startswith("Walls")
    chips = filter_chips_html(labels)
    assert chips.count('class="qa-chip"') == 3 and "&lt;b&gt;" in chips and "<b>" not in chips
    assert filter_chips_html([]) == ""


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # One sentence a source, or a list of points: every [n] of a source becomes its link.
        ("Walls cracked. [1] Roofs fell [2].", "Walls cracked\\. {1} Roofs fell {2}\\."),
        ("- First point [1]\n- Second, Lim Ji-hyun [2]", "- First point {1}\n- Second, Lim Ji\\-hyun {2}"),
        ("1. First [2][1]\n* second [1]", "- First {2}{1}\n- second {1}"),
        # A number that is no source's, and markup, stay text.
        ("See [7] and [x](javascript:alert(1)) <b>", "See \\[7\\] and \\[x\\]\\(javascript:alert\\(1\\)\\) &lt;b&gt;"),
    ],
)
def test_citations_in_any_answer_become_links_to_their_sources(answer: str, expected: str) -> None:
    hits = (make_hit(1), make_hit(2))
    links = {n: f'[\\[{n}\\]](#qa-source-3-{n} "{_quoted(citation_title(hits[n - 1]))}")' for n in (1, 2)}
    assert answer_markdown(answer, hits, turn=3) == expected.replace("{1}", links[1]).replace("{2}", links[2])


def _quoted(title: str) -> str:
    return title.replace("\\", "\\\\").replace('"', '\\"')


def test_citation_tooltip_names_the_source_and_its_evidence_on_lines_of_their_own() -> None:
    hit = make_hit(text='Intro. He said "no\\way" and more\n\nand left.', title='A "quoted" title', outlet=" ", date="")
    title = citation_title(hit)
    assert title.split("\n")[0] == '[1] A "quoted" title'
    assert title.split("\n")[1] == "paragraph 3"  # no blank outlet, no empty date
    assert "\n\n" not in title  # a blank line would end the Markdown link
    link = answer_markdown("x [1]", (hit,))
    assert '\\"quoted\\"' in link and "no\\\\way" in link


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


def test_source_choices_round_trip_to_document_and_the_cited_span() -> None:
    hits = (make_hit(1), make_hit(2))
    choices = source_choices(SearchResult("q", hits, True, ""))
    assert [label for label, _ in choices] == [f"[{n}] A <b>bold</b> title, paragraph 3" for n in (1, 2)]
    assert {parse_source_choice(value) for _, value in choices} == {("doc", (16, 32))}
    assert parse_source_choice("doc::3") == ("doc", 3)  # a paragraph, as before
    assert parse_source_choice("a::b::x-1") == ("a::b", 0)


def test_article_view_numbers_paragraphs_and_highlights_one() -> None:
    document = Document("doc", "doc.txt", ("One.", SCRIPT, "Three."), title="T", outlet="Gazette")
    rendered = article_html(document, 2)
    assert re.findall(r'id="qa-para-(\d)"', rendered) == ["1", "2", "3"]
    assert re.findall(r'id="qa-para-(\d)" class="qa-para qa-highlight"', rendered) == ["2"]
    assert "<script" not in rendered and "&lt;script&gt;" in rendered


def _daily_nk() -> tuple[Document, list[Passage]]:
    [document] = [d for d in load_documents(CORPUS) if d.doc_id.startswith("dailynk")]
    return document, split_passages(document, max_tokens=254)


def _holding(document: Document, offset: int) -> int:
    """The reference: the 1-based paragraph whose span in the article holds ``offset``."""
    return next(n for n, (start, end) in enumerate(document.paragraph_spans(), 1) if start <= offset < end)


def test_a_heading_joined_to_its_paragraph_is_not_what_is_cited() -> None:
    document, passages = _daily_nk()
    [passage] = [p for p in passages if p.text.startswith("PREVENTING POTENTIAL ALIENATION")]
    start = passage.text.index("This directive")
    end = passage.text.index(".", start) + 1
    hit = Hit(1, 0.9, passage, evidence=Evidence(passage.text[start:end], start, end, 0.7))
    paragraph = _holding(document, passage.start + start)
    assert passage.paragraph == paragraph - 1  # the passage starts at the heading ...
    assert cited_paragraph(hit) == paragraph  # ... but cites the paragraph holding the evidence
    assert f"paragraph {paragraph} ·" in attribution(hit)
    [(label, value)] = source_choices(SearchResult("q", (hit,), True, ""))
    assert label.endswith(f"paragraph {paragraph}")
    rendered = article_html(document, parse_source_choice(value)[1])
    assert re.findall(r'id="qa-para-(\d+)" class="qa-para qa-highlight"', rendered) == [str(paragraph)]
    assert f"<mark>{html.escape(passage.text[start:end])}</mark>" in rendered
    # Evidence that takes in the heading too (a sentence and its neighbour) still cites the paragraph.
    both = Hit(1, 0.9, passage, evidence=Evidence(passage.text[:end], 0, end, 0.7))
    assert cited_paragraph(both) == paragraph


def test_every_sentence_of_every_passage_is_cited_at_its_own_paragraph() -> None:
    for document in load_documents(CORPUS):
        for passage in split_passages(document, max_tokens=254):
            for start, end in split_sentences(passage.text):
                hit = Hit(1, 0.5, passage, evidence=Evidence(passage.text[start:end], start, end, 0.5))
                assert cited_paragraph(hit) == _holding(document, passage.start + start), (passage.passage_id, start)


def test_untitled_article_is_named_once_and_unknown_metadata_leaves_no_gap() -> None:
    document = Document("news/untitled.txt", "news/untitled.txt", ("First line.", "Second."), outlet=" ", date="")
    header = article_html(document, 1).split("<p ")[0]
    assert header.count("news/untitled.txt") == 1
    assert '<div class="qa-article-meta"></div>' in header
    dated = Document("d.txt", "d.txt", ("x",), title="T", author="A", date="2020-01-02")
    assert '<div class="qa-article-meta">A · 2020-01-02 · d.txt</div>' in article_html(dated)
    hit = make_hit(title="", outlet="", date="")
    assert attribution(hit) == "paragraph 3 · score 0.75"
    assert "<b>[1]</b> doc.txt</div>" in sources_html(SearchResult("q", (hit,), True, "a"))


def test_sources_panel_shows_the_latest_answer_and_keeps_the_others_hidden() -> None:
    first = sources_html(SearchResult("first question", (make_hit(1),), True, "a"), turn=1)
    second = sources_html(SearchResult("second <question>", (make_hit(1),), True, "a"), turn=2)
    panel = sources_panel([(1, first), (2, second)])
    assert re.findall(r'<section class="qa-turn" data-turn="(\d)"( hidden)?>', panel) == [("2", ""), ("1", " hidden")]
    assert 'id="qa-source-1-1"' in panel and 'id="qa-source-2-1"' in panel
    assert "for “second &lt;question&gt;”" in panel
    assert sources_panel([]) == ""


def test_corpus_rows_and_empty_prompt() -> None:
    document = Document("d", "d.txt", ("p",), title="T", outlet="O", author="A", date="2020-01-01")
    assert corpus_rows([(document, 4)]) == [["T", "O", "A", "2020-01-01", 4, "d.txt"]]
    assert "Why do defectors return" in EMPTY_QUESTION_REPLY
