"""Ranking pieces of hybrid search: candidates, fusion, filters and near-duplicate folding.

Dense and BM25 retrieval each propose their best candidates; the union is
scored by both and fused. All functions work on row numbers of the passage
list and NumPy arrays, so they are easy to check against brute force.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from qa.errors import QAError
from qa.records import Hit, Passage

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")
# How many candidates each retriever proposes before fusion.
CANDIDATE_DEPTH = 100
# Reciprocal rank fusion constant (Cormack et al., 2009).
RRF_K = 60
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Passages whose word 5-gram sets overlap this much are copies of one another.
DUPLICATE_JACCARD = 0.8


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to some documents, outlets and a date range (ISO dates, inclusive).

    Empty fields do not restrict. A passage with no date is outside any date range.
    """

    doc_ids: frozenset[str] = frozenset()
    outlets: frozenset[str] = frozenset()
    date_from: str = ""
    date_to: str = ""

    def allows(self, passage: Passage) -> bool:
        if self.doc_ids and passage.doc_id not in self.doc_ids:
            return False
        if self.outlets and passage.outlet not in self.outlets:
            return False
        day = passage.date[:10]  # a sidecar may give a date-time; the range is of days
        if (self.date_from or self.date_to) and not day:
            return False
        return not (self.date_from and day < self.date_from) and not (self.date_to and day > self.date_to)

    @classmethod
    def of(
        cls, *, doc_ids: Iterable[str] = (), outlets: Iterable[str] = (), date_from: str = "", date_to: str = ""
    ) -> SearchFilter:
        """A filter from user input; a date that is not ``YYYY-MM-DD`` is a clear error."""
        for day in (date_from, date_to):
            if day.strip() and not _ISO_DAY.fullmatch(day.strip()):
                raise QAError(f"dates look like 2020-08-02, not {day.strip()!r}")
        return cls(frozenset(doc_ids), frozenset(outlets), date_from.strip(), date_to.strip())

    @property
    def is_empty(self) -> bool:
        return not (self.doc_ids or self.outlets or self.date_from or self.date_to)


@dataclass(frozen=True)
class Ranking:
    """One retriever's candidates: rows best first, with their scores."""

    rows: np.ndarray
    scores: np.ndarray

    def ranks(self) -> dict[int, int]:
        return {int(row): rank for rank, row in enumerate(self.rows, start=1)}


def top_rows(scores: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> Ranking:
    """The ``depth`` best-scoring rows (among ``allowed`` ones), best first; ties go to the earlier row."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    depth = min(depth, int(np.isfinite(scores).sum()))
    if depth <= 0:
        return Ranking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    # Partitioning is linear; only the rows tied at the cut-off need choosing by row order.
    cutoff = -np.partition(-scores, depth - 1)[depth - 1]
    above = np.flatnonzero(scores > cutoff)
    tied = np.flatnonzero(scores == cutoff)[: depth - len(above)]
    candidates = np.concatenate([above, tied])
    rows = candidates[np.lexsort((candidates, -scores[candidates]))]
    return Ranking(rows, scores[rows])


def reciprocal_rank_fusion(rankings: Sequence[Ranking], *, k: int = RRF_K) -> dict[int, float]:
    """Sum of ``1 / (k + rank)`` over the rankings a row appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking.rows, start=1):
            fused[int(row)] = fused.get(int(row), 0.0) + 1.0 / (k + rank)
    return fused


def convex_fusion(rows: np.ndarray, dense: np.ndarray, lexical: np.ndarray, *, dense_weight: float) -> dict[int, float]:
    """``w * dense + (1 - w) * bm25`` after min-max scaling each over the candidate rows."""
    fused = dense_weight * min_max(dense) + (1 - dense_weight) * min_max(lexical)
    return {int(row): float(score) for row, score in zip(rows, fused, strict=True)}


def min_max(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1]; all zeros when they are all equal."""
    spread = float(values.max() - values.min()) if values.size else 0.0
    return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)


def _shingles(text: str, size: int = 5) -> frozenset[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return frozenset(tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1)))


def fold_duplicates(hits: Sequence[Hit], *, limit: int | None = None) -> list[Hit]:
    """Keep the best-ranked of near-identical passages, noting the others' sources in ``also_in``.

    Two copies of one article (a syndicated story, a page saved twice) would
    otherwise fill the results with the same paragraph. With a ``limit``, the
    scan stops once ``limit`` distinct hits are kept and at least twice that
    many were looked at, so the cost does not grow with the candidate list.
    """
    kept: list[tuple[Hit, frozenset[tuple[str, ...]], list[str]]] = []
    for scanned, hit in enumerate(hits):
        if limit is not None and len(kept) >= limit and scanned >= 2 * limit:
            break
        signature = _shingles(hit.passage.text)
        copy_of = next((entry for entry in kept if _jaccard(signature, entry[1]) >= DUPLICATE_JACCARD), None)
        if copy_of is not None:
            if hit.passage.source not in copy_of[2]:
                copy_of[2].append(hit.passage.source)
        elif limit is None or len(kept) < limit:
            kept.append((hit, signature, [hit.passage.source]))
    return [_with_sources(hit, sources[1:], rank) for rank, (hit, _, sources) in enumerate(kept, start=1)]


def _jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _with_sources(hit: Hit, others: list[str], rank: int) -> Hit:
    from dataclasses import replace

    return replace(hit, rank=rank, also_in=tuple(others))
