"""Writing index files safely and reading them back: temporary names, fsync, one rename.

Every build writes a new generation of files beside the old one; only the
manifest's rename commits it, so an interrupted build (even by SIGKILL) leaves
the previous index whole. Nothing is pickled: JSON Lines here, and each
component's own format (FAISS, NumPy without pickle, SQLite).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qa.errors import QAError, os_error_fix
from qa.index.lock import forget_generation, recorded_generations
from qa.index.manifest import MANIFEST_NAME, STAMPS_NAME, files_under, former_generation_files, generation_files
from qa.records import Document


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
    """Like ``written`` for a folder: filled under a temporary name, flushed, renamed when complete."""
    temporary = final.with_name(temporary_name(final.name, os.getpid()))
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
    reason = f"{error.strerror}: {Path(str(error.filename)).name}" if error.strerror and error.filename else error
    return QAError(
        f"could not write the index in {index_dir} ({reason}); the previous index is unchanged",
        fix=os_error_fix(error),
    )


def remove(path: Path) -> bool:
    """Delete a file or a folder (a link itself, never what it points to); whether nothing is left there."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return not os.path.lexists(path)
    return True


@contextmanager
def written(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is flushed to disk and renamed to ``final``."""
    temporary = final.with_name(temporary_name(final.name, os.getpid()))
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, final)
    finally:
        remove(temporary)


def sync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries to disk."""
    # The renames are durable only once the directory entry is on disk.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temporary_name(final: str, pid: int) -> str:
    """The name ``final`` is written under by process ``pid`` until it is complete (see ``written``)."""
    return f".{final}.{pid}.tmp"


def remove_stale_files(index_dir: Path, *, keep: set[str]) -> None:
    """Delete the files of earlier generations and of interrupted builds, and nothing else.

    Only generations the journal in the lock file records are touched (a build records its
    generation before writing a file of it, and the generation of the manifest it replaces),
    and of each only the exact names qa gives its files: the generation's files, and the
    temporary files and manifest of the process that wrote it. Files qa did not write stay,
    whatever their names. What cannot be removed now (a read-only folder) stays recorded for
    the next build, with a warning.
    """
    for record in recorded_generations(index_dir):
        names = list(generation_files(record.generation).values())
        if keep.intersection(names):
            continue
        if record.pid is not None:
            names += [temporary_name(name, record.pid) for name in [*names, MANIFEST_NAME, STAMPS_NAME]]
        names += former_generation_files(record.generation)
        left = [name for name in names if not remove(index_dir / name)]
        if left:
            message = f"could not remove {', '.join(left)} from {index_dir}; the next qa index tries again"
            warnings.warn(message, stacklevel=2)
        else:
            forget_generation(index_dir, record.generation)
