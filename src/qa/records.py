"""Records passed between pipeline steps.

All records are frozen: a passage or hit is a value that can be cached,
compared and serialised without surprises. Attribution (title, outlet,
date, paragraph) travels as data on these records; turning it into text is
the job of whoever displays it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Document:
    """One cleaned article.

    ``paragraphs`` are the article's paragraphs in reading order; ``text`` joins
    them with a blank line, and every character offset in ``qa`` points into it.
    Metadata fields hold ``""`` when unknown: they are never guessed.
    ``encoding`` is the one the file was read in (Python's codec name:
    ``utf-8``, ``cp949``, ``cp1252``, ...); indexes written before it was
    recorded only held UTF-8 files, hence the default.
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
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        """The article's paragraphs joined by a blank line."""
        return PARAGRAPH_SEPARATOR.join(self.paragraphs)

    @property
    def metadata(self) -> DocumentMetadata:
        """Everything about the article but its text."""
        return DocumentMetadata(**{name: getattr(self, name) for name in METADATA_FIELDS})

    def paragraph_spans(self) -> list[tuple[int, int]]:
        """Return ``(start, end)`` offsets of each paragraph in ``text``."""
        spans = []
        start = 0
        for paragraph in self.paragraphs:
            spans.append((start, start + len(paragraph)))
            start += len(paragraph) + len(PARAGRAPH_SEPARATOR)
        return spans


PARAGRAPH_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class DocumentMetadata:
    """A ``Document`` without its text: what an index keeps in memory of each article.

    A corpus of a hundred thousand articles holds some 700 MB of text; lists, filters and
    build reports need only these fields.
    """

    doc_id: str
    source: str
    title: str = ""
    outlet: str = ""
    author: str = ""
    date: str = ""
    url: str = ""
    checksum: str = ""
    encoding: str = "utf-8"

    def with_paragraphs(self, paragraphs: tuple[str, ...]) -> Document:
        """The whole document: this metadata and its text."""
        return Document(paragraphs=paragraphs, **{name: getattr(self, name) for name in METADATA_FIELDS})


# Every field of a document but its paragraphs, in order.
METADATA_FIELDS = tuple(field.name for field in dataclasses.fields(DocumentMetadata))


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Evidence:
    """The sentence (or two) of a passage that best answers the question.

    ``start`` and ``end`` index into the passage's ``text``; ``score`` is the
    cosine similarity of the sentence to the question.
    """

    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Span:
    """A short answer the reader found in a passage: ``start`` and ``end`` index into the passage's ``text``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage returned for a query, with its 1-based rank and fused score.

    The dense and BM25 ranks and scores say how each retriever saw the passage
    (``None`` where the passage was not among that retriever's candidates).
    ``also_in`` lists the sources of near-duplicate passages folded into this one.
    ``reader_score`` is the trained reader's answerability logit (above 0: the passage
    likely answers the question) and ``span`` the short answer it found there; both
    ``None`` when the reader did not read the hit.
    """

    rank: int
    score: float
    passage: Passage
    dense_rank: int | None = None
    dense_score: float | None = None
    bm25_rank: int | None = None
    bm25_score: float | None = None
    evidence: Evidence | None = None
    also_in: tuple[str, ...] = ()
    reader_score: float | None = None
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class WrittenSentence:
    """One sentence of an answer a language model wrote, its citations checked.

    ``citations`` are the ``[n]`` it carries. ``problem`` says why it is not supported
    (``""`` when it is): it cites no passage, cites one that was not given, or what it
    cites does not say it. ``support`` is its closest similarity (cosine) to a sentence
    of a given passage it cites; ``None`` when it cites none.
    """

    text: str
    citations: tuple[int, ...] = ()
    problem: str = ""
    support: float | None = None


@dataclass(frozen=True, slots=True)
class WrittenAnswer:
    """The answer the user's language model ``model`` wrote from the hits, checked; or why there is none.

    ``text`` is the answer as shown, each unsupported sentence marked; ``""`` when it is not
    shown, and ``notice`` then says why in one line (the model failed, or no sentence of its
    answer is supported by a passage it cites). Both are ``""`` when the model was not asked
    (``qa`` found no answer in the articles).
    """

    model: str
    text: str = ""
    sentences: tuple[WrittenSentence, ...] = ()
    notice: str = ""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The answer to one question: hits best first, an extractive answer, and whether the corpus answers it.

    ``answer`` is either sentences with their ``[n]`` citations, or, for a
    question asking for several points, one point a line, each line starting
    ``"- "``. ``suggestion`` is the question with the corpus's spelling of
    words it spells otherwise ("Lim Ji-hyun" for "Lim Jihyun", "return" for
    "retrun"), to offer as "Did you mean ...?"; empty when there is none.
    ``short_answer`` is the reader's short answer and ``short_answer_rank`` the rank of
    the hit it comes from (the answer's first sentence holds it); ``""`` and 0 without one.
    ``written`` is the answer a language model wrote from the hits, when one was asked.
    """

    query: str
    hits: tuple[Hit, ...]
    answerable: bool = True
    answer: str = ""
    suggestion: str = ""
    short_answer: str = ""
    short_answer_rank: int = 0
    written: WrittenAnswer | None = None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def hit_to_dict(hit: Hit) -> dict[str, object]:
    """A hit as the flat JSON object of ``qa search --json``."""
    passage = hit.passage
    evidence = hit.evidence
    return {
        "rank": hit.rank,
        "score": _rounded(hit.score),
        "passage_id": passage.passage_id,
        "doc_id": passage.doc_id,
        "source": passage.source,
        "title": passage.title,
        "outlet": passage.outlet,
        "author": passage.author,
        "date": passage.date,
        "url": passage.url,
        "paragraph": passage.paragraph,
        "text": passage.text,
        "evidence": None
        if evidence is None
        else {"text": evidence.text, "start": evidence.start, "end": evidence.end, "score": _rounded(evidence.score)},
        "dense_rank": hit.dense_rank,
        "dense_score": _rounded(hit.dense_score),
        "bm25_rank": hit.bm25_rank,
        "bm25_score": _rounded(hit.bm25_score),
        "also_in": list(hit.also_in),
        "reader_score": _rounded(hit.reader_score),
        "span": None if hit.span is None else {"text": hit.span.text, "start": hit.span.start, "end": hit.span.end},
    }


def result_to_dict(result: SearchResult) -> dict[str, object]:
    """A search result as the JSON object of ``qa search --json``; with a language model, its checked answer too."""
    as_dict: dict[str, object] = {
        "query": result.query,
        "answerable": result.answerable,
        "answer": result.answer,
        "suggestion": result.suggestion,
        "short_answer": {"text": result.short_answer, "rank": result.short_answer_rank}
        if result.short_answer
        else None,
        "hits": [hit_to_dict(hit) for hit in result.hits],
    }
    if result.written is not None:
        as_dict.update(written_to_dict(result.written, result.hits))
    return as_dict


def written_to_dict(written: WrittenAnswer, hits: tuple[Hit, ...]) -> dict[str, object]:
    """The fields a written answer adds to the JSON: the answer, its citations, its unsupported sentences."""
    passage_ids = {hit.rank: hit.passage.passage_id for hit in hits}
    return {
        "generated_answer": written.text or None,
        "generated_by": written.model,
        "generated_notice": written.notice or None,
        "citations": [
            {"sentence": number, "rank": rank, "passage_id": passage_ids[rank], "supported": not sentence.problem}
            for number, sentence in enumerate(written.sentences)
            for rank in sentence.citations
            if rank in passage_ids
        ],
        "unsupported": [
            {
                "sentence": number,
                "text": sentence.text,
                "citations": list(sentence.citations),
                "reason": sentence.problem,
                "support": _rounded(sentence.support),
            }
            for number, sentence in enumerate(written.sentences)
            if sentence.problem
        ],
    }
