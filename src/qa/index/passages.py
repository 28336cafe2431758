"""The passages of an index in one SQLite file: opened, not parsed, so a million load at once.

A generation's file is written once (``PassageTable.save``) and never changed after: it is
opened read-only and immutable, so readers take no locks. Row numbers are the passages'
positions in document and paragraph order, the rows of the vector and BM25 indexes.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from qa.index.store import SearchFilter
from qa.records import Passage

# Bump when the table changes; a file of another version is refused as damaged.
PASSAGES_FORMAT = 1
_FIELDS = (
    "passage_id",
    "doc_id",
    "source",
    "paragraph",
    "start",
    "end",
    "text",
    "title",
    "outlet",
    "author",
    "date",
    "url",
)
_COLUMNS = ", ".join(f'"{name}"' for name in _FIELDS)
# SQLite allows 32,766 parameters a statement; chunks stay well under it.
_CHUNK = 900
# Rows read at a time when iterating over every passage.
_PAGE = 10_000
# Rows remembered by id: a question looks up by id the candidates it was just given as rows.
_REMEMBERED_ROWS = 50_000
# A table of up to this many passages reads every id when it opens (4 ms at SciFact's 5,183) and
# maps rows to ids in memory: each question turns some 200 candidate rows into ids, 0.15 ms
# twice through SQLite at that size. A larger table looks them up, remembering the latest.
_IDS_IN_MEMORY_UP_TO = 50_000


def _fill(connection: sqlite3.Connection, passages: Iterable[Passage]) -> int:
    """Create the table in an empty database and write ``passages`` into it, row 0 first; how many."""
    connection.execute("CREATE TABLE qa_format (version INTEGER NOT NULL)")
    connection.execute("INSERT INTO qa_format VALUES (?)", [PASSAGES_FORMAT])
    columns = ", ".join(f'"{name}" {_type(name)} NOT NULL' for name in _FIELDS)
    connection.execute(f"CREATE TABLE passages (row INTEGER PRIMARY KEY, {columns})")
    rows = ((row, *_values(passage)) for row, passage in enumerate(passages))
    connection.executemany(f"INSERT INTO passages VALUES (?, {', '.join('?' * len(_FIELDS))})", rows)
    # Made after the rows are in: one sort instead of a B-tree grown row by row.
    connection.execute("CREATE UNIQUE INDEX passages_by_id ON passages (passage_id)")
    connection.execute("CREATE INDEX passages_by_document ON passages (doc_id)")
    connection.commit()
    (count,) = connection.execute("SELECT count(*) FROM passages").fetchone()
    return int(count)


def _type(name: str) -> str:
    return "INTEGER" if name in ("paragraph", "start", "end") else "TEXT"


_values: Callable[[Passage], tuple[Any, ...]] = operator.attrgetter(*_FIELDS)  # one C call a passage


class PassageTable(Sequence[Passage]):
    """The passages of one generation, read from its SQLite file as they are asked for.

    Safe across threads: the one connection is used under a lock.
    """

    def __init__(self, connection: sqlite3.Connection | None, size: int) -> None:
        self._connection = connection
        self._size = size
        self._lock = threading.Lock()
        self._row_of: dict[str, int] = {}
        self._counts: dict[str, int] | None = None  # passages per document, counted when first asked
        self._ids: list[str] | None = None  # every id by row, for a table of up to _IDS_IN_MEMORY_UP_TO
        if connection is not None and size <= _IDS_IN_MEMORY_UP_TO:
            self._ids = [
                passage_id for (passage_id,) in self._query("SELECT passage_id FROM passages ORDER BY row", [])
            ]
            self._row_of = {passage_id: row for row, passage_id in enumerate(self._ids)}
            if len(self._ids) != size:  # rows are numbered from 0 without gaps; were they not, ask SQLite
                self._ids, self._row_of = None, {}

    @classmethod
    def open(cls, path: Path) -> PassageTable:
        """The passages in ``path``.

        Raises:
            ValueError: The file is not a passage table of this version.
            sqlite3.Error: It cannot be read.
        """
        # immutable=1: a generation's file never changes, so SQLite need not lock or check it.
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )
        try:
            (version,) = connection.execute("SELECT version FROM qa_format").fetchone()
            if version != PASSAGES_FORMAT:
                raise ValueError(f"{path.name} holds passages of format {version}, not {PASSAGES_FORMAT}")
            (size,) = connection.execute("SELECT max(row) + 1 FROM passages").fetchone()
        except BaseException:
            connection.close()
            raise
        return cls(connection, int(size or 0))

    @classmethod
    def empty(cls) -> PassageTable:
        """A table with no passages (an index not built yet)."""
        return cls(None, 0)

    @classmethod
    def build(cls, passages: Iterable[Passage]) -> PassageTable:
        """A new table of ``passages`` (row 0 first), in a temporary database until ``save``.

        SQLite keeps a temporary database on disk, not in memory: a build of a million
        passages holds only its page cache.
        """
        connection = sqlite3.connect("", check_same_thread=False)
        try:
            # Nothing to recover after a crash: a temporary database is gone with its process.
            connection.execute("PRAGMA journal_mode = OFF")
            connection.execute("PRAGMA synchronous = OFF")
            size = _fill(connection, passages)
        except BaseException:
            connection.close()
            raise
        return cls(connection, size)

    def save(self, path: Path) -> None:
        """Write the table to a new SQLite file at ``path`` (SQLite's page-by-page backup)."""
        path.unlink(missing_ok=True)  # a temporary name (``qa.index.files.written``); a fresh file
        target = sqlite3.connect(path)
        try:
            if self._connection is None:
                _fill(target, [])
            else:
                with self._lock:
                    self._connection.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        """Close the file; the table answers nothing after."""
        if self._connection is not None:
            self._connection.close()

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> Passage: ...

    @overload
    def __getitem__(self, index: slice) -> list[Passage]: ...

    def __getitem__(self, index: int | slice) -> Passage | list[Passage]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._size)
            if step != 1:
                return [self[row] for row in range(start, stop, step)]
            return self._select("row >= ? AND row < ? ORDER BY row", [start, stop])
        row = index + self._size if index < 0 else index
        if not 0 <= row < self._size:
            raise IndexError(f"passage row {index} out of range")
        return self.at_rows([row])[0]

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same passages in the same order (a list, or another table)."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so not hashable

    def __iter__(self) -> Iterator[Passage]:
        for start in range(0, self._size, _PAGE):
            yield from self[start : start + _PAGE]

    def at_rows(self, rows: Sequence[int]) -> list[Passage]:
        """The passages at these rows, in the same order."""
        found = {row: passage for row, passage in self._rows_where("row", list(rows))}
        return [found[int(row)] for row in rows]

    def by_ids(self, ids: Sequence[str]) -> list[Passage]:
        """The passages with these ids, in the same order.

        Raises:
            KeyError: An id is not in the table.
        """
        with self._lock:
            rows = [self._row_of.get(passage_id) for passage_id in ids]
        if None not in rows:  # a question's candidates, just given as rows: one look-up each, not two
            by_row = {row: passage for row, passage in self._rows_where("row", rows)}
            return [by_row[row] for row in rows]  # type: ignore[index]  # no None among them
        found = {passage.passage_id: passage for _, passage in self._rows_where("passage_id", list(ids))}
        return [found[passage_id] for passage_id in ids]

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """The rows of the passages with these ids.

        Raises:
            KeyError: An id is not in the table.
        """
        with self._lock:
            found = {passage_id: self._row_of[passage_id] for passage_id in ids if passage_id in self._row_of}
        missing = [passage_id for passage_id in ids if passage_id not in found]
        if missing:
            found.update(self._query_chunks("SELECT passage_id, row FROM passages WHERE passage_id IN ({})", missing))
        return np.fromiter((found[passage_id] for passage_id in ids), dtype=np.int64, count=len(ids))

    def ids_at(self, rows: Sequence[int]) -> list[str]:
        """The ids of the passages at these rows, in the same order."""
        if self._ids is not None:
            ids, size = self._ids, len(self._ids)
            if any(not 0 <= row < size for row in rows):
                raise KeyError(f"no passage at row {next(row for row in rows if not 0 <= row < size)}")
            return [ids[row] for row in rows]
        wanted = [int(row) for row in rows]
        found = dict(self._query_chunks("SELECT row, passage_id FROM passages WHERE row IN ({})", wanted))
        ids = [found[row] for row in wanted]
        self._remember_rows(zip(ids, wanted, strict=True))
        return ids

    def _remember_rows(self, pairs: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            if len(self._row_of) > _REMEMBERED_ROWS:
                self._row_of.clear()
            self._row_of.update(pairs)

    def titles(self) -> list[str]:
        """Every passage's title, in row order."""
        return [title for (title,) in self._query("SELECT title FROM passages ORDER BY row", [])]

    def counts_by_document(self) -> dict[str, int]:
        """How many passages each document has."""
        # Counted once: the table never changes, and the app's page asks four times as it is
        # built (0.2-0.3 s each at a million passages).
        if self._counts is None:
            self._counts = dict(self._query("SELECT doc_id, count(*) FROM passages GROUP BY doc_id", []))
        return dict(self._counts)

    def allowed_rows(self, where: SearchFilter) -> np.ndarray:
        """A mask over the rows: which passages ``where`` lets through (as ``SearchFilter.allows``)."""
        clauses: list[str] = []
        values: list[Any] = []
        for column, names in (("doc_id", where.doc_ids), ("outlet", where.outlets)):
            if names:
                clauses.append(f"{column} IN ({', '.join('?' * len(names))})")
                values.extend(sorted(names))
        day = "substr(date, 1, 10)"  # a sidecar may give a date-time; the range is of days
        if where.date_from or where.date_to:
            clauses.append(f"{day} != ''")
        if where.date_from:
            clauses.append(f"{day} >= ?")
            values.append(where.date_from)
        if where.date_to:
            clauses.append(f"{day} <= ?")
            values.append(where.date_to)
        mask = np.zeros(self._size, dtype=bool)
        condition = " AND ".join(clauses) or "1"
        rows = [row for (row,) in self._query(f"SELECT row FROM passages WHERE {condition}", values)]
        mask[np.asarray(rows, dtype=np.int64)] = True
        return mask

    def _rows_where(self, column: str, keys: list[Any]) -> list[tuple[int, Passage]]:
        sql = f"SELECT row, {_COLUMNS} FROM passages WHERE {column} IN ({{}})"
        return [(row, Passage(*values)) for row, *values in self._query_chunks(sql, keys)]

    def _select(self, condition: str, values: list[Any]) -> list[Passage]:
        return [
            Passage(*values) for values in self._query(f"SELECT {_COLUMNS} FROM passages WHERE {condition}", values)
        ]

    def _query_chunks(self, sql: str, keys: list[Any]) -> list[Any]:
        found: list[Any] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            found.extend(self._query(sql.format(", ".join("?" * len(chunk))), chunk))
        return found

    def _query(self, sql: str, values: list[Any]) -> list[Any]:
        if self._connection is None:
            return []
        with self._lock:
            return self._connection.execute(sql, values).fetchall()
