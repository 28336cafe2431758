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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from qa.ingest.words import count_words, ends_sentence
from qa.records import Document, Passage

TokenCounter = Callable[[str], int]
Span = tuple[int, int]
_Atom = tuple[int, int, int]  # start, end, tokens

_STOPS = ".!?…"
_CLOSERS = "”\"’')]"
_OPENERS = "“\"‘'(["
_STOPS_AND_CLOSERS = frozenset(_STOPS + _CLOSERS)

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
# Word-piece tokenizers cut long words; an extra token per 6 characters over-counts.
_CHARS_PER_EXTRA_TOKEN = 6
# A word ending a sentence: body, stop run (".", "?!", "..."), then closing quotes.
_TERMINAL_WORD = re.compile(rf"(?P<body>.*?)(?P<stop>[{_STOPS}]+)[{re.escape(_CLOSERS)}]*")
_DOTTED_ACRONYM = re.compile(r"(?:[^\W\d_]\.){2,}")  # "U.S.", "e.g.", "D.C."
_ABBREVIATIONS = frozenset({
    "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "St.", "Gen.", "Lt.", "Col.", "Sgt.", "Rev.",
    "Jr.", "Sr.", "Inc.", "Ltd.", "Co.", "Corp.", "vs.", "etc.", "e.g.", "i.e.", "No.",
    "Jan.", "Feb.", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.", "U.S.", "U.K.", "U.N.",
})  # fmt: skip

# A paragraph longer than this is split one window at a time (cut at a sentence
# end where possible), so that memory and token counting stay proportional to
# its length even for a 50 MB file that is one long line. No model's window
# comes near a million characters, so no passage is shortened by it.
WINDOW_CHARS = 1_000_000

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
    spans: list[Span] = []
    previous: re.Match[str] | None = None
    sentence_start = 0
    for word in _WORD.finditer(text):  # streamed: a huge text's words are never all held at once
        if previous is None:
            sentence_start = word.start()
        elif _breaks_between(text, previous, word):
            spans.append((sentence_start, previous.end()))
            sentence_start = word.start()
        previous = word
    if previous is not None:
        spans.append((sentence_start, previous.end()))
    return spans


def _breaks_between(text: str, previous: re.Match[str], word: re.Match[str]) -> bool:
    blank_line = text.count("\n", previous.end(), word.start()) >= 2
    return blank_line or _ends_sentence(previous.group(), word.group())


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
    if word[-1] not in _STOPS_AND_CLOSERS:
        return False  # most words: no need for the pattern
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
        if len(paragraph) > WINDOW_CHARS or count_tokens(paragraph) > max_tokens:
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
    if count_words(paragraph) >= min_words:  # in any script: a Chinese paragraph is not one word
        return None
    return "backward" if ends_sentence(paragraph) else "forward"


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
    """Split ``text[start:end]`` (already known to be over ``max_tokens``) into balanced pieces, a window at a time."""
    pieces: list[Span] = []
    for window_start, window_end in _windows(text, start, end):
        atoms = [
            atom
            for sentence_start, sentence_end in _sentence_spans(text, window_start, window_end)
            for atom in _fitting_atoms(text, sentence_start, sentence_end, max_tokens, count_tokens, depth=1)
        ]
        pieces.extend(_pack_balanced(text, atoms, max_tokens, count_tokens))
    return pieces


def _windows(text: str, start: int, end: int) -> Iterator[Span]:
    """Cut ``text[start:end]`` into spans of at most ``WINDOW_CHARS``, at sentence ends where possible."""
    while end - start > WINDOW_CHARS:
        cut = _window_cut(text, start, start + WINDOW_CHARS)
        yield start, cut
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        yield start, end


# How far back from a window's limit to look for the sentence end to cut at.
_WINDOW_TAIL_CHARS = 10_000


def _window_cut(text: str, start: int, limit: int) -> int:
    """Where to end a window that may not reach past ``limit``: a sentence end, else a space, else ``limit``."""
    sentences = _sentence_spans(text, max(start, limit - _WINDOW_TAIL_CHARS), limit)
    if len(sentences) >= 2:
        return sentences[-2][1]  # the last sentence may run on past the limit
    space = max(text.rfind(blank, start + 1, limit) for blank in " \n\t")
    return space if space > start else limit


def _sentence_spans(text: str, start: int, end: int) -> list[Span]:
    return [(start + s, start + e) for s, e in split_sentences(text[start:end])]


def _word_spans(text: str, start: int, end: int) -> list[Span]:
    return [match.span() for match in _WORD.finditer(text, start, end)]


def _halves(_text: str, start: int, end: int) -> list[Span]:
    # A word over the limit is halved until each part fits: a few parts, not one per character.
    middle = (start + end) // 2
    return [(start, middle), (middle, end)]


# Ever finer ways to cut a span that is too long: sentences, words, then halves of a word.
_SUBDIVIDERS = (_sentence_spans, _word_spans, _halves)


def _fitting_atoms(
    text: str,
    start: int,
    end: int,
    max_tokens: int,
    count_tokens: TokenCounter,
    *,
    depth: int = 0,
) -> list[_Atom]:
    """Cut ``text[start:end]`` into the coarsest units that each fit in ``max_tokens``, with their token counts.

    A single character that is still over the limit is returned as it is:
    nothing smaller exists.
    """
    tokens = count_tokens(text[start:end])
    if end - start <= 1 or tokens <= max_tokens:
        return [(start, end, tokens)]
    subdivide = _SUBDIVIDERS[min(depth, len(_SUBDIVIDERS) - 1)]
    return [
        atom
        for part_start, part_end in subdivide(text, start, end)
        for atom in _fitting_atoms(text, part_start, part_end, max_tokens, count_tokens, depth=depth + 1)
    ]


def _pack_balanced(text: str, atoms: list[_Atom], max_tokens: int, count_tokens: TokenCounter) -> list[Span]:
    """Pack consecutive atoms into pieces of about equal size, none over ``max_tokens``.

    Each piece aims at the remaining tokens divided by the fewest pieces that
    can hold them, so the last piece is not left with a scrap. Sizes are the
    sums of the atoms' counts, which is exact for tokenizers that split at
    whitespace (where sentences and words meet) and keeps packing linear in
    the text's length; each piece is then counted whole and shrunk if a sum
    was low.
    """
    counts = [tokens for _, _, tokens in atoms]
    remaining = list(itertools.accumulate(reversed(counts)))[::-1]  # tokens from atom i to the end
    pieces: list[Span] = []
    first = 0
    while first < len(atoms):
        last = _piece_end(counts, first, _piece_target(remaining[first], max_tokens), max_tokens)
        # Halves of one long word need not add up: "xxxx" may count less than "xx" twice.
        while last > first and count_tokens(text[atoms[first][0] : atoms[last][1]]) > max_tokens:
            last -= 1
        pieces.append((atoms[first][0], atoms[last][1]))
        first = last + 1
    return pieces


def _piece_end(counts: list[int], first: int, target: float, max_tokens: int) -> int:
    """The last atom of the piece starting at ``first``: an atom is taken if that lands nearer the target."""
    size, last = counts[first], first
    while last + 1 < len(counts):
        grown = size + counts[last + 1]
        if grown > max_tokens or grown - target > target - size:
            break
        size, last = grown, last + 1
    return last


def _piece_target(remaining_tokens: int, max_tokens: int) -> float:
    pieces_needed = max(1, math.ceil(remaining_tokens / max_tokens))
    return remaining_tokens / pieces_needed


def _to_passage(document: Document, document_text: str, ordinal: int, segment: _Segment) -> Passage:
    # document_text is passed in because Document.text re-joins paragraphs per call.
    text = document_text[segment.start : segment.end]
    paragraph = document.paragraphs[segment.paragraph - 1]
    if text == paragraph:  # a whole paragraph: one copy of its text, not two (a build holds both)
        text = paragraph
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
