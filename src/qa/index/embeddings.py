"""Passage vectors: embedded in batches, and remembered in an SQLite cache keyed by model and text."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.embed.encoder import Encoder, normalize
from qa.errors import QAError, os_error_fix
from qa.index.scratch import ScratchRows

CACHE_NAME = "embeddings.sqlite"
EMBED_BATCH_SIZE = 32
# Vectors scaled to unit length and put in place at a time: bounds the float32 temporaries.
UNIT_BLOCK = 4096


def text_hash(text: str) -> str:
    """The SHA-256 of a text, the cache's key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors already computed, keyed by model and text hash, in SQLite.

    Batches are committed as they are embedded, so a build that is stopped
    part-way resumes without embedding the same passages again. SQLite's
    rollback journal undoes a batch cut off mid-commit (even by SIGKILL).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._opened()
        except OSError as error:
            raise cache_failure(path, error) from error

    def _opened(self) -> sqlite3.Connection:
        path = self.path
        try:
            return _open_cache(path)
        except sqlite3.OperationalError as error:  # cannot open or write it (a read-only folder), not damage
            raise cache_failure(path, error) from error
        except sqlite3.DatabaseError as error:
            # Only a cache: replacing a damaged one costs embedding again, not a failed build.
            warnings.warn(f"the embedding cache {path} is damaged ({error}); starting a new one", stacklevel=3)
            for stale in (path, path.with_name(f"{path.name}-journal")):
                stale.unlink(missing_ok=True)
        try:
            return _open_cache(path)
        except sqlite3.Error as error:
            raise cache_failure(path, error) from error

    def get_many(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of ``model`` for these text hashes (missing ones are left out).

        Raises:
            QAError: The cache cannot be read.
        """
        found: dict[str, np.ndarray] = {}
        try:
            for start in range(0, len(hashes), 500):  # stay under SQLite's variable limit
                chunk = list(hashes[start : start + 500])
                rows = self._db.execute(
                    "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN "
                    f"({','.join('?' * len(chunk))})",
                    [model, *chunk],
                )
                found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        except sqlite3.Error as error:
            raise cache_failure(self.path, error) from error
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Remember ``(text hash, vector)`` pairs of ``model``, in one transaction.

        Raises:
            QAError: The cache cannot be written (a full disk, a read-only folder).
        """
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                    [(model, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items],
                )
        except sqlite3.Error as error:
            raise cache_failure(self.path, error) from error

    def clear(self, model: str) -> None:
        """Forget every vector of ``model``.

        Raises:
            QAError: The cache cannot be written.
        """
        try:
            with self._db:
                self._db.execute("DELETE FROM embeddings WHERE model = ?", [model])
        except sqlite3.Error as error:
            raise cache_failure(self.path, error) from error

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def cache_failure(path: Path, error: OSError | sqlite3.Error) -> QAError:
    """The error for an embedding cache that cannot be opened, read or written; the index is unchanged."""
    if isinstance(error, OSError):
        fix = os_error_fix(error)
    elif "full" in str(error):
        fix = "free some disk space, or give --index a folder on another disk"
    elif isinstance(error, sqlite3.OperationalError):
        fix = "give --index a folder you may write to (qa makes it if it is missing)"
    else:
        fix = f"delete {path} (it is only a cache) and run `qa index` again"
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return QAError(f"cannot use the embedding cache {path} ({reason}); the index is unchanged", fix=fix)


def _open_cache(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_hash TEXT NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
        )
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return connection


@dataclass(frozen=True)
class EmbedStats:
    """How the vectors of a build were obtained."""

    reused: int = 0
    cached: int = 0
    embedded: int = 0
    # Sentences embedded for the evidence (``qa.index.sentences``); the fields above count passages.
    sentences_embedded: int = 0


def embed_texts(
    texts: list[str],
    encoder: Encoder,
    *,
    known: Mapping[str, np.ndarray],
    cache: EmbeddingCache | None,
    progress: bool,
) -> tuple[np.ndarray, EmbedStats]:
    """Unit vectors for ``texts``, embedding only those found neither in ``known`` nor in ``cache``.

    Each vector goes straight into its rows of the result: a million passages hold one
    matrix, not a vector per text besides it.
    """
    matrix = np.zeros((0, 0), dtype=np.float32)

    def put(rows: np.ndarray, block: np.ndarray) -> None:
        nonlocal matrix
        if not matrix.size:
            matrix = np.empty((len(texts), block.shape[1]), dtype=np.float32)
        matrix[rows] = block

    stats = _embed_rows(texts, encoder, known=known, cache=cache, progress=progress, put=put)
    return matrix, stats


def embed_to_scratch(
    texts: list[str],
    encoder: Encoder,
    *,
    known: Mapping[str, np.ndarray],
    cache: EmbeddingCache | None,
    progress: bool,
) -> tuple[ScratchRows, EmbedStats]:
    """Like ``embed_texts``, with the vectors written to a temporary file (``qa.index.scratch``), not held.

    The caller closes the file. For no texts, it has no rows and no width.
    """
    scratch = ScratchRows(0, 0)

    def put(rows: np.ndarray, block: np.ndarray) -> None:
        nonlocal scratch
        if not scratch.shape[1]:
            scratch.close()
            scratch = ScratchRows(len(texts), block.shape[1])
        scratch.write(rows, block)

    try:
        stats = _embed_rows(texts, encoder, known=known, cache=cache, progress=progress, put=put)
    except BaseException:
        scratch.close()
        raise
    return scratch, stats


def _embed_rows(
    texts: list[str],
    encoder: Encoder,
    *,
    known: Mapping[str, np.ndarray],
    cache: EmbeddingCache | None,
    progress: bool,
    put: Callable[[np.ndarray, np.ndarray], None],
) -> EmbedStats:
    """Find or embed each distinct text's vector, and ``put`` them as unit rows, ``UNIT_BLOCK`` vectors at a time.

    ``put(rows, block)`` gets the rows of ``texts`` that ``block``'s vectors belong to (a
    repeated text's vector once for each of its rows). Nothing is put for no texts.
    """
    rows_of: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        rows_of.setdefault(text_hash(text), []).append(row)
    from_known = {h: known[h] for h in rows_of if h in known}
    cached = cache.get_many(encoder.name, [h for h in rows_of if h not in from_known]) if cache else {}
    to_embed = {h: texts[rows[0]] for h, rows in rows_of.items() if h not in from_known and h not in cached}
    stats = EmbedStats(reused=len(from_known), cached=len(cached), embedded=len(to_embed))
    found = itertools.chain(from_known.items(), cached.items(), _encoded(to_embed, encoder, cache, progress))
    while batch := list(itertools.islice(found, UNIT_BLOCK)):
        rows = [rows_of[h] for h, _ in batch]
        # Each row is scaled on its own, so a block gives the rows a whole matrix would.
        block = _unit_rows(np.stack([vector for _, vector in batch]).astype(np.float32, copy=False))
        targets = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64)
        put(targets, np.repeat(block, [len(each) for each in rows], axis=0))
    return stats


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with each row scaled to length 1, in place."""
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    return matrix


def _encoded(
    texts: dict[str, str], encoder: Encoder, cache: EmbeddingCache | None, progress: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """``(hash, unit vector)`` of each text, embedded ``EMBED_BATCH_SIZE`` at a time and put in ``cache``."""
    from tqdm import tqdm

    items = list(texts.items())
    # Shows passages/s; the first batch also pays for loading the model.
    with tqdm(total=len(items), unit=" passages", desc="embedding", disable=not (progress and items)) as bar:
        for start in range(0, len(items), EMBED_BATCH_SIZE):
            batch = items[start : start + EMBED_BATCH_SIZE]
            batch_vectors = normalize(encoder.encode([text for _, text in batch]))
            pairs = [(h, batch_vectors[i]) for i, (h, _) in enumerate(batch)]
            if cache is not None:
                cache.put_many(encoder.name, pairs)
            yield from pairs
            bar.update(len(batch))
