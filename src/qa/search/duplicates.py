"""Folding near-duplicate passages: two copies of one article show once, with both sources.

Two copies of one article (a syndicated story, a page saved twice) would
otherwise fill the results with the same paragraph.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np

from qa.records import Hit

# Passages whose word 5-gram sets overlap this much are copies of one another.
DUPLICATE_JACCARD = 0.8
# An odd 64-bit multiplier (the golden ratio's) for combining five word hashes into one.
_GRAM_BASE = np.int64(-7046029254386353131)
_WORD = re.compile(r"\w+")
# Each ASCII byte that ``\w`` matches kept, every other one made a space.
_ASCII_WORD_CHARACTERS = bytes(c if chr(c).isalnum() or chr(c) == "_" else ord(" ") for c in range(128)) + b" " * 128


def words_of(text: str) -> list[str]:
    """The text's words (runs of word characters), lower-cased."""
    lowered = text.lower()
    if lowered.isascii():  # the same words as the pattern finds, about twice as fast
        return lowered.encode("ascii").translate(_ASCII_WORD_CHARACTERS).decode("ascii").split()
    return _WORD.findall(lowered)


def _shingles(text: str) -> np.ndarray:
    """Hashes of the text's distinct word 5-grams, sorted (one hash of all its words if it has fewer than 5)."""
    words = words_of(text)
    if len(words) < 5:
        return np.array([hash(tuple(words))], dtype=np.int64)
    hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words))
    # A polynomial of the five word hashes, wrapping at 64 bits: one array expression instead of
    # hashing a tuple per 5-gram. Two different 5-grams collide with odds of about 2**-64.
    grams = hashes[:-4].copy()
    for offset in range(1, 5):
        grams *= _GRAM_BASE
        grams += hashes[offset : len(hashes) - 4 + offset]
    grams.sort()  # then drop repeats: faster than np.unique's hashing for a few hundred values
    distinct: np.ndarray = grams[np.concatenate(([True], grams[1:] != grams[:-1]))]
    return distinct


def fold_duplicates(hits: Iterable[Hit], *, limit: int | None = None) -> list[Hit]:
    """Keep the best-ranked of near-identical passages, noting the others' sources in ``also_in``.

    With a ``limit``, the scan stops once ``limit`` distinct hits are kept and at
    least twice that many were looked at, so the cost does not grow with the
    candidate list.
    """
    kept: list[tuple[Hit, np.ndarray, list[str]]] = []  # a hit, its shingles, its sources
    for scanned, hit in enumerate(hits):
        if limit is not None and len(kept) >= limit and scanned >= 2 * limit:
            break
        signature = _shingles(hit.passage.text)
        copy_of = _first_copy(signature, [shingles for _, shingles, _ in kept])
        if copy_of is not None:
            if hit.passage.source not in kept[copy_of][2]:
                kept[copy_of][2].append(hit.passage.source)
        elif limit is None or len(kept) < limit:
            kept.append((hit, signature, [hit.passage.source]))
    return [_with_sources(hit, sources[1:], rank) for rank, (hit, _, sources) in enumerate(kept, start=1)]


def _first_copy(signature: np.ndarray, kept: list[np.ndarray]) -> int | None:
    """The first of ``kept`` whose shingles' Jaccard similarity with ``signature`` reaches ``DUPLICATE_JACCARD``.

    Jaccard similarity J of sets A and B needs min(|A|, |B|) >= J * max(|A|, |B|), so
    most pairs are ruled out by their sizes before any shingle is compared.
    """
    for position, shingles in enumerate(kept):
        smaller, larger = sorted((len(signature), len(shingles)))
        if smaller < DUPLICATE_JACCARD * larger:
            continue
        found = np.minimum(np.searchsorted(shingles, signature), len(shingles) - 1)
        common = int(np.count_nonzero(shingles[found] == signature))
        if common and common / (len(signature) + len(shingles) - common) >= DUPLICATE_JACCARD:
            return position
    return None


def _with_sources(hit: Hit, others: list[str], rank: int) -> Hit:
    return dataclasses.replace(hit, rank=rank, also_in=tuple(others))
