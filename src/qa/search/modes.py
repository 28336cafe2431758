"""The three ways to search, checked in one place.

``hybrid`` fuses dense and BM25 candidates and re-ranks the best by their best
sentence; ``dense`` and ``bm25`` are the plain retrievers, for comparison.
"""

from __future__ import annotations

from typing import Literal

from qa.errors import QAError

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")


def parse_mode(name: str) -> Mode:
    """``name`` as a mode; anything else is a clear error."""
    for mode in MODES:
        if name == mode:
            return mode
    raise QAError(f"unknown search mode {name!r}: use one of {', '.join(MODES)}")


def parse_modes(text: str) -> list[Mode]:
    """``bm25,dense`` as a list of modes, without repeats; an unknown or missing mode is a clear error."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODES]
    if unknown or not names:
        raise QAError(f"unknown mode(s) {', '.join(unknown) or '(none)'}: use {', '.join(MODES)}")
    return [parse_mode(name) for name in dict.fromkeys(names)]
