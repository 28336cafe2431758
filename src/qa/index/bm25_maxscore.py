"""Exact BM25 top-k over a large index: MaxScore, document at a time, compiled with Numba.

The query's tokens are ordered by their bound (the most one token can add to any row).
The longest prefix of that order whose bounds together stay below the current k-th best
score holds the non-essential tokens: a row holding only those cannot reach the top. Rows
are visited in ascending order through the other (essential) tokens' postings; each row's
non-essential tokens are looked up by galloping search, highest bound first, and the
lookups stop as soon as the row can no longer reach the k-th best score. The commonest
tokens' long postings are thus only probed, never read through (Turtle and Flood, 1995;
as in Lucene and PISA).

Exactness: a row that passes is scored again as exhaustive scoring adds it up (float64,
tokens in query order, rounded to float32 once), and rows are pruned only when their
bound falls below the k-th best by more than float rounding could move it (``SLACK``).
Rows come in ascending order, so of rows tied at the k-th best score the earlier ones stay.
"""

from __future__ import annotations

import numba
import numpy as np

# Rows are pruned only below the k-th best score less this fraction: far more than float32
# rounding of the final scores (6e-8) and float64 rounding of the bounds.
SLACK = 1e-6
_PAST_EVERY_ROW = np.iinfo(np.int64).max


def top_by_maxscore(
    *,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    bounds: np.ndarray,
    rows: np.ndarray,
    frequencies: np.ndarray,
    norms: np.ndarray,
    allowed: np.ndarray | None,
    depth: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best rows (among ``allowed``) holding a query token and their float32 scores, best first.

    Token t (in query order) has postings ``rows[starts[t]:ends[t]]`` (ascending) with
    ``frequencies``, and adds ``weights[t] * tf / (tf + norms[row])`` to a row, never more
    than ``bounds[t]``. Fewer rows come back when fewer hold a query token. Ties go to the
    earlier row.
    """
    mask = np.zeros(1, dtype=np.bool_) if allowed is None else np.asarray(allowed, dtype=np.bool_)
    found_rows, found_scores = _maxscore(
        (starts, ends, weights, bounds), (rows, frequencies, norms), mask, allowed is not None, depth
    )
    order = np.lexsort((found_rows, -found_scores))
    return found_rows[order], found_scores[order]


@numba.njit(nogil=True, cache=True)
def _maxscore(terms, postings, allowed, filtered, depth):  # type: ignore[no-untyped-def]
    """The heap of the best rows: (rows, scores), unordered. See the module's docstring."""
    bounds = terms[3]
    by_bound = np.argsort(bounds, kind="mergesort")
    below = np.cumsum(bounds[by_bound])  # below[i]: the bounds of by_bound[0..i] together
    walk = (terms[0].copy(), np.zeros(len(bounds)))  # each token's position in its postings; its part of the row
    heap_scores = np.empty(depth, dtype=np.float32)
    heap_rows = np.empty(depth, dtype=np.int64)
    held = 0
    floor = -np.inf
    first_essential = 0
    while True:
        row = _next_row(terms, postings, walk, by_bound[first_essential:])
        if row == _PAST_EVERY_ROW:
            break
        _add_essential(terms, postings, walk, by_bound[first_essential:], row)
        if filtered and not allowed[row]:
            continue
        if not _add_optional(terms, postings, walk, (by_bound[:first_essential], below, floor), row):
            continue
        score = _exact_score(walk[1])
        if held < depth:
            _push(heap_scores, heap_rows, held, score, row)
            held += 1
        elif score > heap_scores[0]:  # a tie loses to the earlier rows already held
            _replace_worst(heap_scores, heap_rows, depth, score, row)
        else:
            continue
        if held == depth:
            floor = np.float64(heap_scores[0]) * (1 - SLACK)
            while first_essential < len(bounds) and below[first_essential] < floor:
                first_essential += 1
    return heap_rows[:held].copy(), heap_scores[:held].copy()


@numba.njit(inline="always")
def _next_row(terms, postings, walk, essential):  # type: ignore[no-untyped-def]
    """The lowest row not yet visited in the essential tokens' postings (``_PAST_EVERY_ROW`` when none is left)."""
    ends, rows, cursors = terms[1], postings[0], walk[0]
    row = _PAST_EVERY_ROW
    for t in essential:
        if cursors[t] < ends[t] and rows[cursors[t]] < row:
            row = rows[cursors[t]]
    return row


@numba.njit(inline="always")
def _add_essential(terms, postings, walk, essential, row):  # type: ignore[no-untyped-def]
    """Set each essential token's contribution to ``row`` (0 if absent), moving past the row; clear the others."""
    ends, weights = terms[1], terms[2]
    rows, frequencies, norms = postings
    cursors, contributions = walk
    contributions[:] = 0.0
    for t in essential:
        c = cursors[t]
        if c < ends[t] and rows[c] == row:
            contributions[t] = _impact(weights[t], frequencies[c], norms[row])
            cursors[t] = c + 1


@numba.njit(inline="always")
def _add_optional(terms, postings, walk, pruning, row):  # type: ignore[no-untyped-def]
    """Add the non-essential tokens' contributions, highest bound first; false once ``row`` cannot reach the floor.

    ``pruning``: the non-essential tokens (ascending bound), the running sums of their bounds, the floor.
    """
    ends, weights = terms[1], terms[2]
    rows, frequencies, norms = postings
    cursors, contributions = walk
    optional, below, floor = pruning
    partial = contributions.sum()
    for i in range(len(optional) - 1, -1, -1):
        if partial + below[i] < floor:
            return False
        t = optional[i]
        c = _gallop(rows, cursors[t], ends[t], row)
        cursors[t] = c
        if c < ends[t] and rows[c] == row:
            contributions[t] = _impact(weights[t], frequencies[c], norms[row])
            partial += contributions[t]
    return partial >= floor


@numba.njit(inline="always")
def _exact_score(contributions):  # type: ignore[no-untyped-def]
    """The row's score as exhaustive scoring adds it: float64, query order, rounded once (0.0 adds nothing)."""
    total = 0.0
    for value in contributions:
        total += value
    return np.float32(total)


@numba.njit(inline="always")
def _impact(weight, frequency, norm):  # type: ignore[no-untyped-def]
    tf = np.float64(frequency)
    return weight * tf / (tf + norm)  # the very operations of qa.index.lexical.impacts


@numba.njit(inline="always")
def _gallop(rows, cursor, end, row):  # type: ignore[no-untyped-def]
    """The first position from ``cursor`` whose row is at least ``row`` (``end`` if none)."""
    if cursor >= end or rows[cursor] >= row:
        return cursor
    low, step = cursor, 1
    high = cursor + 1
    while high < end and rows[high] < row:
        low = high
        step *= 2
        high = low + step
    high = min(high, end)
    low += 1
    while low < high:
        middle = (low + high) >> 1
        if rows[middle] < row:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(inline="always")
def _worse(score_a, row_a, score_b, row_b):  # type: ignore[no-untyped-def]
    """Whether (score_a, row_a) ranks below (score_b, row_b): lower score, or the later row on a tie."""
    return score_a < score_b or (score_a == score_b and row_a > row_b)


@numba.njit(inline="always")
def _push(scores, rows, held, score, row):  # type: ignore[no-untyped-def]
    """Add to a heap of ``held`` entries whose root is the worst."""
    j = held
    while j > 0:
        parent = (j - 1) >> 1
        if _worse(scores[parent], rows[parent], score, row):
            break
        scores[j], rows[j] = scores[parent], rows[parent]
        j = parent
    scores[j], rows[j] = score, row


@numba.njit(inline="always")
def _replace_worst(scores, rows, held, score, row):  # type: ignore[no-untyped-def]
    """Put (score, row) in place of the heap's root, the worst, and sift it down."""
    j = 0
    while True:
        child = 2 * j + 1
        if child >= held:
            break
        if child + 1 < held and _worse(scores[child + 1], rows[child + 1], scores[child], rows[child]):
            child += 1
        if _worse(scores[child], rows[child], score, row):
            scores[j], rows[j] = scores[child], rows[child]
            j = child
        else:
            break
    scores[j], rows[j] = score, row
