"""The documents of an index in one SQLite file: their metadata read when it opens, their text when asked for.

A hundred thousand articles hold some 700 MB of text, which took 3.8 s to parse from JSON Lines
and 885 MB to hold. An index keeps in memory only what lists, filters and build reports read
(``DocumentMetadata``), and reads a document's paragraphs when it is shown or carried into the
next generation. A generation's file is written once and opened read-only and immutable.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from qa.records import METADATA_FIELDS, Document, DocumentMetadata

# Bump when the table changes; a file of another version is refused as damaged.
DOCUMENTS_FORMAT = 1
_COLUMNS = ", ".join(f'"{name}"' for name in METADATA_FIELDS)
# Fields whose values many documents share, held once in memory (their positions in METADATA_FIELDS).
_SHARED_AT = tuple(METADATA_FIELDS.index(name) for name in ("outlet", "author", "date", "url", "encoding"))
# Documents read at a time when iterating over every one.
_PAGE = 1_000

_metadata_values: Callable[[Document], tuple[Any, ...]] = operator.attrgetter(*METADATA_FIELDS)


def _fill(connection: sqlite3.Connection, documents: Iterable[Document]) -> None:
    """Create the table in an empty database and write ``documents`` into it, row 0 first."""
    connection.execute("CREATE TABLE qa_format (version INTEGER NOT NULL)")
    connection.execute("INSERT INTO qa_format VALUES (?)", [DOCUMENTS_FORMAT])
    columns = ", ".join(f'"{name}" TEXT NOT NULL' for name in METADATA_FIELDS)
    connection.execute(f"CREATE TABLE documents (row INTEGER PRIMARY KEY, {columns}, paragraphs TEXT NOT NULL)")
    rows = (
        (row, *_metadata_values(document), json.dumps(document.paragraphs, ensure_ascii=False))
        for row, document in enumerate(documents)
    )
    connection.executemany(f"INSERT INTO documents VALUES (?, {', '.join('?' * len(METADATA_FIELDS))}, ?)", rows)
    connection.commit()


def _paragraphs(text: str) -> tuple[str, ...]:
    paragraphs = json.loads(text)
    if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
        raise ValueError("a document's paragraphs are not a list of texts")
    return tuple(paragraphs)


def _read_metadata(connection: sqlite3.Connection, path: Path) -> list[DocumentMetadata]:
    """Every document's metadata, in row order.

    Rows are read one at a time, and a value that many documents share (an outlet, a date,
    an encoding) is held once: a hundred thousand articles' metadata took 77 MB read all at
    once, each value its own string, and 46 MB read like this.
    """
    shared: dict[str, str] = {}
    metadata = []
    rows = connection.execute(f"SELECT row, {_COLUMNS} FROM documents ORDER BY row")
    for expected, (row, *values) in enumerate(rows):
        if row != expected:
            raise ValueError(f"{path.name} does not number its documents from 0 without gaps")
        for at in _SHARED_AT:
            values[at] = shared.setdefault(values[at], values[at])
        metadata.append(DocumentMetadata(*values))
    return metadata


class DocumentTable(Sequence[Document]):
    """The documents of one generation: every one's metadata in memory, their text in the file.

    A table a build has just made holds its documents whole until it is saved. Safe across
    threads: the one connection is used under a lock.
    """

    def __init__(
        self,
        metadata: list[DocumentMetadata],
        *,
        connection: sqlite3.Connection | None = None,
        whole: list[Document] | None = None,
    ) -> None:
        self.metadata = metadata
        self._connection = connection
        self._whole = whole
        self._lock = threading.Lock()
        self._row_of: dict[str, int] | None = None

    @classmethod
    def of(cls, documents: Iterable[Document]) -> DocumentTable:
        """A table of ``documents``, held in memory until ``save``."""
        whole = list(documents)
        return cls([document.metadata for document in whole], whole=whole)

    @classmethod
    def open(cls, path: Path) -> DocumentTable:
        """The documents in ``path``: their metadata read now, their text when asked for.

        Raises:
            ValueError: The file is not a document table of this version.
            sqlite3.Error: It cannot be read.
        """
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )
        try:
            (version,) = connection.execute("SELECT version FROM qa_format").fetchone()
            if version != DOCUMENTS_FORMAT:
                raise ValueError(f"{path.name} holds documents of format {version}, not {DOCUMENTS_FORMAT}")
            metadata = _read_metadata(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(metadata, connection=connection)

    def save(self, path: Path) -> None:
        """Write the table to a new SQLite file at ``path``."""
        path.unlink(missing_ok=True)  # a temporary name (``qa.index.files.written``); a fresh file
        target = sqlite3.connect(path)
        try:
            target.execute("PRAGMA journal_mode = OFF")  # the file is renamed into place only when complete
            _fill(target, self)
        finally:
            target.close()

    def close(self) -> None:
        """Close the file; documents are no longer read from it after."""
        if self._connection is not None:
            self._connection.close()

    def __len__(self) -> int:
        return len(self.metadata)

    @overload
    def __getitem__(self, index: int) -> Document: ...

    @overload
    def __getitem__(self, index: slice) -> list[Document]: ...

    def __getitem__(self, index: int | slice) -> Document | list[Document]:
        if isinstance(index, slice):
            return self._at_rows(range(*index.indices(len(self))))
        row = index + len(self) if index < 0 else index
        if not 0 <= row < len(self):
            raise IndexError(f"document row {index} out of range")
        return self._at_rows([row])[0]

    def __iter__(self) -> Iterator[Document]:
        for start in range(0, len(self), _PAGE):
            yield from self._at_rows(range(start, min(start + _PAGE, len(self))))

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same documents in the same order (a list, or another table)."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so not hashable

    def by_id(self, doc_id: str) -> Document | None:
        """The document with this id, text and all; ``None`` if there is none."""
        if self._row_of is None:
            self._row_of = {document.doc_id: row for row, document in enumerate(self.metadata)}
        row = self._row_of.get(doc_id)
        return None if row is None else self[row]

    def _at_rows(self, rows: Sequence[int]) -> list[Document]:
        if self._whole is not None:
            return [self._whole[row] for row in rows]
        if not rows:
            return []
        assert self._connection is not None  # a table is either whole in memory or opened from a file
        first, last = min(rows), max(rows)
        with self._lock:
            found = dict(
                self._connection.execute(
                    "SELECT row, paragraphs FROM documents WHERE row >= ? AND row <= ?", [first, last]
                ).fetchall()
            )
        return [self.metadata[row].with_paragraphs(_paragraphs(found[row])) for row in rows]
