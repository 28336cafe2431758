"""What search asks of an index: the seam between storage and policy.

An index stores passages and fetches them: the best candidates of each
retriever for a question under a filter, the scores of given passages, the
passages themselves and the documents they came from. Which candidates to ask
for, how to fuse, re-rank and answer, and when to abstain is decided in
``qa.search``, for any store. ``LocalIndex`` (FAISS, bm25s and files in one
folder) is the store today; a second backend implements ``PassageStore``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from qa.errors import IndexMismatchError, QAError
from qa.index.sentences import PassageSentences
from qa.records import Document, DocumentMetadata, Passage

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_iso_day(text: str) -> bool:
    """Whether ``text`` is a real day written ``YYYY-MM-DD`` (not ``2020-99-99``)."""
    if not _ISO_DAY.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to some documents, outlets and a date range (ISO dates, inclusive).

    Empty fields do not restrict. A passage with no date is outside any date range.
    """

    doc_ids: frozenset[str] = frozenset()
    outlets: frozenset[str] = frozenset()
    date_from: str = ""
    date_to: str = ""

    def allows(self, passage: Passage | DocumentMetadata) -> bool:
        """Whether ``passage`` (or every passage of a document: they carry its metadata) is inside the filter."""
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
        """A filter from user input; a date that is not a real ``YYYY-MM-DD`` day, or a backwards range, is an error.

        Names are kept as given: ``qa.search.filters.resolve_filter`` turns
        titles, file names and outlets however written into the index's own.
        """
        date_from, date_to = date_from.strip(), date_to.strip()
        for day in (date_from, date_to):
            if day and not is_iso_day(day):
                raise QAError(f"dates look like 2020-08-02 (a real day), not {day!r}")
        if date_from and date_to and date_from > date_to:
            raise QAError(f"the date range ends before it starts: from {date_from} to {date_to}")
        return cls(frozenset(doc_ids), frozenset(outlets), date_from, date_to)

    @property
    def is_empty(self) -> bool:
        """Whether the filter lets every passage through."""
        return not (self.doc_ids or self.outlets or self.date_from or self.date_to)


def check_model(index_model: str, model: str) -> None:
    """Refuse to mix vectors of two models: an index built with ``index_model`` asked with ``model``."""
    if model != index_model:
        raise IndexMismatchError(
            f"the index was built with model {index_model!r}, not {model!r}",
            fix=f"search without --model, or run `qa index --model {model}` to rebuild it",
        )


@dataclass(frozen=True)
class Candidates:
    """One retriever's candidates, best first: passage ids and their scores."""

    ids: tuple[str, ...]
    scores: np.ndarray


@dataclass(frozen=True)
class StoreSummary:
    """What an index holds, and with which model it was built."""

    model: str
    documents: int
    passages: int
    built_at: str


class PassageStore(Protocol):
    """An index of passages that search can ask; every id is a ``Passage.passage_id``."""

    @property
    def model(self) -> str:
        """The embedding model whose vectors the store holds."""
        ...

    @property
    def documents(self) -> Sequence[DocumentMetadata]:
        """Every indexed document's metadata, in the store's order."""
        ...

    def document(self, doc_id: str) -> Document | None:
        """The document with this id, text and all; ``None`` if the store has none."""
        ...

    def summary(self) -> StoreSummary:
        """Model, counts and build time."""
        ...

    def passage_counts(self) -> Mapping[str, int]:
        """Passages per document id."""
        ...

    def passages_by_id(self, ids: Sequence[str]) -> list[Passage]:
        """The passages with these ids, in the same order."""
        ...

    def iter_passages(self) -> Iterator[Passage]:
        """Every passage, in document and paragraph order."""
        ...

    def sentences_of(self, ids: Sequence[str]) -> list[PassageSentences]:
        """Each passage's sentences with their unit vectors, made when it was indexed."""
        ...

    def dense_candidates(self, vector: np.ndarray, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` passages nearest to the unit ``vector`` (inner product), among those ``where`` allows."""
        ...

    def bm25_candidates(self, text: str, *, depth: int, where: SearchFilter | None) -> Candidates:
        """Up to ``depth`` passages with the best BM25 score for ``text``, among those ``where`` allows."""
        ...

    def dense_scores(self, vector: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The inner product of ``vector`` with each passage's vector."""
        ...

    def bm25_scores(self, text: str, ids: Sequence[str]) -> np.ndarray:
        """Each passage's BM25 score for ``text``."""
        ...

    def known_terms(self, terms: Iterable[str]) -> frozenset[str]:
        """Those of the BM25 ``terms`` found in the passages or the documents' metadata."""
        ...
