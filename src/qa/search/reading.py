"""The reader at question time: read the best candidates, re-rank them with it, point evidence at the answer.

The reader (``qa.reader``) scores whether a passage answers the question and marks the
short answer in it. Its score joins the hybrid score (weight chosen on SciFact train and
held-out SQuAD articles, ``benchmarks/reader.py``), and where it finds an answer, the hit's
evidence becomes the sentence holding it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from qa.ingest.split import split_sentences
from qa.reader.model import PassageReader, Reading
from qa.records import Evidence, Hit, Span
from qa.search.fusion import min_max

# Candidates the reader reads: hybrid search's re-ranked best.
READ_DEPTH = 20
# Hybrid score (fused and evidence) against the reader's: final = (1 - w) * hybrid + w * reader, min-max scaled.
READER_WEIGHT = 0.25
# A span is kept (and the evidence moved to it) only where the reader thinks the passage answers:
# an answerability logit of 0 is even odds.
SPAN_MIN_SCORE = 0.0


def read_hits(
    hits: Sequence[Hit],
    question: str,
    *,
    reader: PassageReader,
    query_vector: np.ndarray,
    embed: Callable[[list[str]], np.ndarray],
    depth: int = READ_DEPTH,
    move_evidence: bool = True,
) -> list[Hit]:
    """The hits with the first ``depth`` read: reader score, and where it likely answers, span and evidence there.

    A hit whose reader score reaches ``SPAN_MIN_SCORE`` gets the reader's span, and, with
    ``move_evidence``, its evidence becomes the sentence holding the span (unless the evidence
    already holds it). A question asking for several points keeps its evidence where it was:
    one span is one of its points, and the points come from the evidence.
    """
    read = list(hits[:depth])
    readings = reader.read(question, [hit.passage.text for hit in read])
    return [
        *(
            _with_reading(hit, reading, query_vector, embed, move_evidence=move_evidence)
            for hit, reading in zip(read, readings, strict=True)
        ),
        *hits[depth:],
    ]


def _with_reading(
    hit: Hit,
    reading: Reading,
    query_vector: np.ndarray,
    embed: Callable[[list[str]], np.ndarray],
    *,
    move_evidence: bool,
) -> Hit:
    if reading.span is None or reading.score < SPAN_MIN_SCORE:
        return dataclasses.replace(hit, reader_score=reading.score)
    start, end = reading.span
    text = hit.passage.text
    span = Span(text=text[start:end], start=start, end=end)
    evidence = hit.evidence
    if not move_evidence:
        return dataclasses.replace(hit, reader_score=reading.score, span=span)
    if evidence is None or not (evidence.start <= start and end <= evidence.end):
        evidence = _sentences_around(text, start, end, query_vector, embed)
    return dataclasses.replace(hit, reader_score=reading.score, span=span, evidence=evidence)


def _sentences_around(
    text: str, start: int, end: int, query_vector: np.ndarray, embed: Callable[[list[str]], np.ndarray]
) -> Evidence:
    """The sentence (or sentences) of ``text`` holding ``[start, end)``, scored by similarity to the question."""
    spans = split_sentences(text) or [(0, len(text))]
    covering = [(s, e) for s, e in spans if s < end and e > start] or [min(spans, key=lambda se: abs(se[0] - start))]
    first, last = covering[0][0], covering[-1][1]
    scores = embed([text[s:e] for s, e in covering]) @ query_vector
    return Evidence(text=text[first:last], start=first, end=last, score=float(np.max(scores)))


def rerank_by_reader(hits: Sequence[Hit], *, weight: float = READER_WEIGHT) -> list[Hit]:
    """The read hits ordered by ``(1 - weight) * score + weight * reader score``, both min-max scaled over them.

    Hits the reader did not read keep their order after the read ones. Ties keep the earlier hit first.
    """
    read = [hit for hit in hits if hit.reader_score is not None]
    unread = [hit for hit in hits if hit.reader_score is None]
    if not read:
        return list(hits)
    hybrid = min_max(np.array([hit.score for hit in read], dtype=np.float64))
    reader = min_max(np.array([hit.reader_score for hit in read], dtype=np.float64))
    scores = (1 - weight) * hybrid + weight * reader
    order = sorted(range(len(read)), key=lambda i: (-scores[i], i))
    ranked = [dataclasses.replace(read[i], score=float(scores[i])) for i in order] + unread
    return [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(ranked, start=1)]


def best_answer(hits: Sequence[Hit], *, threshold: float) -> Hit | None:
    """The hit whose span the reader is surest answers (score at least ``threshold``), or ``None``."""
    answered = [hit for hit in hits if hit.span is not None and hit.reader_score is not None]
    best = max(answered, key=lambda hit: (hit.reader_score, -hit.rank), default=None)
    return best if best is not None and best.reader_score is not None and best.reader_score >= threshold else None
