"""Writing index files safely and reading them back: temporary names, fsync, one rename.

Every build writes a new generation of files beside the old one; only the
manifest's rename commits it, so an interrupted build (even by SIGKILL) leaves
the previous index whole. Nothing is pickled: JSON Lines here, and each
component's own format (FAISS, NumPy without pickle, bm25s's arrays).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.errors import QAError
from qa.index.manifest import files_under
from qa.records import Document, Passage

# Fields every passage of a document repeats: one shared string each instead of one per passage.
_SHARED_FIELDS = ("doc_id", "source", "title", "outlet", "author", "date", "url")


def passage_from_json(data: dict[str, Any]) -> Passage:
    """A passage from its JSON object, sharing one string per document for the repeated fields."""
    return Passage(**{**data, **{name: sys.intern(data[name]) for name in _SHARED_FIELDS}})


def document_to_json(document: Document) -> dict[str, Any]:
    """A document as a JSON object."""
    data = dataclasses.asdict(document)
    data["paragraphs"] = list(document.paragraphs)
    return data


def document_from_json(data: dict[str, Any]) -> Document:
    """A document from its JSON object."""
    return Document(**{**data, "paragraphs": tuple(data["paragraphs"])})


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON Lines (UTF-8, not ASCII-escaped)."""
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, blank lines skipped."""
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield json.loads(line)


@contextmanager
def written_directory(final: Path) -> Iterator[Path]:
    """Like ``_written`` for a folder: filled under a temporary name, flushed, renamed when complete."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    remove(temporary)
    temporary.mkdir(parents=True)
    try:
        yield temporary
        for path in files_under(temporary):
            with path.open("rb+") as file:
                os.fsync(file.fileno())
        sync_directory(temporary)
        os.replace(temporary, final)
    finally:
        remove(temporary)


def write_failure(index_dir: Path, error: OSError) -> QAError:
    """A full disk or a read-only folder, said plainly."""
    return QAError(f"could not write the index in {index_dir} ({error}); the previous index is unchanged")


def remove(path: Path) -> None:
    """Delete a file or a folder, if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def written(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is flushed to disk and renamed to ``final``."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk."""
    # The renames are durable only once the directory entry is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_files(index_dir: Path, *, keep: set[str]) -> None:
    """Delete files of earlier generations and temporary files of interrupted builds."""
    patterns = ("documents-*.jsonl", "passages-*.jsonl", "vectors-*.faiss", "slots-*.npy", "bm25-*", ".*.tmp")
    for pattern in patterns:
        for path in index_dir.glob(pattern):
            if path.name not in keep:
                remove(path)
