"""What ``qa`` prints for people: results, hits, answers and passages, wrapped for the terminal."""

from __future__ import annotations

import re
import sys
import textwrap

from qa.records import Hit, Passage, SearchResult
from qa.safe_text import terminal_text

BOLD, PLAIN = "\033[1m", "\033[0m"


def say(text: str) -> None:
    """Print ``text`` on stdout, cleaned for the terminal (``terminal_text``)."""
    print(terminal_text(text))


def tell(text: str) -> None:
    """Print ``text`` on stderr at once, cleaned for the terminal: warnings and errors."""
    print(terminal_text(text), file=sys.stderr, flush=True)


def emphasized(text: str, span: str) -> str:
    """``text`` with every occurrence of ``span`` in bold, also where wrapping broke it across lines."""
    words = span.split()
    if not words:
        return text
    pattern = re.compile(r"\s+".join(re.escape(word) for word in words))
    return pattern.sub(lambda match: f"{BOLD}{match.group(0)}{PLAIN}", text)


def format_attribution(passage: Passage) -> str:
    """``Title — Outlet, date, paragraph N (source)``, leaving out what is unknown."""
    details = [part for part in (passage.outlet, passage.date) if part]
    details.append(f"paragraph {passage.paragraph}")
    where = f" ({passage.source})" if passage.title else ""
    return f"{passage.title or passage.source} — {', '.join(details)}{where}"


def _indented(text: str, width: int) -> str:
    paragraphs = text.split("\n\n")
    return "\n\n".join(textwrap.fill(p, width=width, initial_indent="   ", subsequent_indent="   ") for p in paragraphs)


def format_hit(hit: Hit, width: int = 88) -> str:
    """One hit for the terminal: rank, score, attribution, the passage and its evidence."""
    lines = [f"{hit.rank}. [{hit.score:.3f}] {format_attribution(hit.passage)}"]
    if hit.also_in:
        lines.append(f"   (also in {', '.join(hit.also_in)})")
    lines.append(_indented(hit.passage.text, width))
    if hit.evidence:
        lines.append(f"   evidence: {hit.evidence.text}")
    return "\n".join(lines)


def format_result(result: SearchResult, width: int = 88) -> str:
    """A whole result for the terminal: the answer, then its sources (or the reason there are none)."""
    if not result.hits:
        return result.answer or "No passages found."
    answer = format_answer(result.answer, width) if result.answer else ""
    if result.short_answer and result.answerable:
        answer = f"Answer: {result.short_answer} [{result.short_answer_rank}]\n\n{answer}"
    if result.suggestion:
        answer = f"Did you mean: {result.suggestion}?\n\n{answer}"
    hits = "\n\n".join(format_hit(hit, width) for hit in result.hits)
    return f"{answer}\n\nSources:\n\n{hits}" if answer else hits


def format_answer(answer: str, width: int = 88) -> str:
    """The answer wrapped to ``width``: a list answer keeps one point a line, continuations indented."""
    lines = answer.split("\n")
    if not any(line.startswith("- ") for line in lines):
        return textwrap.fill(answer, width=width)
    return "\n".join(
        textwrap.fill(line, width=width, subsequent_indent="  " if line.startswith("- ") else "") for line in lines
    )


def format_passage(passage: Passage, width: int = 88) -> str:
    """One passage for ``qa passages``: id, attribution and text."""
    return f"{passage.passage_id}  {format_attribution(passage)}\n{_indented(passage.text, width)}\n"
