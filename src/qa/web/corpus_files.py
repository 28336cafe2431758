"""Writing into the corpus folder without surprises, and the record (ledger) of the files qa wrote there.

A file is written under a hidden temporary name, flushed, then given its name by
a hard link that fails if the name exists (or by a rename, when replacing was
asked for). What qa wrote is recorded in ``LEDGER_NAME`` (hidden, so ``qa index``
skips it) by name and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from qa.errors import QAError

LEDGER_NAME = ".qa-added.json"
_LEDGER_KIND = "qa: files added to this corpus folder from the browser"


def write_file(final: Path, data: bytes, *, replace: bool) -> None:
    """Write ``final`` under a hidden temporary name, flush it, then name it (no other file is touched)."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.qa-upload")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, final)  # a link at `final` is replaced itself, never written through
        else:
            _link_new(temporary, final)
        sync_directory(final.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _link_new(temporary: Path, final: Path) -> None:
    """Give ``temporary`` the name ``final`` unless that name exists (``FileExistsError``)."""
    try:
        os.link(temporary, final)  # atomic, and fails rather than replace a file that appeared
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links: the check and the rename are two steps there.
        if os.path.lexists(final):
            raise FileExistsError(str(final)) from None
        os.rename(temporary, final)


def sync_directory(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, where the file system can."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot flush a folder; the rename is done all the same
    finally:
        os.close(descriptor)


def write_error(corpus_dir: Path, name: str, error: OSError) -> QAError:
    """A failed write into the corpus folder, said plainly."""
    return QAError(f"could not write {name} into the corpus folder {corpus_dir} ({error.strerror or error})")


def is_ours(corpus_dir: Path, name: str, ledger: dict[str, str]) -> bool:
    """Whether qa wrote this file and it is unchanged since."""
    path = corpus_dir / name
    if name not in ledger or path.is_symlink():
        return False
    try:
        return checksum(path.read_bytes()) == ledger[name]
    except OSError:
        return False


def checksum(data: bytes) -> str:
    """The SHA-256 the ledger records."""
    return hashlib.sha256(data).hexdigest()


def read_ledger(corpus_dir: Path) -> dict[str, str]:
    """The files qa added to the corpus folder: name to SHA-256 of the bytes it wrote.

    Raises:
        QAError: ``LEDGER_NAME`` exists but is not qa's record (qa will not write over it).
    """
    path = corpus_dir / LEDGER_NAME
    if not os.path.lexists(path):
        return {}
    problem = f"{path} is not qa's record of the files it added"
    if path.is_symlink() or not path.is_file():
        raise QAError(problem, fix="move it away; qa writes this file itself")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QAError(problem, fix="move it away; qa writes this file itself") from error
    files = data.get("files") if isinstance(data, dict) and data.get("kind") == _LEDGER_KIND else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise QAError(problem, fix="move it away; qa writes this file itself")
    return dict(files)


def write_ledger(corpus_dir: Path, files: dict[str, str]) -> None:
    """Replace the record of added files in one rename."""
    text = json.dumps({"kind": _LEDGER_KIND, "files": dict(sorted(files.items()))}, indent=1, ensure_ascii=False)
    try:
        write_file(corpus_dir / LEDGER_NAME, text.encode("utf-8") + b"\n", replace=True)
    except OSError as error:
        raise write_error(corpus_dir, LEDGER_NAME, error) from error
