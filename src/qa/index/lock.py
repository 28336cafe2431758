"""One build at a time per index folder: an advisory lock on a file in the folder.

``fcntl.flock`` is held by an open file, so the kernel drops it when the
process ends for any reason, SIGKILL included: a killed build never leaves a
stale lock behind. The file holds the holder's process id, for the message a
second build shows while it waits. The file itself stays: deleting a lock file
races with a process that has just opened it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from qa.errors import IndexBusyError

LOCK_NAME = "qa-index.lock"
# How long `qa index` and the app's start wait for another build of the same index.
DEFAULT_WAIT_SECONDS = 600.0
# How often a waiting build tries the lock again; flock itself has no timeout.
POLL_SECONDS = 0.1


@contextmanager
def index_lock(index_dir: Path, *, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the build lock of ``index_dir`` for the ``with`` block.

    Args:
        index_dir: The index folder (created if missing).
        wait: Seconds to wait for another holder to finish; 0 refuses at once.
        on_wait: Called once with a message if this call has to wait.

    Raises:
        IndexBusyError: Another process still holds the lock after ``wait`` seconds.
    """
    import fcntl

    index_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(index_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, index_dir, wait, on_wait)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


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
        text = (index_dir / LOCK_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
