"""Split documents into sentences and into retrievable passages.

Everything here works on character offsets into ``Document.text`` rather than
on copies of text, so that a passage or an evidence sentence can always be
traced back to the exact place it came from.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from qa.records import Document, Passage

TokenCounter = Callable[[str], int]
Span = tuple[int, int]

_STOPS = ".!?…"
_CLOSERS = "”\"’')]"
_OPENERS = "“\"‘'(["

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
# Word-piece tokenizers cut long words; an extra token per 6 characters over-counts.
_CHARS_PER_EXTRA_TOKEN = 6
# A word ending a sentence: body, stop run (".", "?!", "..."), then closing quotes.
_TERMINAL_WORD = re.compile(rf"(?P<body>.*?)(?P<stop>[{_STOPS}]+)[{re.escape(_CLOSERS)}]*")
_ENDS_SENTENCE = re.compile(rf"[{_STOPS}][{re.escape(_CLOSERS)}]*$")
_DOTTED_ACRONYM = re.compile(r"(?:[^\W\d_]\.){2,}")  # "U.S.", "e.g.", "D.C."
_ABBREVIATIONS = frozenset({
    "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "St.", "Gen.", "Lt.", "Col.", "Sgt.", "Rev.",
    "Jr.", "Sr.", "Inc.", "Ltd.", "Co.", "Corp.", "vs.", "etc.", "e.g.", "i.e.", "No.",
    "Jan.", "Feb.", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.", "U.S.", "U.K.", "U.N.",
})  # fmt: skip

_Join = Literal["forward", "backward"] | None


@dataclass(frozen=True)
class _Segment:
    """A span of ``Document.text`` on its way to becoming a passage.

    ``joins`` says where a too-short paragraph wants to go: ``"forward"`` into
    what follows (a heading), ``"backward"`` into what precedes, or ``None``.
    """

    paragraph: int
    start: int
    end: int
    joins: _Join = None


def split_sentences(text: str) -> list[Span]:
    """Return the ``(start, end)`` character spans of the sentences in ``text``.

    Spans are in order, never overlap, exclude the whitespace between
    sentences and together cover every non-whitespace character. A blank line
    always ends a sentence.
    """
    words = list(_WORD.finditer(text))
    if not words:
        return []
    spans: list[Span] = []
    sentence_start = words[0].start()
    for previous, word in itertools.pairwise(words):
        gap = text[previous.end() : word.start()]
        if gap.count("\n") >= 2 or _ends_sentence(previous.group(), word.group()):
            spans.append((sentence_start, previous.end()))
            sentence_start = word.start()
    spans.append((sentence_start, words[-1].end()))
    return spans


def approximate_token_count(text: str) -> int:
    """Over-estimate how many word-piece tokens ``text`` holds, without a tokenizer.

    Callers that have the embedding model's tokenizer should count with it
    instead; this errs on the high side so passages stay within model limits.
    """
    return sum(len(token) // _CHARS_PER_EXTRA_TOKEN + 1 for token in _TOKEN.findall(text))


def passage_id(doc_id: str, ordinal: int, text: str) -> str:
    """Return a stable passage id derived from its document, position and content."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{doc_id}#p{ordinal}-{digest}"


def split_passages(
    document: Document,
    *,
    max_tokens: int,
    count_tokens: TokenCounter = approximate_token_count,
    min_words: int = 12,
) -> list[Passage]:
    """Cut a document into passages of at most ``max_tokens`` tokens.

    Paragraphs are the natural unit. Paragraphs under ``min_words`` words are
    merged with a neighbour (headings forward, others backward) when the result
    still fits; paragraphs over ``max_tokens`` are split between sentences into
    pieces of similar size.

    Args:
        document: The document to split.
        max_tokens: Upper bound on ``count_tokens(passage.text)``.
        count_tokens: Token counter; pass the model tokenizer's when available.
        min_words: Paragraphs with fewer words are merged with a neighbour.

    Returns:
        Passages in reading order, with ``text == document.text[start:end]``.

    Raises:
        ValueError: If ``max_tokens`` is less than 1.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    text = document.text

    def fits(first: _Segment, last: _Segment) -> bool:
        return count_tokens(text[first.start : last.end]) <= max_tokens

    segments = _paragraph_segments(document, max_tokens, count_tokens, min_words)
    merged = _merge_short_segments(segments, fits)
    return [_to_passage(document, text, ordinal, segment) for ordinal, segment in enumerate(merged, 1)]


def _ends_sentence(word: str, next_word: str) -> bool:
    """Tell whether a sentence ends after ``word``, given the word that follows it."""
    terminal = _TERMINAL_WORD.fullmatch(word)
    if terminal is None or not _starts_sentence(next_word):
        return False
    if terminal["stop"] != ".":
        return True
    # Only a single period is ambiguous: it may close an abbreviation or an initial.
    return not _is_abbreviation(terminal["body"].lstrip(_OPENERS))


def _is_abbreviation(body: str) -> bool:
    """Tell whether ``body`` followed by a period is an abbreviation or an initial."""
    dotted = body + "."
    if dotted in _ABBREVIATIONS or _DOTTED_ACRONYM.fullmatch(dotted):
        return True
    # Not "I": the pronoun ending a sentence is commoner than a middle initial I.
    return len(body) == 1 and body.isupper() and body != "I"


def _starts_sentence(word: str) -> bool:
    first = word[0]
    return first.isupper() or first.isdigit() or first in _OPENERS


def _paragraph_segments(
    document: Document, max_tokens: int, count_tokens: TokenCounter, min_words: int
) -> list[_Segment]:
    """Turn each paragraph into one segment, or several if it is over ``max_tokens``."""
    text = document.text
    segments: list[_Segment] = []
    for number, paragraph_span in enumerate(document.paragraph_spans(), 1):
        start, end = _strip_span(text, *paragraph_span)
        if start == end:
            continue
        paragraph = text[start:end]
        if count_tokens(paragraph) > max_tokens:
            pieces = _split_long_span(text, start, end, max_tokens, count_tokens)
            segments.extend(_Segment(number, s, e) for s, e in pieces)
        else:
            segments.append(_Segment(number, start, end, _join_direction(paragraph, min_words)))
    return segments


def _strip_span(text: str, start: int, end: int) -> Span:
    """Shrink ``(start, end)`` so the span neither starts nor ends with whitespace."""
    chunk = text[start:end]
    stripped = chunk.lstrip()
    start += len(chunk) - len(stripped)
    return start, start + len(stripped.rstrip())


def _join_direction(paragraph: str, min_words: int) -> _Join:
    if len(paragraph.split()) >= min_words:
        return None
    return "backward" if _ENDS_SENTENCE.search(paragraph) else "forward"


def _merge_short_segments(segments: list[_Segment], fits: Callable[[_Segment, _Segment], bool]) -> list[_Segment]:
    """Join too-short segments to a neighbour wherever the result ``fits``."""
    merged: list[_Segment] = []
    waiting: _Segment | None = None  # a short segment to be joined to the next one
    for next_segment in segments:
        segment = next_segment
        if waiting is not None:
            if fits(waiting, segment):
                segment = _join(waiting, segment)
            else:
                merged.append(waiting)
            waiting = None
        if segment.joins == "forward" or (segment.joins == "backward" and not merged):
            waiting = segment
        elif segment.joins == "backward" and fits(merged[-1], segment):
            merged[-1] = _join(merged[-1], segment)
        else:
            merged.append(segment)
    if waiting is not None:
        # A trailing heading has nothing to lead, so it joins what came before.
        if merged and fits(merged[-1], waiting):
            merged[-1] = _join(merged[-1], waiting)
        else:
            merged.append(waiting)
    return merged


def _join(first: _Segment, last: _Segment) -> _Segment:
    """Span from ``first`` to ``last``; stacked headings keep waiting for their body."""
    joins: _Join = "forward" if last.joins == "forward" else None
    return _Segment(first.paragraph, first.start, last.end, joins)


def _split_long_span(text: str, start: int, end: int, max_tokens: int, count_tokens: TokenCounter) -> list[Span]:
    """Split ``text[start:end]`` into balanced pieces of at most ``max_tokens``."""
    atoms = _fitting_atoms(text, start, end, max_tokens, count_tokens)
    return _pack_balanced(text, atoms, max_tokens, count_tokens)


def _sentence_spans(text: str, start: int, end: int) -> list[Span]:
    return [(start + s, start + e) for s, e in split_sentences(text[start:end])]


def _word_spans(text: str, start: int, end: int) -> list[Span]:
    return [match.span() for match in _WORD.finditer(text, start, end)]


def _character_spans(_text: str, start: int, end: int) -> list[Span]:
    return [(index, index + 1) for index in range(start, end)]


# Ever finer ways to cut a span that is too long: sentences, words, characters.
_SUBDIVIDERS = (_sentence_spans, _word_spans, _character_spans)


def _fitting_atoms(
    text: str,
    start: int,
    end: int,
    max_tokens: int,
    count_tokens: TokenCounter,
    *,
    depth: int = 0,
) -> list[Span]:
    """Cut ``text[start:end]`` into the coarsest units that each fit in ``max_tokens``.

    A single character that is still over the limit is returned as it is:
    nothing smaller exists.
    """
    if end - start <= 1 or count_tokens(text[start:end]) <= max_tokens:
        return [(start, end)]
    subdivide = _SUBDIVIDERS[depth]
    return [
        atom
        for part_start, part_end in subdivide(text, start, end)
        for atom in _fitting_atoms(text, part_start, part_end, max_tokens, count_tokens, depth=depth + 1)
    ]


def _pack_balanced(text: str, atoms: list[Span], max_tokens: int, count_tokens: TokenCounter) -> list[Span]:
    """Pack consecutive atoms into pieces of about equal size, none over ``max_tokens``.

    Each piece aims at the remaining tokens divided by the fewest pieces that
    can hold them, so the last piece is not left with a scrap.
    """
    span_end = atoms[-1][1]
    pieces: list[Span] = []
    start, end = atoms[0]
    size = count_tokens(text[start:end])
    target = _piece_target(count_tokens(text[start:span_end]), max_tokens)
    for atom_start, atom_end in atoms[1:]:
        grown = count_tokens(text[start:atom_end])
        # Take the atom if that lands nearer the target than stopping here does.
        if grown <= max_tokens and grown - target <= target - size:
            end, size = atom_end, grown
            continue
        pieces.append((start, end))
        start, end = atom_start, atom_end
        size = count_tokens(text[start:end])
        target = _piece_target(count_tokens(text[start:span_end]), max_tokens)
    pieces.append((start, end))
    return pieces


def _piece_target(remaining_tokens: int, max_tokens: int) -> float:
    pieces_needed = max(1, math.ceil(remaining_tokens / max_tokens))
    return remaining_tokens / pieces_needed


def _to_passage(document: Document, document_text: str, ordinal: int, segment: _Segment) -> Passage:
    # document_text is passed in because Document.text re-joins paragraphs per call.
    text = document_text[segment.start : segment.end]
    return Passage(
        passage_id=passage_id(document.doc_id, ordinal, text),
        doc_id=document.doc_id,
        source=document.source,
        paragraph=segment.paragraph,
        start=segment.start,
        end=segment.end,
        text=text,
        title=document.title,
        outlet=document.outlet,
        author=document.author,
        date=document.date,
        url=document.url,
    )
