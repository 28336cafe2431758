"""What each retriever sees of a passage, and the keys that find an unchanged one in the old index.

The encoder may see the headline before the paragraph and BM25 may too
(``IndexSettings``); two passages share a vector or a BM25 row exactly when
they share the text the retriever sees, which the keys here say without
building that text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np

from qa.index.manifest import IndexSettings
from qa.records import Passage


def embedding_text(passage: Passage, settings: IndexSettings) -> str:
    """The text the encoder sees: the headline gives a paragraph the context it lacks alone."""
    return _with_title(passage, settings.title_in_dense)


def lexical_text(passage: Passage, settings: IndexSettings) -> str:
    """The text BM25 sees."""
    return _with_title(passage, settings.title_in_bm25)


def _with_title(passage: Passage, title: bool) -> str:
    return f"{passage.title}\n{passage.text}" if title and passage.title else passage.text


# A text by its passage text's hash and the title put before it ("" when none is).
TextKey = tuple[bytes, str]


def keys_of(text_hashes: list[bytes], titles: list[str], *, with_title: bool) -> list[TextKey]:
    """Each text's key: two passages have one key exactly when ``_with_title`` gives them one text."""
    if not with_title:
        return [(text, "") for text in text_hashes]
    return list(zip(text_hashes, titles, strict=True))


def source_rows(old_keys: list[TextKey], keys: list[TextKey]) -> np.ndarray:
    """For each new text, a row of an old one with the same key (rows may serve several), else -1."""
    row_of = {key: row for row, key in enumerate(old_keys)}
    return np.fromiter((row_of.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))


class LexicalTexts(Sequence[str]):
    """The BM25 texts of some passages (``lexical_text``), made as they are read: BM25 reads a chunk at a time."""

    def __init__(self, passages: Sequence[Passage], rows: np.ndarray, settings: IndexSettings) -> None:
        self._passages = passages
        self._rows = rows
        self._settings = settings

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [lexical_text(self._passages[row], self._settings) for row in self._rows[index].tolist()]
        return lexical_text(self._passages[int(self._rows[index])], self._settings)
