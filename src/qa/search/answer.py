"""The extractive answer: evidence sentences of the best passages, each cited as ``[rank]``.

No language model writes anything: the answer is made of sentences from the articles.
A question asking for several things (why, how, what are ...) gets the distinct
points found across the passages, one a line, where a paragraph that
enumerates them ("Firstly ... And there are others ... Lastly ...") gives each
of its items; the others give their evidence, leaving out sentences that say
the same as one already chosen.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.ingest.split import split_sentences
from qa.records import Hit
from qa.search.evidence import evidence_score

# Answer sentences: evidence within this margin of the best evidence.
ANSWER_MARGIN = 0.25
ANSWER_SENTENCES = 3
# Points of a multi-point answer, and how close in meaning (cosine) two may be before the second is a repeat.
MAX_POINTS = 5
REPEAT_SIMILARITY = 0.55
# Where a list of points begins: a line per point.
POINT_PREFIX = "- "

_MULTI_POINT = re.compile(
    r"^(?:and |so |but )?(?:why\b|how\b(?! (?:many|much|long|old|far|often|big|large|soon|tall)\b)"
    r"|what (?:are|were)\b|which \w+ (?:are|were|have)\b"
    r"|what (?:\w+ )?(?:reasons|ways|kinds|sorts|types|categories|steps|methods|means|motives)\b)",
    re.IGNORECASE,
)
_ORDINAL = r"first(?:ly)?|second(?:ly)?|third(?:ly)?|fourth(?:ly)?|fifth(?:ly)?|last(?:ly)?|finally"
_CONTINUATION = r"and there are others|there are others|others|another|also|in addition|moreover|besides|next"
_QUOTES = "\"“”‘’'"
_MARKER = re.compile(rf"^[\"“‘'(]?\s*(?:(?P<ordinal>{_ORDINAL})|{_CONTINUATION})\b", re.IGNORECASE)


def asks_for_several_points(question: str) -> bool:
    """Whether a question asks for reasons, ways or a list (why, how, what are ...) rather than one fact."""
    return bool(_MULTI_POINT.match(question.strip()))


@dataclass(frozen=True)
class Point:
    """One sentence of an answer: its text, the rank of the hit it comes from, and where it stands there."""

    text: str
    rank: int
    start: int


def compose_answer(
    hits: Sequence[Hit],
    *,
    question: str = "",
    embed: Callable[[list[str]], np.ndarray] | None = None,
    lead: Hit | None = None,
) -> str:
    """The answer to ``question`` from ``hits``: a list of points, or up to three evidence sentences.

    ``lead``, the hit holding the reader's short answer, gives the first sentence or point
    whatever its similarity to the question: the reader read it against the question.

    A question asking for several points (``asks_for_several_points``) gets
    ``compose_points`` when ``embed`` (sentences to unit vectors with the
    index's model) is given; otherwise, and when only one
    point is found, the evidence of up to three passages in rank order, each
    cited ``[rank]``.
    """
    if question and embed is not None and asks_for_several_points(question):
        points = compose_points(hits, embed=embed)
        if lead is not None and lead.evidence is not None:
            first = Point(lead.evidence.text, lead.rank, lead.evidence.start)
            points = [first, *(point for point in points if not _overlaps(point, first))][:MAX_POINTS]
        if len(points) > 1:
            return "\n".join(f"{POINT_PREFIX}{point.text} [{point.rank}]" for point in points)
    return compose_sentences(hits, lead=lead)


def _overlaps(point: Point, other: Point) -> bool:
    return point.rank == other.rank and (point.text in other.text or other.text in point.text)


def compose_sentences(hits: Sequence[Hit], *, lead: Hit | None = None) -> str:
    """Evidence sentences of up to three passages, in rank order, each cited as ``[rank]``.

    Rank order follows both retrievers' agreement, which is steadier than one
    sentence's similarity; a passage whose evidence falls more than
    ``ANSWER_MARGIN`` below the best evidence is left out of the answer.
    """
    with_evidence = [hit for hit in hits if hit.evidence]
    if not with_evidence:
        return ""
    floor = max(evidence_score(hit) for hit in with_evidence) - ANSWER_MARGIN
    parts: list[str] = []
    seen: list[set[str]] = []
    if lead is not None and lead.evidence is not None:
        parts.append(f"{lead.evidence.text} [{lead.rank}]")
        seen.append(_words(lead.evidence.text))
        with_evidence = [hit for hit in with_evidence if hit.rank != lead.rank]
    for hit in with_evidence:
        assert hit.evidence is not None
        words = _words(hit.evidence.text)
        if hit.evidence.score < floor or _repeats(words, seen):
            continue  # too weak, or the same sentence from a copy of the article
        seen.append(words)
        parts.append(f"{hit.evidence.text} [{hit.rank}]")
        if len(parts) >= ANSWER_SENTENCES:
            break
    return " ".join(parts)


def compose_points(
    hits: Sequence[Hit],
    *,
    embed: Callable[[list[str]], np.ndarray],
    repeat_similarity: float = REPEAT_SIMILARITY,
    max_points: int = MAX_POINTS,
) -> list[Point]:
    """The distinct points of the hits whose evidence is within ``ANSWER_MARGIN`` of the best, in rank order.

    A passage that enumerates ("Firstly ..., And there are others ..., Lastly
    ...") gives each of its items, and they come first: the paragraph says they
    are distinct. Every other passage offers its evidence, best first; one is
    left out when it is close in meaning (cosine at least
    ``repeat_similarity``) to a point already taken or to the sentences that
    lead into an enumeration ("The reasons ... could be classified into three
    groups"), which restate the question rather than answer it. At most
    ``max_points``.
    """
    floor = _floor(hits)
    with_evidence = [hit for hit in hits if hit.evidence and hit.evidence.score >= floor]
    items: list[Point] = []
    lead_ins: list[str] = []
    others: list[Point] = []
    for hit in sorted(with_evidence, key=lambda h: (-evidence_score(h), h.rank)):
        assert hit.evidence is not None
        enumeration = enumerated_items(hit.passage.text)
        if enumeration and not items:  # one enumeration leads; a second one would repeat its kinds
            items = [Point(text, hit.rank, start) for start, text in enumeration]
            first = enumeration[0][0]
            lead_ins = [hit.passage.text[s:e] for s, e in split_sentences(hit.passage.text) if e <= first]
        else:
            others.append(Point(hit.evidence.text, hit.rank, hit.evidence.start))
    texts = list(dict.fromkeys([*(p.text for p in items), *lead_ins, *(p.text for p in others)]))
    vectors = dict(zip(texts, embed(texts), strict=True)) if texts else {}
    said = [vectors[text] for text in [*(p.text for p in items), *lead_ins]]
    said_words = [_words(point.text) for point in items]
    chosen = list(items[:max_points])
    for point in others:
        if len(chosen) >= max_points:
            break
        words = _words(point.text)
        if any(float(vectors[point.text] @ other) >= repeat_similarity for other in said) or _repeats(
            words, said_words
        ):
            continue
        chosen.append(point)
        said.append(vectors[point.text])
        said_words.append(words)
    return sorted(chosen, key=lambda point: (point.rank, point.start))


def _floor(hits: Sequence[Hit]) -> float:
    """The weakest evidence an answer quotes: ``ANSWER_MARGIN`` below the best."""
    return max((evidence_score(hit) for hit in hits), default=-1.0) - ANSWER_MARGIN


def enumerated_items(text: str) -> list[tuple[int, str]]:
    """The items of a passage that enumerates ("Firstly ... Lastly ..."), as ``(start, text)``; else none.

    A passage enumerates when at least two of its sentences open with a marker
    ("Firstly", "And there are others", "Lastly", "Finally", ...), one of them
    an ordinal. Quotation marks around an item are left out.
    """
    marked = []
    ordinal = False
    for start, end in split_sentences(text):
        match = _MARKER.match(text[start:end])
        if match:
            sentence = text[start:end]
            item = sentence.lstrip(_QUOTES)
            inner = item.rstrip(_QUOTES)
            item = inner if not any(quote in inner for quote in _QUOTES) else item  # keep a quote it opened
            marked.append((start + len(sentence) - len(sentence.lstrip(_QUOTES)), item))
            ordinal = ordinal or bool(match.group("ordinal"))
    return marked if len(marked) >= 2 and ordinal else []


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _repeats(words: set[str], seen: Sequence[set[str]]) -> bool:
    """Whether most of ``words`` were already said (the same sentence from a copy of the article)."""
    return any(len(words & other) >= 0.8 * len(words) for other in seen)
