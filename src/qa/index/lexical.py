"""BM25 over passages, with bm25s: English stop words removed and words stemmed (Snowball).

Saved with bm25s's own format (NumPy arrays and JSON, pickling disabled),
which can be memory-mapped when the index is large.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import bm25s

# Robertson/Lucene defaults; SciFact's train split measured no better setting worth the change.
DEFAULT_K1 = 1.5
DEFAULT_B = 0.75
STEMMER_LANGUAGE = "english"
STOPWORDS = "en"
SHAPE_FILE = "qa-shape.json"
# From this many rows the postings are memory-mapped rather than read into memory.
MMAP_ROWS = 100_000


def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer(STEMMER_LANGUAGE)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, stemmed tokens of each text, as BM25 sees them."""
    import bm25s

    tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=_stemmer(), return_ids=False, show_progress=False)
    return [list(row) for row in tokens]


@functools.lru_cache(maxsize=16)  # the questions in flight, not a cache of past ones
def query_tokens(query: str) -> tuple[str, ...]:
    """The tokens of one query, remembered.

    A hybrid search asks BM25 twice about the same question (its candidates, then
    the scores of the dense candidates), and on a small index tokenizing costs
    more than scoring.
    """
    [tokens] = tokenize([query])
    return tuple(tokens)


class LexicalIndex:
    """A BM25 index whose rows are the passages of a ``LocalIndex``, in the same order."""

    def __init__(self, retriever: bm25s.BM25 | None, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: list[str], *, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> LexicalIndex:
        """A BM25 index of ``texts``, one row each."""
        import bm25s

        tokens = tokenize(texts)
        if not any(tokens):
            return cls(None, len(texts))  # nothing to match: bm25s cannot index an empty vocabulary
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no query word occurs)."""
        token_ids = self._token_ids(query)
        if self._retriever is None or not token_ids:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(token_ids), dtype=np.float32)

    def scores_of(self, query: str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores of ``rows`` alone for ``query``: ``scores(query)[rows]`` without scoring every row.

        Each query token's postings hold its rows in ascending order (bm25s keeps
        its score matrix sorted by column, then row), so each row is found by
        bisection; contributions are added token by token in float32, as bm25s
        adds them, so the scores are the same to the bit.
        """
        rows = np.asarray(rows, dtype=np.int64)
        totals = np.zeros(len(rows), dtype=np.float32)
        if self._retriever is None:
            return totals
        matrix = self._retriever.scores
        data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
        for token_id in self._token_ids(query):
            start, end = int(indptr[token_id]), int(indptr[token_id + 1])
            postings = indices[start:end]
            positions = np.searchsorted(postings, rows)
            inside = positions < len(postings)
            found = inside.copy()
            found[inside] = postings[positions[inside]] == rows[inside]
            totals[found] += data[start + positions[found]]
        return totals

    def top(self, query: str, *, depth: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` best rows for ``query`` (among ``allowed`` ones) and their scores, best first."""
        return top_rows(self.scores(query), depth, allowed)

    def _token_ids(self, query: str) -> list[int]:
        """The query's tokens as ids of this index's vocabulary; a repeated word counts each time, as in bm25s."""
        if self._retriever is None:
            return []
        vocabulary = self._retriever.vocab_dict
        return [int(vocabulary[token]) for token in query_tokens(query) if token in vocabulary]

    def vocabulary(self) -> set[str]:
        """The tokens that occur in at least one row."""
        if self._retriever is None:
            return set()
        return {token for token in self._retriever.vocab_dict if token}

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (bm25s's format, no pickle, plus its shape)."""
        directory.mkdir(parents=True, exist_ok=True)
        shape = {"rows": self.size, "empty_vocabulary": self._retriever is None}
        (directory / SHAPE_FILE).write_text(json.dumps(shape) + "\n", encoding="utf-8")
        if self._retriever is not None:
            self._retriever.save(str(directory), allow_pickle=False, show_progress=False)

    @classmethod
    def load(cls, directory: Path, *, mmap: bool | None = None) -> LexicalIndex:
        """Load a saved index; large ones are memory-mapped unless ``mmap`` says otherwise."""
        import bm25s

        shape = json.loads((directory / SHAPE_FILE).read_text(encoding="utf-8"))
        size = int(shape["rows"])
        if shape["empty_vocabulary"]:
            return cls(None, size)
        if mmap is None:
            mmap = size >= MMAP_ROWS
        retriever = bm25s.BM25.load(str(directory), mmap=mmap, allow_pickle=False, show_progress=False)
        return cls(retriever, size)


def top_rows(scores: np.ndarray, depth: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best-scoring rows (among ``allowed`` ones) and their scores, best first.

    Ties go to the earlier row.
    """
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    depth = min(depth, int(np.isfinite(scores).sum()))
    if depth <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    # Partitioning is linear; only the rows tied at the cut-off need choosing by row order.
    cutoff = -np.partition(-scores, depth - 1)[depth - 1]
    above = np.flatnonzero(scores > cutoff)
    tied = np.flatnonzero(scores == cutoff)[: depth - len(above)]
    candidates = np.concatenate([above, tied])
    rows = candidates[np.lexsort((candidates, -scores[candidates]))]
    return rows, scores[rows]
