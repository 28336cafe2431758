"""One build at a time per index folder: an advisory lock on a file in the folder, and the folder's journal.

``fcntl.flock`` is held by an open file, so the kernel drops it when the
process ends for any reason, SIGKILL included: a killed build never leaves a
stale lock behind. The file itself stays: deleting a lock file races with a
process that has just opened it.

The lock file is qa's own, so it is opened without following a symbolic link
and refused unless it is a plain file with one name holding only what qa
writes; nothing is ever truncated. It holds fixed-width records of
``RECORD_BYTES``, each rewritten in place:

- the first, the process id of the holder (blank when free), for the message a second build shows
  while it waits;
- then one per generation of index files a build has started (``generation <hex> <pid>``), written
  before the first of its files: the journal that tells a later build which files in the folder
  qa wrote (``qa.index.files.remove_stale_files``), even after a SIGKILL. A record is blanked once
  its files are gone, and blank records are reused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qa.errors import IndexBusyError, QAError, cannot_use
from qa.index.manifest import GENERATION_FILE, MANIFEST_NAME

LOCK_NAME = "qa-index.lock"
# How long `qa index` and the app's start wait for another build of the same index.
DEFAULT_WAIT_SECONDS = 600.0
# How often a waiting build tries the lock again; flock itself has no timeout.
POLL_SECONDS = 0.1
RECORD_BYTES = 64
# A journal this long would mean thousands of builds killed in a row: not a file qa wrote.
_MAX_LOCK_BYTES = 1 << 20
_BLANK = b" " * (RECORD_BYTES - 1) + b"\n"
_HOLDER = re.compile(rb"\d{1,20}")
_GENERATION = re.compile(rb"generation ([0-9a-f]{1,32})(?: (\d{1,20}))?")
# What a folder meant for an index may hold before the first build: the note of the repository's
# own index/ folder, git's placeholders, and the folder `qa eval --beir` keeps its indexes in.
_PLACEHOLDERS = frozenset({"README.md", ".gitignore", ".gitkeep", "beir"})


@dataclass(frozen=True)
class GenerationRecord:
    """A generation of index files a build started in this folder, from the journal in the lock file."""

    generation: str
    # The process that wrote it, which names its temporary files; None if known from a manifest only.
    pid: int | None
    slot: int


@contextmanager
def index_lock(index_dir: Path, *, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the build lock of ``index_dir`` for the ``with`` block.

    Args:
        index_dir: The index folder (created if missing); it must be empty, new or an index already.
        wait: Seconds to wait for another holder to finish; 0 refuses at once.
        on_wait: Called once with a message if this call has to wait.

    Raises:
        IndexBusyError: Another process still holds the lock after ``wait`` seconds.
        QAError: The folder holds files qa did not write, or cannot be written; the lock file is a
            link or not qa's.
    """
    import fcntl

    check_index_folder(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_use(index_dir, error) from error
    descriptor = _created_lock_file(index_dir)
    try:
        _acquire(descriptor, index_dir, wait, on_wait)
        try:
            _records(descriptor, index_dir)  # checked only now: until then a holder may be writing it
            try:
                _write_record(descriptor, 0, str(os.getpid()).encode())
            except OSError as error:
                raise cannot_use(index_dir, error) from error
            try:
                yield
            finally:
                # A stale pid only names the last holder; the lock itself is released below.
                with contextlib.suppress(OSError):
                    _write_record(descriptor, 0, b"")
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def check_index_folder(index_dir: Path) -> None:
    """Refuse a place qa may not fill with an index: a file, or a folder of other files that is no index.

    A folder is an index already when it holds qa's lock file or a manifest of qa (with
    generation files, if the manifest is damaged). One holding only placeholders (a README,
    git's ``.gitignore`` or ``.gitkeep``, ``qa eval --beir``'s cache) counts as empty: qa writes
    none of those names.

    Raises:
        QAError: What is wrong with ``index_dir``, and the fix.
    """
    try:
        names = sorted(os.listdir(index_dir))
    except FileNotFoundError:
        return  # made by the build
    except NotADirectoryError as error:
        if not index_dir.is_file():  # a folder above it is a file
            raise cannot_use(index_dir, error) from error
        raise QAError(
            f"{index_dir} is a file, not a folder", fix="give --index a folder (qa makes it if it is missing)"
        ) from None
    except OSError as error:
        raise cannot_use(index_dir, error) from error
    if _PLACEHOLDERS.issuperset(names) or LOCK_NAME in names or _holds_an_index(index_dir, names):
        return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise QAError(
        f"{index_dir} is not an index folder of qa and holds other files ({shown}); qa would write among them",
        fix="give --index an empty or new folder, or the folder of an index",
    )


def _holds_an_index(index_dir: Path, names: list[str]) -> bool:
    if MANIFEST_NAME not in names:
        return False
    if any(GENERATION_FILE.fullmatch(name) for name in names):
        return True
    try:
        with (index_dir / MANIFEST_NAME).open("rb") as file:
            data = json.loads(file.read(_MAX_LOCK_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data and "corpus_fingerprint" in data


def _acquire(descriptor: int, index_dir: Path, wait: float, on_wait: Callable[[str], None] | None) -> None:
    import fcntl

    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        holder = lock_holder(index_dir)
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:g} s" if wait > 0 else ""
            raise IndexBusyError(
                f"another qa index ({holder}) is updating {index_dir}{waited}: try again when it has finished"
            ) from None
        if on_wait is not None and not told:
            on_wait(f"waiting up to {wait:g} s for another qa index ({holder}) to finish with {index_dir}")
            told = True
        time.sleep(POLL_SECONDS)


def lock_holder(index_dir: Path) -> str:
    """``pid N`` of the process holding the lock, as far as its file says."""
    try:
        descriptor = os.open(index_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            text = os.pread(descriptor, RECORD_BYTES, 0).decode("ascii").strip()
        finally:
            os.close(descriptor)
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


# ---------------------------------------------------------------------- the journal of generations


def record_generation(index_dir: Path, generation: str, *, pid: int | None) -> None:
    """Note in the journal, durably, that a build is about to write ``generation``'s files (by process ``pid``).

    A generation already noted is left as it is.

    Raises:
        QAError: The lock file is a link or not qa's, or cannot be written.
    """
    if not re.fullmatch(r"[0-9a-f]{1,32}", generation):
        raise ValueError(f"not a generation name: {generation!r}")
    descriptor = _created_lock_file(index_dir)
    try:
        records = _records(descriptor, index_dir)
        if any(_parse(record)[0] == generation for record in records[1:]):
            return
        slot = next((n for n, record in enumerate(records) if n and not record), max(len(records), 1))
        text = f"generation {generation}" + (f" {pid}" if pid is not None else "")
        try:
            if os.fstat(descriptor).st_size < RECORD_BYTES:  # new, or a pid an earlier qa wrote
                _write_record(descriptor, 0, b"")
            _write_record(descriptor, slot, text.encode())
            os.fsync(descriptor)
        except OSError as error:
            raise cannot_use(index_dir, error) from error
    finally:
        os.close(descriptor)


def recorded_generations(index_dir: Path) -> list[GenerationRecord]:
    """The generations the journal holds, oldest slot first; none if there is no lock file.

    Raises:
        QAError: The lock file is a link or not qa's.
    """
    descriptor = _open_lock_file(index_dir, create=False)
    if descriptor is None:
        return []
    try:
        records = _records(descriptor, index_dir)
    finally:
        os.close(descriptor)
    found = []
    for slot, record in enumerate(records[1:], 1):
        generation, pid = _parse(record)
        if generation:
            found.append(GenerationRecord(generation, pid, slot))
    return found


def forget_generation(index_dir: Path, generation: str) -> None:
    """Blank the journal's record of ``generation``, once its files are gone.

    Raises:
        QAError: The lock file is a link or not qa's, or cannot be written.
    """
    descriptor = _open_lock_file(index_dir, create=False)
    if descriptor is None:
        return
    try:
        for slot, record in enumerate(_records(descriptor, index_dir)):
            if slot and _parse(record)[0] == generation:
                _write_record(descriptor, slot, b"")
    except OSError as error:
        raise cannot_use(index_dir, error) from error
    finally:
        os.close(descriptor)


def _parse(record: bytes) -> tuple[str, int | None]:
    match = _GENERATION.fullmatch(record)
    if match is None:
        return "", None
    return match.group(1).decode(), int(match.group(2)) if match.group(2) else None


def _open_lock_file(index_dir: Path, *, create: bool) -> int | None:
    """The lock file, opened for reading and writing, never through a link and only if a plain file.

    Without ``create``, ``None`` when there is no lock file.
    """
    path = index_dir / LOCK_NAME
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        descriptor = os.open(path, flags, 0o644)
    except FileNotFoundError as error:
        if not create:
            return None
        raise cannot_use(index_dir, error) from error
    except OSError as error:
        if error.errno == errno.ELOOP or path.is_symlink():
            raise QAError(
                f"{path} is a symbolic link; qa makes this file itself and will not write through a link",
                fix="remove the link",
            ) from error
        raise cannot_use(index_dir, error) from error
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        what = "not a plain file" if not stat.S_ISREG(status.st_mode) else "a file with other names (hard links)"
        raise QAError(
            f"{path} is {what}; qa makes this file itself and will not write to it",
            fix=f"remove it if no qa index is running on {index_dir}",
        )
    return descriptor


def _created_lock_file(index_dir: Path) -> int:
    descriptor = _open_lock_file(index_dir, create=True)
    if descriptor is None:  # O_CREAT makes it; the open raises rather than give None
        raise cannot_use(index_dir, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)))
    return descriptor


def _records(descriptor: int, index_dir: Path) -> list[bytes]:
    """The records of the lock file, stripped; raises ``QAError`` unless every one is a record qa writes."""
    size = os.fstat(descriptor).st_size
    content = os.pread(descriptor, min(size, _MAX_LOCK_BYTES + 1), 0)
    if len(content) < RECORD_BYTES and re.fullmatch(rb"\d*\n?", content):
        return []  # new, or the pid of an earlier qa's holder: no journal yet
    records = [content[start : start + RECORD_BYTES] for start in range(0, len(content), RECORD_BYTES)]
    valid = len(content) <= _MAX_LOCK_BYTES and all(
        len(record) == RECORD_BYTES and record.endswith(b"\n") for record in records
    )
    stripped = [record.strip(b" \n") for record in records]
    valid = valid and all(
        not record or (_HOLDER.fullmatch(record) if slot == 0 else _GENERATION.fullmatch(record))
        for slot, record in enumerate(stripped)
    )
    if not valid:
        path = index_dir / LOCK_NAME
        raise QAError(
            f"{path} holds something qa did not write; qa will not write to it",
            fix=f"remove it if no qa index is running on {index_dir}",
        )
    return stripped


def _write_record(descriptor: int, slot: int, text: bytes) -> None:
    record = text.ljust(RECORD_BYTES - 1) + b"\n"
    if len(record) != RECORD_BYTES:
        raise ValueError(f"a record of the lock file holds at most {RECORD_BYTES - 1} bytes")
    written = os.pwrite(descriptor, record, slot * RECORD_BYTES)
    if written != RECORD_BYTES:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
