"""Records passed between pipeline steps.

All records are frozen: a passage or hit is a value that can be cached,
compared and serialised without surprises. Attribution (title, outlet,
date, paragraph) travels as data on these records; turning it into text is
the job of whoever displays it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """One cleaned article.

    ``paragraphs`` are the article's paragraphs in reading order; ``text`` joins
    them with a blank line, and every character offset in ``qa`` points into it.
    Metadata fields hold ``""`` when unknown: they are never guessed.
    """

    doc_id: str
    source: str
    paragraphs: tuple[str, ...]
    title: str = ""
    outlet: str = ""
    author: str = ""
    date: str = ""
    url: str = ""
    checksum: str = ""

    @property
    def text(self) -> str:
        return PARAGRAPH_SEPARATOR.join(self.paragraphs)

    def paragraph_spans(self) -> list[tuple[int, int]]:
        """Return ``(start, end)`` offsets of each paragraph in ``text``."""
        spans = []
        start = 0
        for paragraph in self.paragraphs:
            spans.append((start, start + len(paragraph)))
            start += len(paragraph) + len(PARAGRAPH_SEPARATOR)
        return spans


PARAGRAPH_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Passage:
    """A retrievable unit: one paragraph, or short neighbours merged, or a long one split.

    ``text == document.text[start:end]`` always holds, and ``paragraph`` is the
    1-based number of the paragraph the passage starts in.
    """

    passage_id: str
    doc_id: str
    source: str
    paragraph: int
    start: int
    end: int
    text: str
    title: str = ""
    outlet: str = ""
    author: str = ""
    date: str = ""
    url: str = ""


@dataclass(frozen=True)
class Hit:
    """A passage returned for a query, with its 1-based rank and similarity score."""

    rank: int
    score: float
    passage: Passage


@dataclass(frozen=True)
class SearchResult:
    """The answer to one question: hits best first, and (later) an extractive answer."""

    query: str
    hits: tuple[Hit, ...]
    answerable: bool = True
    answer: str = ""


def hit_to_dict(hit: Hit) -> dict[str, object]:
    """A hit as the flat JSON object of ``qa search --json``."""
    passage = hit.passage
    return {
        "rank": hit.rank,
        "score": round(hit.score, 6),
        "passage_id": passage.passage_id,
        "doc_id": passage.doc_id,
        "source": passage.source,
        "title": passage.title,
        "outlet": passage.outlet,
        "author": passage.author,
        "date": passage.date,
        "paragraph": passage.paragraph,
        "text": passage.text,
    }


def result_to_dict(result: SearchResult) -> dict[str, object]:
    """A search result as the JSON object of ``qa search --json``."""
    return {
        "query": result.query,
        "answerable": result.answerable,
        "answer": result.answer,
        "hits": [hit_to_dict(hit) for hit in result.hits],
    }
