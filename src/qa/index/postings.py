"""Postings lists as NumPy arrays: assembled from chunks, sorted, merged with new ones.

A posting is a (token, row, frequency) triple; an index keeps them grouped by token (offsets
into one rows array and one frequencies array), each token's rows ascending. These are the
array operations ``qa.index.lexical`` builds and updates its BM25 index with.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np


class Postings(NamedTuple):
    """(token, row, frequency) triples, sorted by token then row; tokens are ids of some vocabulary."""

    tokens: np.ndarray
    rows: np.ndarray
    frequencies: np.ndarray


def assemble(
    chunks: list[Postings], vocabulary: dict[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The sorted vocabulary, offsets, rows and frequencies of postings made chunk by chunk.

    Each chunk is sorted by token then row and holds later rows than the one before,
    so each token's postings of a chunk are copied after those of the chunks before:
    a counting sort, in linear time.
    """
    tokens = sorted(vocabulary)
    final_id = np.zeros(len(vocabulary), dtype=np.int64)
    final_id[np.fromiter((vocabulary[token] for token in tokens), dtype=np.int64, count=len(tokens))] = np.arange(
        len(tokens)
    )
    counts = [np.bincount(chunk.tokens, minlength=len(tokens)) for chunk in chunks]
    totals = np.zeros(len(tokens), dtype=np.int64)
    totals[final_id] = sum(counts, np.zeros(len(tokens), dtype=np.int64))
    offsets = offsets_of(totals)
    rows = np.zeros(offsets[-1], dtype=np.int32)
    largest = max((int(chunk.frequencies.max()) for chunk in chunks if len(chunk.frequencies)), default=0)
    frequencies = np.zeros(offsets[-1], dtype=frequency_dtype(np.array([largest])))
    cursor = offsets[:-1][final_id]  # by provisional id: where its next postings go
    for chunk, count in zip(chunks, counts, strict=True):
        first_in_chunk = np.cumsum(count) - count
        destination = cursor[chunk.tokens] + np.arange(len(chunk.tokens)) - first_in_chunk[chunk.tokens]
        rows[destination] = chunk.rows
        frequencies[destination] = chunk.frequencies
        cursor += count
    return tokens, offsets, rows, frequencies


def compact(postings: Postings) -> Postings:
    """The same postings in the narrowest types that hold them (int32 tokens and rows): a build holds every chunk's."""
    return Postings(
        postings.tokens.astype(np.int32),
        postings.rows.astype(np.int32),
        postings.frequencies.astype(frequency_dtype(postings.frequencies)),
    )


def sort_postings(postings: Postings, rows: int) -> Postings:
    """``postings`` sorted by token, then row."""
    order = np.argsort(postings.tokens.astype(np.int64) * max(rows, 1) + postings.rows)
    return Postings(postings.tokens[order], postings.rows[order], postings.frequencies[order])


def insert_postings(
    offsets: np.ndarray, rows: np.ndarray, frequencies: np.ndarray, extra: Postings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets, rows and frequencies with ``extra`` (sorted, on rows not yet there) merged in, each at its place."""
    positions = np.zeros(len(extra.rows), dtype=np.int64)
    starts = np.flatnonzero(np.diff(extra.tokens, prepend=-1)).tolist()  # where each token's run begins
    for start, end in itertools.pairwise([*starts, len(extra.rows)]):
        token = int(extra.tokens[start])
        low, high = int(offsets[token]), int(offsets[token + 1])
        positions[start:end] = low + np.searchsorted(rows[low:high], extra.rows[start:end])
    added = np.bincount(extra.tokens, minlength=len(offsets) - 1)
    frequencies = frequencies.astype(np.result_type(frequencies, extra.frequencies), copy=False)
    return (
        offsets + np.concatenate([[0], np.cumsum(added)]),
        np.insert(rows, positions, extra.rows),
        np.insert(frequencies, positions, extra.frequencies),
    )


def merge_postings(
    counts: np.ndarray, rows: np.ndarray, frequencies: np.ndarray, added: list[Postings], *, in_order: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets, rows (int32) and frequencies of kept postings (``counts`` per token) with ``added`` ones.

    Kept rows that kept their order need only the added postings put in place; otherwise
    every posting is sorted again.
    """
    rows_after = int(max([int(rows.max(initial=-1)), *(int(part.rows.max(initial=-1)) for part in added)])) + 1
    extra = sort_postings(concatenated_postings(added), rows_after)
    if in_order:
        offsets, rows, frequencies = insert_postings(offsets_of(counts), rows, frequencies, extra)
    else:
        moved = Postings(np.repeat(np.arange(len(counts)), counts), rows, frequencies)
        merged = sort_postings(concatenated_postings([moved, extra]), rows_after)
        offsets = offsets_of(np.bincount(merged.tokens, minlength=len(counts)))
        rows, frequencies = merged.rows, merged.frequencies
    return offsets, rows.astype(np.int32, copy=False), frequencies.astype(frequency_dtype(frequencies), copy=False)


def frequency_dtype(frequencies: np.ndarray) -> type[np.unsignedinteger[Any]]:
    """The narrowest type for these term frequencies (uint16 holds any but a freak text's)."""
    largest = int(frequencies.max()) if len(frequencies) else 0
    return np.uint16 if largest <= np.iinfo(np.uint16).max else np.uint32


def first_copies(sources: np.ndarray, old_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each old row's first new row (-1 if none), and the further (old row, new row) copies."""
    kept = np.flatnonzero(sources >= 0)
    distinct, first = np.unique(sources[kept], return_index=True)
    new_of_old = np.full(old_rows, -1, dtype=np.int64)
    new_of_old[distinct] = kept[first]
    later = np.ones(len(kept), dtype=bool)
    later[first] = False
    return new_of_old, sources[kept[later]], kept[later]


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """Where each token's postings start, given how many each has (and the total, last)."""
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts, dtype=np.int64)])


def concatenated(arrays: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    """The arrays end to end as ``dtype`` (an empty array of it for none)."""
    return np.concatenate([np.zeros(0, dtype=dtype), *arrays]).astype(dtype, copy=False)


def no_postings() -> Postings:
    """Postings of nothing."""
    return Postings(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint16))


def concatenated_postings(parts: list[Postings]) -> Postings:
    """The postings of ``parts`` end to end (not sorted)."""
    return Postings(
        concatenated([part.tokens for part in parts], np.int64),
        concatenated([part.rows for part in parts], np.int64),
        np.concatenate([part.frequencies for part in parts]),
    )
