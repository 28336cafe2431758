"""Folding near-duplicate passages: two copies of one article show once, with both sources.

Two copies of one article (a syndicated story, a page saved twice) would
otherwise fill the results with the same paragraph.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from qa.records import Hit

# Passages whose word 5-gram sets overlap this much are copies of one another.
DUPLICATE_JACCARD = 0.8
_WORD = re.compile(r"\w+")


def _shingles(text: str) -> frozenset[int]:
    # Hashes of the word 5-grams: set operations on ints are several times faster than on tuples,
    # and zip makes the 5-grams without a slice each.
    words = _WORD.findall(text.lower())
    if len(words) < 5:
        return frozenset([hash(tuple(words))])
    return frozenset(map(hash, zip(words, words[1:], words[2:], words[3:], words[4:], strict=False)))


def fold_duplicates(hits: Iterable[Hit], *, limit: int | None = None) -> list[Hit]:
    """Keep the best-ranked of near-identical passages, noting the others' sources in ``also_in``.

    With a ``limit``, the scan stops once ``limit`` distinct hits are kept and at
    least twice that many were looked at, so the cost does not grow with the
    candidate list.
    """
    kept: list[tuple[Hit, int, list[str]]] = []  # a hit, its number of shingles, its sources
    holders: dict[int, list[int]] = {}  # a shingle: the kept hits holding it, by position in ``kept``
    for scanned, hit in enumerate(hits):
        if limit is not None and len(kept) >= limit and scanned >= 2 * limit:
            break
        signature = _shingles(hit.passage.text)
        copy_of = _first_copy(signature, holders, [size for _, size, _ in kept])
        if copy_of is not None:
            if hit.passage.source not in kept[copy_of][2]:
                kept[copy_of][2].append(hit.passage.source)
        elif limit is None or len(kept) < limit:
            for shingle in signature:
                holders.setdefault(shingle, []).append(len(kept))
            kept.append((hit, len(signature), [hit.passage.source]))
    return [_with_sources(hit, sources[1:], rank) for rank, (hit, _, sources) in enumerate(kept, start=1)]


def _first_copy(signature: frozenset[int], holders: dict[int, list[int]], sizes: list[int]) -> int | None:
    """The first kept hit whose shingles' Jaccard similarity with ``signature`` reaches ``DUPLICATE_JACCARD``.

    Shared shingles are counted through ``holders``: one look-up per shingle, rather
    than a set intersection with every kept hit.
    """
    shared = [0] * len(sizes)
    for shingle in signature:
        for position in holders.get(shingle, ()):
            shared[position] += 1
    for position, (common, size) in enumerate(zip(shared, sizes, strict=True)):
        if common and common / (len(signature) + size - common) >= DUPLICATE_JACCARD:
            return position
    return None


def _with_sources(hit: Hit, others: list[str], rank: int) -> Hit:
    return dataclasses.replace(hit, rank=rank, also_in=tuple(others))
