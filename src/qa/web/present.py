"""Turn answers and articles into HTML and Markdown for the browser.

Everything that comes from a person (the question) or from the corpus is
escaped here, so markup in either is shown as text and never runs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from qa.records import PARAGRAPH_SEPARATOR, Document, Hit, SearchResult
from qa.search.abstention import NOT_IN_CORPUS
from qa.search.question import EmptyQuestionError, clipped_notice, normalize_question

EMPTY_QUESTION_REPLY = 'Please type a question first, for example "Why do defectors return to North Korea?"'
CHOICE_SEPARATOR = "::"
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


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


def chat_reply(result: SearchResult, notice: str = "") -> str:
    """The assistant's chat message: the answer with its ``[n]`` citations, or the plain no-answer."""
    body = result.answer if result.answerable else NOT_IN_CORPUS
    lines = [as_markdown_text(body)]
    if result.hits:
        lines.append("*Sources are listed beside the conversation.*")
    if notice:
        lines.append(as_markdown_text(notice))
    return "\n\n".join(lines)


def attribution(hit: Hit) -> str:
    """``Outlet · date · paragraph N · score`` for a source, leaving out what is unknown."""
    passage = hit.passage
    parts = [passage.outlet, passage.date, f"paragraph {passage.paragraph}", f"score {hit.score:.2f}"]
    return " · ".join(part for part in parts if part)


def passage_html(text: str, highlight: tuple[int, int] | None = None) -> str:
    """A passage as paragraphs of escaped text, with ``text[start:end]`` in ``<mark>``."""
    if highlight is None:
        marked = html.escape(text)
    else:
        start, end = highlight
        marked = f"{html.escape(text[:start])}<mark>{html.escape(text[start:end])}</mark>{html.escape(text[end:])}"
    paragraphs = marked.split(PARAGRAPH_SEPARATOR)
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)


def source_html(hit: Hit) -> str:
    """One source as HTML: attribution, the passage with its evidence highlighted, and copies elsewhere."""
    passage = hit.passage
    evidence = (hit.evidence.start, hit.evidence.end) if hit.evidence else None
    also = f'<div class="qa-also">Also in: {html.escape(", ".join(hit.also_in))}</div>' if hit.also_in else ""
    return (
        f'<div class="qa-source" id="qa-source-{hit.rank}">'
        f'<div class="qa-source-title"><b>[{hit.rank}]</b> {html.escape(passage.title or passage.source)}</div>'
        f'<div class="qa-source-meta">{html.escape(attribution(hit))}</div>{also}'
        f'<div class="qa-passage">{passage_html(passage.text, evidence)}</div></div>'
    )


def sources_html(result: SearchResult) -> str:
    """Every hit of an answer: title, outlet, date, paragraph, score, and its text with the evidence marked."""
    if not result.hits:
        return '<div class="qa-sources-empty">No passages to show.</div>'
    heading = "Sources" if result.answerable else "Nearest passages (they do not answer the question)"
    return f'<div class="qa-sources"><h3>{heading}</h3>{"".join(source_html(hit) for hit in result.hits)}</div>'


def source_choices(result: SearchResult) -> list[tuple[str, str]]:
    """Dropdown entries that open each source's article at its paragraph: (label, value)."""
    return [
        (
            f"[{hit.rank}] {hit.passage.title or hit.passage.source}, paragraph {hit.passage.paragraph}",
            f"{hit.passage.doc_id}{CHOICE_SEPARATOR}{hit.passage.paragraph}",
        )
        for hit in result.hits
    ]


def parse_source_choice(value: str) -> tuple[str, int]:
    """The ``(doc_id, paragraph)`` of a dropdown value made by ``source_choices``."""
    doc_id, _, paragraph = value.rpartition(CHOICE_SEPARATOR)
    return doc_id, int(paragraph) if paragraph.isdigit() else 0


def article_html(document: Document, paragraph: int = 0) -> str:
    """The whole cleaned article, paragraphs numbered, ``paragraph`` (1-based) highlighted."""
    meta = " · ".join(part for part in (document.outlet, document.author, document.date, document.source) if part)
    body = "".join(
        f'<p id="qa-para-{number}" class="qa-para{" qa-highlight" if number == paragraph else ""}">'
        f'<span class="qa-para-number">{number}</span> {html.escape(text)}</p>'
        for number, text in enumerate(document.paragraphs, start=1)
    )
    title = html.escape(document.title or document.source)
    return f'<div class="qa-article"><h3>{title}</h3><div class="qa-article-meta">{html.escape(meta)}</div>{body}</div>'


def corpus_rows(documents: Sequence[tuple[Document, int]]) -> list[list[str | int]]:
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
