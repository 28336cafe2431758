"""BM25 over passages, with bm25s: English stop words removed and words stemmed (Snowball).

Saved with bm25s's own format (NumPy arrays and JSON, pickling disabled),
which can be memory-mapped when the index is large.
"""

from __future__ import annotations

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


class LexicalIndex:
    """A BM25 index whose rows are the passages of a ``PassageIndex``, in the same order."""

    def __init__(self, retriever: bm25s.BM25 | None, size: int) -> None:
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: list[str], *, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> LexicalIndex:
        import bm25s

        tokens = tokenize(texts)
        if not any(tokens):
            return cls(None, len(texts))  # nothing to match: bm25s cannot index an empty vocabulary
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros where no query word occurs)."""
        if self._retriever is None:
            return np.zeros(self.size, dtype=np.float32)
        [query_tokens] = tokenize([query])
        vocabulary = self._retriever.vocab_dict
        known = [token for token in query_tokens if token in vocabulary]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def vocabulary(self) -> set[str]:
        """The tokens that occur in at least one row."""
        if self._retriever is None:
            return set()
        return {token for token in self._retriever.vocab_dict if token}

    def save(self, directory: Path) -> None:
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
