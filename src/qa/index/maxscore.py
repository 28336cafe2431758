"""Exact BM25 top-k by document-at-a-time MaxScore, and BM25 scores of given rows, in compiled C.

The kernel (``bm25_kernels.c``, built with the package) walks the postings of a query's
terms row by row (ascending), keeping the ``depth`` best rows in a heap. Terms are ordered
by their upper bound (``weight`` times the term's largest impact); the terms of lowest
bound whose bounds together stay below the heap's worst score cannot lift a row into the
top on their own, so their postings are never walked, only searched (galloping) for the
rows the other, essential, terms bring up, highest bound first, until the row plainly
cannot reach the heap. As the heap fills its worst score rises and more terms stop being
essential. The rows of the rarest terms are scored first, to start from a threshold near
the final one.

Scores are those of ``LexicalIndex.scores``, to the bit: each term's contribution
``weight * tf / (tf + norm)`` is kept apart, and a fully scored row's score is their sum
in float64 in the query's token order, rounded to float32 once. Bounds only ever decide
what to skip, and with a slack (``slack``) far above their float64 error, so no row that
could tie or beat the heap's worst is dropped.

C through ``ctypes`` rather than a JIT compiler: ctypes releases the interpreter during a
call, so BM25 runs beside the question's embedding for real, and the library costs no
compiler runtime in memory (Numba's came to 107 MB of a serving process at a million
passages).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The rarest query terms, up to this many postings together (at least one term), are walked first
# and their rows scored in full: a threshold near the final one before the main walk, which then
# leaves the commonest terms to probing from its first row on.
SEED_POSTINGS = 5_000
_LIBRARY = "_bm25_kernels"
_SUFFIXES = {np.dtype(np.uint16): "u16", np.dtype(np.uint32): "u32"}


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
    count = len(terms.starts)
    if count == 0 or depth <= 0:
        return TopRows(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), 0)
    suffix = _suffix(frequencies)
    starts, ends = _int64(terms.starts), _int64(terms.ends)
    if allowed is not None:
        # The allowed postings first, in one pass: the walk then meets only rows it may keep, and
        # its first rows give a threshold near the final one. Walking every posting and passing
        # over the rows the filter refuses was slower than NumPy at a 3% filter (4.6 against 3.1 ms).
        postings, frequencies, starts, ends = _allowed_postings(
            suffix, postings=postings, frequencies=frequencies, allowed=allowed, starts=starts, ends=ends
        )
    # Every array the kernel reads is held here until it returns: the C code gets bare addresses.
    arrays = _Arrays(postings, frequencies, norms)
    weights = np.ascontiguousarray(terms.weights, dtype=np.float64)
    bounds = np.ascontiguousarray(terms.bounds, dtype=np.float64)
    rows = np.empty(depth, dtype=np.int64)
    scores = np.empty(depth, dtype=np.float32)
    size = ctypes.c_int64(0)
    fully_scored = getattr(_library(), f"qa_maxscore_top_{suffix}")(
        *arrays.pointers(),
        _pointer(starts),
        _pointer(ends),
        _pointer(weights),
        _pointer(bounds),
        ctypes.c_int64(count),
        ctypes.c_int64(depth),
        ctypes.c_double(slack),
        ctypes.c_int64(SEED_POSTINGS),
        _pointer(rows),
        _pointer(scores),
        ctypes.byref(size),
    )
    if fully_scored < 0:
        raise MemoryError("no memory for BM25's top rows")
    rows, scores = rows[: size.value], scores[: size.value]
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
    rows = _int64(rows)
    scores = np.empty(len(rows), dtype=np.float32)
    if len(rows) == 0:
        return scores
    arrays = _Arrays(postings, frequencies, norms)  # held until the kernel returns, as every array below
    starts, ends = _int64(terms.starts), _int64(terms.ends)
    weights = np.ascontiguousarray(terms.weights, dtype=np.float64)
    ascending = _int64(np.argsort(rows, kind="stable"))
    totals = np.empty(len(rows), dtype=np.float64)
    getattr(_library(), f"qa_scores_at_{_suffix(frequencies)}")(
        *arrays.pointers(),
        _pointer(starts),
        _pointer(ends),
        _pointer(weights),
        ctypes.c_int64(len(starts)),
        _pointer(rows),
        _pointer(ascending),
        ctypes.c_int64(len(rows)),
        _pointer(totals),
        _pointer(scores),
    )
    return scores


def _allowed_postings(
    suffix: str,
    *,
    postings: np.ndarray,
    frequencies: np.ndarray,
    allowed: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The terms' postings (and frequencies) at allowed rows, in new arrays, and where each term now starts and ends."""
    total = int((ends - starts).sum())
    source = _Arrays(postings, frequencies, None)  # held until the kernel returns, as every array below
    mask = np.ascontiguousarray(allowed, dtype=np.bool_)
    kept_rows = np.empty(total, dtype=np.int32)
    kept_frequencies = np.empty(total, dtype=source.frequencies.dtype)
    kept_starts, kept_ends = np.empty_like(starts), np.empty_like(ends)
    size = getattr(_library(), f"qa_allowed_postings_{suffix}")(
        *source.pointers(),
        _pointer(mask),
        _pointer(starts),
        _pointer(ends),
        ctypes.c_int64(len(starts)),
        _pointer(kept_rows),
        _pointer(kept_frequencies),
        _pointer(kept_starts),
        _pointer(kept_ends),
    )
    return kept_rows[:size], kept_frequencies[:size], kept_starts, kept_ends


class _Arrays:
    """An index's postings, frequencies and (if given) norms as contiguous arrays of the types the C code reads."""

    def __init__(self, postings: np.ndarray, frequencies: np.ndarray, norms: np.ndarray | None) -> None:
        self.postings = np.ascontiguousarray(postings, dtype=np.int32)
        self.frequencies = np.ascontiguousarray(frequencies)
        self.norms = None if norms is None else np.ascontiguousarray(norms, dtype=np.float64)

    def pointers(self) -> list[ctypes.c_void_p]:
        arrays = [self.postings, self.frequencies] + ([] if self.norms is None else [self.norms])
        return [_pointer(array) for array in arrays]


def _suffix(frequencies: np.ndarray) -> str:
    try:
        return _SUFFIXES[frequencies.dtype]
    except KeyError:
        raise ValueError(f"BM25 term frequencies must be uint16 or uint32, not {frequencies.dtype}") from None


def _int64(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.int64)


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    # ``array`` must outlive the call: every caller passes arrays it still holds.
    return ctypes.c_void_p(array.ctypes.data)


@functools.cache  # the one library of this installation, loaded once
def _library() -> Any:
    """The compiled kernels, built with the package next to this file.

    Raises:
        OSError: The library is missing (the package was installed without building it).
    """
    folder = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"{_LIBRARY}{suffix}"
        if path.is_file():
            library = ctypes.CDLL(str(path))
            for name in ("qa_maxscore_top", "qa_allowed_postings"):
                for variant in _SUFFIXES.values():
                    getattr(library, f"{name}_{variant}").restype = ctypes.c_int64
            for variant in _SUFFIXES.values():
                getattr(library, f"qa_scores_at_{variant}").restype = None
            return library
    raise OSError(f"qa's BM25 kernels ({_LIBRARY}*.so) are not built in {folder}: reinstall qa (pip install -e .)")
