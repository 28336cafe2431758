"""Exact BM25 top-k by document-at-a-time MaxScore, and BM25 scores of given rows, compiled with numba.

The kernel walks the postings of a query's terms row by row (ascending), keeping the
``depth`` best rows in a heap. Terms are ordered by their upper bound (``weight`` times
the term's largest impact); the terms of lowest bound whose bounds together stay below
the heap's worst score cannot lift a row into the top on their own, so their postings
are never walked, only searched (galloping) for the rows the other, essential, terms
bring up, highest bound first, until the row plainly cannot reach the heap. As the heap
fills its worst score rises and more terms stop being essential.

Scores are those of ``LexicalIndex.scores``, to the bit: each term's contribution
``weight * tf / (tf + norm)`` is kept apart, and a fully scored row's score is their sum
in float64 in the query's token order, rounded to float32 once. Bounds only ever decide
what to skip, and with a slack (``slack``) far above their float64 error, so no row that
could tie or beat the heap's worst is dropped.

The first call with new array types compiles the kernel (a second or two); numba keeps the
machine code on disk (``cache=True``): in ``__pycache__`` beside this file, or if that is
not writable in its user-wide cache folder, or in ``NUMBA_CACHE_DIR`` when that is set.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

# Past every row: the row of a cursor whose postings are used up.
_EXHAUSTED = np.iinfo(np.int64).max
# The rarest query terms, up to this many postings together (at least one term), are walked first
# and their rows scored in full: a threshold near the final one before the main walk, which then
# leaves the commonest terms to probing from its first row on.
SEED_POSTINGS = 5_000


@dataclass(frozen=True)
class QueryTerms:
    """A query's distinct known tokens in the order the query first names them.

    Token i's postings are ``starts[i]:ends[i]``; it adds ``weights[i] * tf / (tf + norm)``
    to a row holding it and at most ``bounds[i]`` to any row.
    """

    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    weights: np.ndarray  # float64
    bounds: np.ndarray  # float64


@dataclass(frozen=True)
class TopRows:
    """The best rows, best first, their float32 scores, and how many rows were scored in full."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32
    fully_scored: int


def best_rows(
    terms: QueryTerms,
    *,
    postings: np.ndarray,
    frequencies: np.ndarray,
    norms: np.ndarray,
    depth: int,
    allowed: np.ndarray | None,
    slack: float,
) -> TopRows:
    """The ``depth`` best allowed rows holding a query token, best first, ties to the earlier row.

    Args:
        terms: the query's tokens, in query order.
        postings: int32 rows of every token, ascending per token.
        frequencies: uint16 or uint32, each posting's term frequency.
        norms: float64 length norm of every row.
        depth: how many rows to give at most (fewer when fewer rows hold a query token).
        allowed: bool per row, or None for every row.
        slack: relative margin under the threshold within which a row's bound still keeps it.

    Returns:
        The rows with a positive score among the best ``depth``, their scores and the
        number of rows the kernel scored in full.
    """
    if len(terms.starts) == 0:
        return TopRows(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), 0)
    starts = np.asarray(terms.starts, dtype=np.int64)
    ends = np.asarray(terms.ends, dtype=np.int64)
    if allowed is not None:
        # The allowed postings first, in one pass: the walk then meets only rows it may keep, and
        # its first rows give a threshold near the final one. Walking every posting and passing
        # over the rows the filter refuses was slower than NumPy at a 3% filter (4.6 against 3.1 ms).
        postings, frequencies, starts, ends = _allowed_postings(
            _read_only(postings), _read_only(frequencies), np.asarray(allowed, dtype=np.bool_), starts, ends
        )
    rows, scores, fully_scored = _maxscore_top(
        _read_only(postings),
        _read_only(frequencies),
        _read_only(norms),
        starts=_read_only(starts),
        ends=_read_only(ends),
        weights=_read_only(np.asarray(terms.weights, dtype=np.float64)),
        bounds=_read_only(np.asarray(terms.bounds, dtype=np.float64)),
        depth=depth,
        slack=slack,
    )
    positive = scores > 0  # a float32 score of 0 ties every row without a query token: the caller fills those
    return TopRows(rows[positive], scores[positive], int(fully_scored))


def scores_at(
    terms: QueryTerms, *, postings: np.ndarray, frequencies: np.ndarray, norms: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The float32 BM25 scores of ``rows`` (any order, repeats allowed), to the bit those of a full scoring.

    Each term's contribution is added in query order in float64 and the sum rounded once,
    as ``LexicalIndex.scores`` adds them. The rows are looked up in ascending order, each
    term's search galloping on from where the last one stopped.
    """
    return _scores_at(
        _read_only(postings),
        _read_only(frequencies),
        _read_only(norms),
        starts=_read_only(np.asarray(terms.starts, dtype=np.int64)),
        ends=_read_only(np.asarray(terms.ends, dtype=np.int64)),
        weights=_read_only(np.asarray(terms.weights, dtype=np.float64)),
        rows=_read_only(np.asarray(rows, dtype=np.int64)),
    )


@numba.njit(cache=True, nogil=True)
def _scores_at(
    postings: np.ndarray,
    frequencies: np.ndarray,
    norms: np.ndarray,
    *,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    rows: np.ndarray,
) -> np.ndarray:
    totals = np.zeros(len(rows), dtype=np.float64)
    ascending = np.argsort(rows, kind="mergesort")
    for term in range(len(starts)):
        position = starts[term]  # rows in ascending order: each search goes on from the last one
        for i in ascending:
            position = _first_at_or_after(postings, position, ends[term], rows[i])
            if position < ends[term] and postings[position] == rows[i]:
                totals[i] += _impact(weights[term], frequencies[position], norms[rows[i]])
    return totals.astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _allowed_postings(
    postings: np.ndarray, frequencies: np.ndarray, allowed: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The terms' postings (and frequencies) at allowed rows, in new arrays, and where each term now starts and ends."""
    total = 0
    for term in range(len(starts)):
        total += ends[term] - starts[term]
    kept_rows = np.empty(total, dtype=postings.dtype)
    kept_frequencies = np.empty(total, dtype=frequencies.dtype)
    kept_starts, kept_ends = np.empty_like(starts), np.empty_like(ends)
    size = 0
    for term in range(len(starts)):
        kept_starts[term] = size
        for position in range(starts[term], ends[term]):
            if allowed[postings[position]]:
                kept_rows[size] = postings[position]
                kept_frequencies[size] = frequencies[position]
                size += 1
        kept_ends[term] = size
    return kept_rows[:size], kept_frequencies[:size], kept_starts, kept_ends


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view: numba compiles one kernel per array type, and read-only is a type of its own.

    Memory-mapped indexes give read-only arrays and built ones writable arrays; viewing
    both as read-only keeps to one compiled kernel per frequency type.
    """
    view: np.ndarray = array.view()
    view.flags.writeable = False
    return view


def warm(frequency_dtype: np.dtype[np.unsignedinteger]) -> None:
    """Compile (or load from numba's disk cache) the kernels for postings of ``frequency_dtype``, filtered or not."""
    terms = QueryTerms(np.array([0]), np.array([1]), np.array([1.0]), np.array([0.5]))
    scores_at(
        terms,
        postings=np.zeros(1, dtype=np.int32),
        frequencies=np.ones(1, dtype=frequency_dtype),
        norms=np.ones(1),
        rows=np.zeros(1, dtype=np.int64),
    )
    for allowed in (None, np.ones(1, dtype=np.bool_)):
        best_rows(
            terms,
            postings=np.zeros(1, dtype=np.int32),
            frequencies=np.ones(1, dtype=frequency_dtype),
            norms=np.ones(1),
            depth=1,
            allowed=allowed,
            slack=1e-6,
        )


@numba.njit(cache=True, nogil=True)
def _maxscore_top(
    postings: np.ndarray,
    frequencies: np.ndarray,
    norms: np.ndarray,
    *,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    bounds: np.ndarray,
    depth: int,
    slack: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The heap's rows and scores, best first, and how many rows were scored in full.

    Two walks: first the rows holding the rarest terms (the seed terms, of highest bound),
    each scored in full, which sets a threshold near the final one; then every row from
    the start with MaxScore, skipping the rows the first walk scored already.
    """
    count = len(starts)
    order = np.argsort(bounds, kind="mergesort")  # lowest bound first: the first to become non-essential
    walk = _Walk(
        postings,
        frequencies,
        norms,
        order,
        ends[order],
        weights[order],
        np.cumsum(bounds[order]),  # [i]: the most terms 0..i (by bound) add together
        np.empty(depth, dtype=np.int64),
        np.empty(depth, dtype=np.float32),
        np.zeros(count, dtype=np.float64),
        slack,
    )
    seed_first = count - 1
    held = ends[order[seed_first]] - starts[order[seed_first]]
    while seed_first > 0 and held + ends[order[seed_first - 1]] - starts[order[seed_first - 1]] <= SEED_POSTINGS:
        seed_first -= 1
        held += ends[order[seed_first]] - starts[order[seed_first]]
    size, fully_scored = _walk_rows(walk, starts[order].copy(), 0, seed_first, count)
    essential = _first_essential(walk.below, _floor(walk.heap_scores, size, slack), 0)
    if essential < seed_first:  # else every row that may still reach the heap holds a seed term: scored already
        size, more = _walk_rows(walk, starts[order].copy(), size, essential, seed_first)
        fully_scored += more
    best_rows, best_scores = _sorted_best_first(walk.heap_rows, walk.heap_scores, size)
    return best_rows, best_scores, fully_scored


_Walk = namedtuple(
    "_Walk",
    [
        "postings",
        "frequencies",
        "norms",
        "order",
        "end",
        "weight",
        "below",
        "heap_rows",
        "heap_scores",
        "contributions",
        "slack",
    ],
)


@numba.njit(cache=True, nogil=True)
def _walk_rows(walk: Any, cursor: np.ndarray, size: int, essential: int, skip_from: int) -> tuple[int, int]:
    """Walk the rows of terms ``essential`` on (by bound), probing the terms before, offering rows to the heap.

    Rows holding a term from ``skip_from`` on are passed over (the seed walk scored them).
    If there are such terms (the main walk), terms stop being walked as the heap's worst
    score rises, and the walk ends once only those are left; the seed walk walks its terms
    to the end. Returns the heap's size and the rows scored in full.
    """
    postings, frequencies, norms, end, weight = walk.postings, walk.frequencies, walk.norms, walk.end, walk.weight
    order, below, contributions = walk.order, walk.below, walk.contributions
    count = len(cursor)
    adapt = skip_from < count
    current = np.empty(count, dtype=np.int64)
    for i in range(count):
        current[i] = postings[cursor[i]] if cursor[i] < end[i] else _EXHAUSTED
    floor = _floor(walk.heap_scores, size, walk.slack)
    fully_scored = 0
    while essential < skip_from or (not adapt and essential < count):
        row = _EXHAUSTED
        for i in range(essential, count):
            row = min(row, current[i])
        if row == _EXHAUSTED:
            break
        passed = False
        partial = 0.0
        for i in range(essential, count):
            if current[i] == row:
                passed = passed or i >= skip_from
                value = _impact(weight[i], frequencies[cursor[i]], norms[row])
                contributions[order[i]] = value
                partial += value
                cursor[i] += 1
                current[i] = postings[cursor[i]] if cursor[i] < end[i] else _EXHAUSTED
        reachable = not passed
        for i in range(essential - 1, -1, -1):  # highest bound first: the likeliest to rule the row out
            if not reachable or partial + below[i] < floor:
                reachable = False
                break
            cursor[i] = _first_at_or_after(postings, cursor[i], end[i], row)
            if cursor[i] < end[i] and postings[cursor[i]] == row:
                value = _impact(weight[i], frequencies[cursor[i]], norms[row])
                contributions[order[i]] = value
                partial += value
        if reachable:
            fully_scored += 1
            size = _offer(walk.heap_rows, walk.heap_scores, size, row, np.float32(_sum_in_order(contributions)))
            floor = _floor(walk.heap_scores, size, walk.slack)
            if adapt:
                essential = _first_essential(below, floor, essential)
        contributions[:] = 0.0
    return size, fully_scored


@numba.njit(cache=True, nogil=True)
def _sum_in_order(contributions: np.ndarray) -> float:
    """0.0 plus each contribution in query order, as ``LexicalIndex.scores`` adds them (0.0 where absent)."""
    total = 0.0
    for value in contributions:
        total += value
    return total


@numba.njit(cache=True, nogil=True)
def _offer(rows: np.ndarray, scores: np.ndarray, size: int, row: int, score: np.float32) -> int:
    """Put (row, score) in the heap of ``size`` entries if it is not full or ranks above its worst; the new size."""
    if size < len(rows):
        _push(rows, scores, size, row, score)
        return size + 1
    if _better(score, row, scores[0], rows[0]):
        rows[0], scores[0] = row, score
        _sift_down(rows, scores, 0, size)
    return size


@numba.njit(cache=True, nogil=True, inline="always")
def _floor(scores: np.ndarray, size: int, slack: float) -> float:
    """Below this bound a row cannot reach the heap: its worst score less the slack, or 0 until it is full."""
    return float(scores[0]) * (1.0 - slack) if size == len(scores) else 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _first_essential(below: np.ndarray, floor: float, essential: int) -> int:
    """The first term (by bound) that the terms before it cannot make up for: below it, only probe."""
    while essential < len(below) and below[essential] < floor:
        essential += 1
    return essential


@numba.njit(cache=True, nogil=True, inline="always")
def _impact(weight: float, frequency: int, norm: float) -> float:
    """``weight * tf / (tf + norm)`` evaluated as ``lexical.impacts`` evaluates it (same order of operations)."""
    tf = float(frequency)
    return weight * tf / (tf + norm)


@numba.njit(cache=True, nogil=True)
def _first_at_or_after(postings: np.ndarray, low: int, high: int, row: int) -> int:
    """The first position in ``low:high`` holding ``row`` or a later one (``high`` if none): gallop, then bisect."""
    if low >= high or postings[low] >= row:
        return low
    step = 1
    probe = low + step
    while probe < high and postings[probe] < row:  # postings[low] < row throughout
        low = probe
        step *= 2
        probe = low + step
    high = min(probe, high)
    low += 1
    while low < high:
        middle = (low + high) // 2
        if postings[middle] < row:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True, nogil=True, inline="always")
def _better(score: np.float32, row: int, other_score: np.float32, other_row: int) -> bool:
    """Whether (score, row) ranks before (other_score, other_row): higher score, then earlier row."""
    return bool(score > other_score or (score == other_score and row < other_row))


@numba.njit(cache=True, nogil=True)
def _push(rows: np.ndarray, scores: np.ndarray, size: int, row: int, score: np.float32) -> None:
    """Add (row, score) to the heap of ``size`` entries whose root is its worst entry."""
    child = size
    while child > 0:
        parent = (child - 1) // 2
        if not _better(scores[parent], rows[parent], score, row):
            break
        rows[child], scores[child] = rows[parent], scores[parent]
        child = parent
    rows[child], scores[child] = row, score


@numba.njit(cache=True, nogil=True)
def _sift_down(rows: np.ndarray, scores: np.ndarray, start: int, size: int) -> None:
    """Move the entry at ``start`` down until no child of it ranks below it."""
    row, score = rows[start], scores[start]
    parent = start
    while True:
        child = 2 * parent + 1
        if child >= size:
            break
        if child + 1 < size and _better(scores[child], rows[child], scores[child + 1], rows[child + 1]):
            child += 1  # the worse child
        if not _better(score, row, scores[child], rows[child]):
            break
        rows[parent], scores[parent] = rows[child], scores[child]
        parent = child
    rows[parent], scores[parent] = row, score


@numba.njit(cache=True, nogil=True)
def _sorted_best_first(rows: np.ndarray, scores: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The heap's entries best first: the worst is taken off the root and put last, repeatedly."""
    rows, scores = rows[:size].copy(), scores[:size].copy()
    for last in range(size - 1, 0, -1):
        worst_row, worst_score = rows[0], scores[0]
        rows[0], scores[0] = rows[last], scores[last]
        _sift_down(rows, scores, 0, last)
        rows[last], scores[last] = worst_row, worst_score
    return rows, scores
