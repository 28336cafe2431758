"""Turn answers and articles into HTML and Markdown for the browser.

Everything that comes from a person (the question) or from the corpus is
escaped here, so markup in either is shown as text and never runs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from qa.records import PARAGRAPH_SEPARATOR, Document, DocumentMetadata, Hit, SearchResult, WrittenAnswer
from qa.search.abstention import NOT_IN_CORPUS
from qa.search.question import EmptyQuestionError, clipped_notice, normalize_question

EMPTY_QUESTION_REPLY = 'Please type a question first, for example "Why do defectors return to North Korea?"'
# The chat's no-answer: where the nearest passages are, in words true beside the chat and below it.
NO_ANSWER_REPLY = "These articles do not answer that question. The nearest passages are in the Sources panel."
CHOICE_SEPARATOR = "::"
# Characters of evidence a citation's tooltip shows.
TOOLTIP_EVIDENCE_CHARS = 240
# Answers whose sources the panel keeps, so an older answer's [n] still finds its source.
KEPT_TURNS = 20
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")
_CITATION = re.compile(r"(\[\d+\])")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def clip_question(question: str) -> tuple[str, str]:
    """The question as every front end takes it (``normalize_question``), and a notice if it was cut.

    ``("", "")`` when nothing is left to ask.
    """
    try:
        normalized = normalize_question(question)
    except EmptyQuestionError:
        return "", ""
    notice = clipped_notice(normalized)
    return normalized.text, f"({notice})" if notice else ""


def as_markdown_text(text: str) -> str:
    """Text that a Markdown renderer shows exactly as written: no markup, no HTML."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(text, quote=False))


def chat_reply(result: SearchResult, notice: str = "", *, turn: int = 0, filters: Sequence[str] = ()) -> str:
    """The assistant's chat message: the answer with its ``[n]`` citations as links, or the plain no-answer.

    A suggested spelling of the question follows as "Did you mean ...?".

    Args:
        result: The answer.
        notice: A note to add (the question was cut).
        turn: The answer's number in the conversation; its citations link to
            that turn's sources (``sources_html``).
        filters: The active filters (``filter_labels``): an answer from part
            of the corpus says which part.
    """
    lines = [as_markdown_text(f"Searched only {'; '.join(filters)}.")] if filters else []
    if result.answerable and result.short_answer:
        lead = next((hit for hit in result.hits if hit.rank == result.short_answer_rank), None)
        citation = _citation_link(lead, turn) if lead else ""
        lines.append(f"**Answer: {as_markdown_text(result.short_answer)}** {citation}".rstrip())
    if result.answerable:
        lines.append(answer_markdown(result.answer, result.hits, turn, emphasis=result.short_answer))
    else:
        lines.append(as_markdown_text(_no_answer(result)))
    if result.suggestion:
        lines.append(as_markdown_text(f"Did you mean “{result.suggestion}”?"))
    if notice:
        lines.append(as_markdown_text(notice))
    return "\n\n".join(lines)


# How an unsupported sentence is marked in the chat (the check writes "(unsupported: why)" after it).
UNSUPPORTED_MARK = "⚠"


def writing_reply(model: str, text: str, hits: Sequence[Hit], turn: int = 0) -> str:
    """The chat message of a written answer while the model writes it: the text so far, citations linked."""
    heading = (
        f"**{as_markdown_text(f'Written by {model}')}** {as_markdown_text('(citations are checked when it ends)')}"
    )
    return f"{heading}\n\n{answer_markdown(text, hits, turn)}"


def written_reply(written: WrittenAnswer, hits: Sequence[Hit], turn: int = 0) -> str:
    """The chat message of a checked written answer: how many sentences its passages support, each failure marked.

    Without a written answer to show, the message is its notice (why not), in one line.
    """
    if written.notice:
        return as_markdown_text(f"{UNSUPPORTED_MARK} {written.notice[:1].upper()}{written.notice[1:]}.")
    failed = sum(bool(sentence.problem) for sentence in written.sentences)
    summary = (
        f"all {len(written.sentences)} sentences are supported by the passages they cite"
        if not failed
        else f"not supported, {failed} of {len(written.sentences)} sentences ({UNSUPPORTED_MARK})"
    )
    heading = (
        f"**{as_markdown_text(f'Written by {written.model}')}** · {as_markdown_text(f'citations checked: {summary}')}"
    )
    marked = written.text.replace(" (unsupported: ", f" {UNSUPPORTED_MARK} (unsupported: ")
    return f"{heading}\n\n{answer_markdown(marked, hits, turn)}"


def _no_answer(result: SearchResult) -> str:
    """The library's no-answer (which may say why: no article matches the filters), placed for the chat."""
    if result.answer and result.answer != NOT_IN_CORPUS:
        return result.answer
    return NO_ANSWER_REPLY if result.hits else NOT_IN_CORPUS.split(". ")[0] + "."


def answer_markdown(answer: str, hits: Sequence[Hit], turn: int = 0, *, emphasis: str = "") -> str:
    """An answer as Markdown: its text shown as written, each ``[n]`` a link to source ``n`` of ``turn``.

    The link's tooltip is the source's title, attribution and evidence. A line
    that is a list item (``- point``, ``* point``, ``1. point``) stays one; any
    other markup in the text is shown literally; a number that is no source's
    stays plain text. The first occurrence of ``emphasis`` (the short answer) is bold.
    """
    by_rank = {hit.rank: hit for hit in hits}
    lines = []
    for line in answer.split("\n"):
        item = _LIST_ITEM.match(line)
        prefix, body = ("- ", line[item.end() :]) if item else ("", line)
        pieces = []
        for piece in _CITATION.split(body):
            hit = by_rank.get(int(piece[1:-1])) if _CITATION.fullmatch(piece) else None
            if hit:
                pieces.append(_citation_link(hit, turn))
            elif emphasis and emphasis in piece:
                before, after = piece.split(emphasis, 1)
                pieces.append(f"{as_markdown_text(before)}**{as_markdown_text(emphasis)}**{as_markdown_text(after)}")
                emphasis = ""
            else:
                pieces.append(as_markdown_text(piece))
        lines.append(prefix + "".join(pieces))
    return "\n".join(lines)


def _citation_link(hit: Hit, turn: int) -> str:
    # A Markdown link title is quoted: its own backslashes and quotes are escaped.
    title = citation_title(hit).replace("\\", "\\\\").replace('"', '\\"')
    return f'[\\[{hit.rank}\\]](#{source_anchor(turn, hit.rank)} "{title}")'


def source_anchor(turn: int, rank: int) -> str:
    """The HTML id of source ``rank`` of answer ``turn`` in the sources panel."""
    return f"qa-source-{turn}-{rank}"


def citation_title(hit: Hit) -> str:
    """A citation's tooltip: ``[n] title``, where it is from, and its evidence (clipped)."""
    passage = hit.passage
    lines = [f"[{hit.rank}] {display_title(passage.title, passage.source)}", attribution(hit, score=False)]
    if hit.evidence:
        lines.append(f"“{_clipped(' '.join(hit.evidence.text.split()), TOOLTIP_EVIDENCE_CHARS)}”")
    # One line each and never a blank one, which would end a Markdown link title.
    return "\n".join(" ".join(line.split()) for line in lines if line.strip())


def _clipped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def display_title(title: str, source: str) -> str:
    """What names a document: its title, else its file name."""
    return title.strip() or source


def filter_labels(
    documents: Sequence[str] = (), outlets: Sequence[str] = (), date_from: str = "", date_to: str = ""
) -> list[str]:
    """The active filters in words, one a chip: ``article X``, ``outlet Y``, ``from D``, ``to D``.

    Args:
        documents: The chosen documents, as the filter shows them (titles).
        outlets: The chosen outlets.
        date_from: The first day of the range, as typed (``""``: open).
        date_to: The last day of the range, as typed.
    """
    labels = [f"article “{name}”" for name in documents] + [f"outlet {name}" for name in outlets]
    if date_from.strip():
        labels.append(f"from {date_from.strip()}")
    if date_to.strip():
        labels.append(f"to {date_to.strip()}")
    return labels


def filter_chips_html(labels: Sequence[str]) -> str:
    """The active filters as chips above the conversation; nothing when none is set."""
    if not labels:
        return ""
    chips = "".join(f'<span class="qa-chip">{html.escape(label)}</span>' for label in labels)
    return f'<div class="qa-chips"><span class="qa-chips-label">Searching only:</span>{chips}</div>'


def attribution(hit: Hit, *, score: bool = True) -> str:
    """``Outlet · date · paragraph N · score`` for a source, leaving out what is unknown.

    The paragraph is the one holding the evidence (``cited_paragraph``).
    """
    passage = hit.passage
    parts = [passage.outlet.strip(), passage.date.strip(), f"paragraph {cited_paragraph(hit)}"]
    if score:
        parts.append(f"score {hit.score:.2f}")
    return " · ".join(part for part in parts if part)


def cited_span(hit: Hit) -> tuple[int, int]:
    """What a source cites, as offsets into its passage's text: the evidence, else the whole passage."""
    if hit.evidence is not None:
        return hit.evidence.start, hit.evidence.end
    return 0, len(hit.passage.text)


def cited_paragraph(hit: Hit) -> int:
    """The 1-based number of the article paragraph holding most of what the hit cites.

    A passage may join paragraphs (a heading joins the one after it), and its
    own ``paragraph`` is the one it starts in: the heading's.
    """
    start, end = cited_span(hit)
    best, most, offset = 0, -1, 0
    for number, paragraph in enumerate(hit.passage.text.split(PARAGRAPH_SEPARATOR)):
        overlap = min(end, offset + len(paragraph)) - max(start, offset)
        if overlap > most:
            best, most = number, overlap
        offset += len(paragraph) + len(PARAGRAPH_SEPARATOR)
    return hit.passage.paragraph + best


def passage_html(text: str, highlight: tuple[int, int] | None = None, answer: tuple[int, int] | None = None) -> str:
    """A passage as paragraphs of escaped text, ``text[start:end]`` in ``<mark>``, the ``answer`` span in bold.

    The answer is bold only inside the highlight (where the reader found it in the evidence).
    """
    paragraphs = _marked(text, highlight, answer).split(PARAGRAPH_SEPARATOR)
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)


def _marked(text: str, highlight: tuple[int, int] | None, answer: tuple[int, int] | None = None) -> str:
    """``text`` escaped, with ``text[start:end]`` in ``<mark>`` and the answer inside it in ``<strong>``."""
    if highlight is None:
        return html.escape(text)
    start, end = highlight
    inner = html.escape(text[start:end])
    if answer is not None and start <= answer[0] < answer[1] <= end:
        first, last = answer[0] - start, answer[1] - start
        marked = text[start:end]
        inner = (
            f'{html.escape(marked[:first])}<strong class="qa-answer">{html.escape(marked[first:last])}</strong>'
            f"{html.escape(marked[last:])}"
        )
    return f"{html.escape(text[:start])}<mark>{inner}</mark>{html.escape(text[end:])}"


def source_html(hit: Hit, turn: int = 0) -> str:
    """One source as HTML: attribution, the passage with its evidence highlighted, and copies elsewhere."""
    passage = hit.passage
    evidence = (hit.evidence.start, hit.evidence.end) if hit.evidence else None
    answer = (hit.span.start, hit.span.end) if hit.span else None
    also = f'<div class="qa-also">Also in: {html.escape(", ".join(hit.also_in))}</div>' if hit.also_in else ""
    return (
        f'<div class="qa-source" id="{source_anchor(turn, hit.rank)}">'
        f'<div class="qa-source-title"><b>[{hit.rank}]</b> {html.escape(display_title(passage.title, passage.source))}'
        f'</div><div class="qa-source-meta">{html.escape(attribution(hit))}</div>{also}'
        f'<div class="qa-passage">{passage_html(passage.text, evidence, answer)}</div></div>'
    )


def sources_html(result: SearchResult, turn: int = 0) -> str:
    """The sources of answer ``turn``: title, outlet, date, paragraph, score, and text with the evidence marked."""
    if not result.hits:
        return '<div class="qa-sources-empty">No passages to show.</div>'
    heading = "Sources" if result.answerable else "Nearest passages (they do not answer the question)"
    question = html.escape(_clipped(result.query, 120))
    return (
        f'<h3>{heading}</h3><div class="qa-turn-question">for “{question}”</div>'
        f"{''.join(source_html(hit, turn) for hit in result.hits)}"
    )


def sources_panel(turns: Sequence[tuple[int, str]]) -> str:
    """The sources panel: each answer's ``(turn, sources_html)``, the latest shown and the others hidden.

    A click on an older answer's ``[n]`` shows its turn (the page's script).
    """
    if not turns:
        return ""
    kept = list(turns[-KEPT_TURNS:])
    sections = [
        f'<section class="qa-turn" data-turn="{turn}"{"" if turn == kept[-1][0] else " hidden"}>{body}</section>'
        for turn, body in reversed(kept)
    ]
    return f'<div class="qa-sources">{"".join(sections)}</div>'


def source_choices(result: SearchResult) -> list[tuple[str, str]]:
    """Dropdown entries that open each source's article at what it cites: (label, value).

    The value is ``doc_id::start-end``, the cited span's offsets in the article's text.
    """
    choices = []
    for hit in result.hits:
        passage = hit.passage
        start, end = cited_span(hit)
        label = f"[{hit.rank}] {display_title(passage.title, passage.source)}, paragraph {cited_paragraph(hit)}"
        value = f"{passage.doc_id}{CHOICE_SEPARATOR}{passage.start + start}-{passage.start + end}"
        choices.append((label, value))
    return choices


def parse_source_choice(value: str) -> tuple[str, tuple[int, int] | int]:
    """The document and place of a dropdown value: ``(doc_id, (start, end))`` or, as ``doc::N``, a paragraph.

    A place that is neither is paragraph 0 (nothing highlighted).
    """
    doc_id, _, place = value.rpartition(CHOICE_SEPARATOR)
    start, dash, end = place.partition("-")
    if dash and start.isdigit() and end.isdigit():
        return doc_id, (int(start), int(end))
    return doc_id, int(place) if place.isdigit() else 0


def article_html(document: Document, place: tuple[int, int] | int = 0) -> str:
    """The whole cleaned article, paragraphs numbered, the cited place highlighted.

    ``place`` is a span of the article's text (``start, end``): the paragraph
    holding most of it is highlighted and the span itself marked; or a 1-based
    paragraph number to highlight.
    """
    spans = document.paragraph_spans()
    if isinstance(place, tuple):
        start, end = place
        overlaps = [min(end, p_end) - max(start, p_start) for p_start, p_end in spans]
        highlighted = overlaps.index(max(overlaps)) + 1 if overlaps and max(overlaps) > 0 else 0
    else:
        start = end = 0
        highlighted = place
    paragraphs = []
    for number, (text, (p_start, p_end)) in enumerate(zip(document.paragraphs, spans, strict=True), start=1):
        mark = (max(start, p_start) - p_start, min(end, p_end) - p_start) if start < p_end and end > p_start else None
        body = _marked(text, mark)
        paragraphs.append(
            f'<p id="qa-para-{number}" class="qa-para{" qa-highlight" if number == highlighted else ""}">'
            f'<span class="qa-para-number">{number}</span> {body}</p>'
        )
    title = display_title(document.title, document.source)
    # The file name once: as the title when there is none.
    meta_parts = (document.outlet, document.author, document.date, "" if title == document.source else document.source)
    meta = " · ".join(part.strip() for part in meta_parts if part.strip())
    return (
        f'<div class="qa-article"><h3>{html.escape(title)}</h3>'
        f'<div class="qa-article-meta">{html.escape(meta)}</div>{"".join(paragraphs)}</div>'
    )


def corpus_rows(documents: Sequence[tuple[DocumentMetadata, int]]) -> list[list[str | int]]:
    """One table row per document: title, outlet, author, date, passages, source."""
    return [[d.title, d.outlet, d.author, d.date, count, d.source] for d, count in documents]


CORPUS_COLUMNS = ["title", "outlet", "author", "date", "passages", "source"]


def status_markdown(documents: int, passages: int, model: str, built_at: str, rebuilding: bool) -> str:
    """The Corpus tab's status line."""
    state = "**Rebuilding…** questions are answered from the current index meanwhile." if rebuilding else ""
    lines = [
        f"**{documents}** documents, **{passages}** passages.",
        f"Model: `{model}`. Index built: {built_at or 'unknown'}.",
        state,
    ]
    return "\n\n".join(line for line in lines if line)
